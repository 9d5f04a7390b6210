//go:build linux

package inspect

import (
	"fmt"
	"io"
	"net/netip"

	"github.com/sshmd5/sshmd5/internal/stealth"
)

// CheckStealth prints which stealth mode is in force in this network
// namespace (whether a table of ours is installed, and so whether a
// shim in closed mode runs or ran here) and what --stealth mode would do
// with the listen addresses (DefaultListen if none). It returns an error
// when mode is closed and the shim would refuse to start.
func CheckStealth(w io.Writer, mode stealth.Mode, listen []string) error {
	if len(listen) == 0 {
		listen = []string{DefaultListen}
	}
	usable := stealth.Usable()
	switch exists, o, alive, err := stealth.Installed(); {
	case err != nil:
		fmt.Fprintf(w, "stealth in force: filtered: unsigned segments get no answer (nftables unusable here: %v)\n", err)
	case exists:
		by := "installed by a process that no longer runs (left by a killed shim; its next start replaces it, a filtered one removes it)"
		switch {
		case alive:
			by = "installed by " + o.String() + ", running"
		case o.PID == 0:
			by = "with no owner recorded"
		}
		fmt.Fprintf(w, "stealth in force: closed: table inet %s is installed, %s, so unsigned segments to its listeners get this host's closed-port answer\n", stealth.TableName, by)
	default:
		fmt.Fprintf(w, "stealth in force: filtered: no table inet %s, so unsigned segments get no answer\n", stealth.TableName)
	}
	def := ""
	if mode == stealth.DefaultMode {
		def = " (the default)"
	}
	if mode == stealth.Filtered {
		fmt.Fprintf(w, "--stealth filtered%s: unsigned segments get no answer, as from any TCP-MD5 listener: a scan reports the port filtered\n", def)
		return nil
	}
	why := usable
	var port uint16
	for i, a := range listen {
		ap, err := netip.ParseAddrPort(a)
		if err != nil {
			return err // ListenSocket has already vetted it
		}
		if i == 0 {
			port = ap.Port()
		} else if ap.Port() != port && why == nil {
			why = fmt.Errorf("listeners %s and %s have different ports; closed mode needs one port for all listeners", listen[0], a)
		}
	}
	switch {
	case why == nil:
		fmt.Fprintf(w, "--stealth %s%s: closed: would install table inet %s; unsigned segments to port %d get this host's closed-port answer (at most %d/s, then none)\n", mode, def, stealth.TableName, port, stealth.DefaultRate)
	case mode == stealth.Auto:
		fmt.Fprintf(w, "--stealth auto%s: filtered, because closed mode cannot be used: %v\n", def, why)
	default:
		fmt.Fprintf(w, "--stealth closed: CANNOT be installed: %v\n", why)
		return fmt.Errorf("--stealth closed: %w; use --stealth filtered or auto", why)
	}
	return nil
}
