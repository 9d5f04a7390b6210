//go:build linux

package shim

import (
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/sshmd5/sshmd5/internal/stealth"
	"github.com/sshmd5/sshmd5/internal/tcpsig"
)

// applyStealth puts the --stealth mode in force on the keyed listeners,
// before any of them is served. The table it may return is removed when
// Run returns; in listener mode Run execs sshd instead, and the table
// stays for as long as that sshd serves (and after: it never touches
// signed segments, and the next start replaces it).
func (s *server) applyStealth() (*stealth.Table, error) {
	mode, _ := stealth.ParseMode(s.cfg.Stealth) // Check validated it
	if mode == stealth.Filtered {
		// Filtered means silence, also after a closed-mode run that was
		// killed before it could remove its table. No nf_tables here
		// (Count fails) means no table either.
		// A running shim's table (closed mode for its own port) stays.
		if n, err := stealth.Count(); err == nil && n > 0 {
			removed, err := stealth.RemoveStale()
			if err != nil {
				return nil, fmt.Errorf("--stealth filtered: removing the table inet %s an earlier closed-mode run left: %w", stealth.TableName, err)
			}
			if removed {
				s.log.Printf("stealth filtered: removed the table inet %s an earlier run left", stealth.TableName)
			}
		}
		s.log.Printf("stealth filtered: unsigned segments get no answer")
		return nil, nil
	}
	var ls []stealth.Listener
	for _, l := range s.lns {
		sa, err := unix.Getsockname(l.sock.FD)
		if err != nil {
			return nil, fmt.Errorf("stealth: %s: getsockname: %w", l.name, err)
		}
		ap := tcpsig.AddrPortOf(sa)
		ls = append(ls, stealth.Listener{Addr: ap.Addr(), Port: ap.Port(), IPv4: l.sock.Takes4, IPv6: l.sock.Takes6})
	}
	t, err := stealth.Install(ls, stealth.Options{})
	if err != nil {
		if mode == stealth.Auto {
			s.log.Printf("stealth auto: filtered (unsigned segments get no answer), because closed mode could not be installed: %v", err)
			return nil, nil
		}
		return nil, err
	}
	s.log.Printf("stealth %s: closed: %s", mode, t.Describe())
	return t, nil
}

func (s *server) removeStealth(t *stealth.Table) {
	if err := t.Remove(); err != nil {
		s.log.Printf("stealth: removing table inet %s: %v (it never touches signed segments; the next start replaces it)", stealth.TableName, err)
	}
}
