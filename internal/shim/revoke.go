//go:build linux

package shim

import (
	"fmt"
	"net/netip"
	"os"
	"slices"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/sshmd5/sshmd5/internal/plan"
	"github.com/sshmd5/sshmd5/internal/tcpsig"
	"github.com/sshmd5/sshmd5/internal/tcpsig/ao"
)

// A TCP-AO connection keeps the keys it was accepted with: removing a key
// from the listener stops new connections, not open ones. So the shim
// remembers which key signs each connection it served, and a reload that
// leaves a name with no key at all ends that name's sessions (revocation).
// A reload that leaves the name another key (a rollover) ends nothing.

// session is one served TCP-AO connection.
type session struct {
	key  tcpsig.Key // public: no secret
	pid  int        // the sshd serving it
	peer string
	conn *os.File // a dup of the connection, to shut it down
	// pidfd names the sshd for a signal that cannot reach a reused pid;
	// -1 if it could not be opened.
	pidfd int
	// ended: revoke shut it down (sessions.mu); the sshd may take a
	// moment to exit.
	ended bool
}

type sessions struct {
	mu  sync.Mutex
	all []*session
}

func (ss *sessions) add(s *session) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	ss.all = append(ss.all, s)
}

func (ss *sessions) remove(s *session) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if i := slices.Index(ss.all, s); i >= 0 {
		ss.all = slices.Delete(ss.all, i, i+1)
	}
	s.conn.Close()
	if s.pidfd >= 0 {
		unix.Close(s.pidfd)
	}
}

// revoke ends the sessions whose key's name has no key in keys.
func (d *inetd) revoke(keys []tcpsig.Key) {
	names := map[string]bool{}
	for _, k := range keys {
		if n := plan.Name(k); n != "" {
			names[n] = true
		}
	}
	d.sessions.mu.Lock()
	type shut struct {
		s   *session
		err error
	}
	var gone []shut
	for _, s := range d.sessions.all {
		if !s.ended && !names[plan.Name(s.key)] {
			s.ended = true
			// shutdown ends the TCP connection for every process
			// holding it, sshd's session child as well; the signal
			// makes the sshd serving it exit now rather than linger
			// with a dead connection. Done under the lock: remove
			// closes both fds, and their numbers could be reused at
			// once. Through the pidfd: the pid may be reaped already.
			err := unix.Shutdown(int(s.conn.Fd()), unix.SHUT_RDWR)
			if s.pidfd >= 0 {
				_ = unix.PidfdSendSignal(s.pidfd, unix.SIGTERM, nil, 0)
			}
			gone = append(gone, shut{s, err})
		}
	}
	d.sessions.mu.Unlock()
	ended := map[string]int{}
	for _, g := range gone {
		if g.err != nil {
			d.log.Printf("reload: revoking %s: shutting down the connection from %s: %v", g.s.key, g.s.peer, g.err)
		}
		ended[plan.Name(g.s.key)]++
		d.log.Printf("reload: key %s revoked: ended its session from %s (sshd pid %d)", g.s.key, g.s.peer, g.s.pid)
	}
	for name, n := range ended {
		d.log.Printf("reload: %s has no key any more: %d open session(s) ended", name, n)
	}
}

// aoSigner finds, among keys, the TCP-AO key an accepted connection is
// signed with: the one whose prefix holds the peer and whose IDs are the
// connection's current key. nil with no error means the connection has no
// TCP-AO key (it completed before the listener had keys).
func aoSigner(fd int, peer netip.Addr, keys []tcpsig.Key) (*tcpsig.Key, error) {
	send, recv, err := ao.Current(fd)
	if err != nil {
		if ao.NoKey(err) {
			return nil, nil
		}
		return nil, err
	}
	peer = peer.Unmap()
	var best *tcpsig.Key
	for i, k := range keys {
		if k.AO == nil || k.AO.SendID != send || k.AO.RecvID != recv || !k.Prefix.Contains(peer) {
			continue
		}
		if best == nil || k.Prefix.Bits() > best.Prefix.Bits() {
			best = &keys[i]
		}
	}
	if best == nil {
		// Signed, but by a key this process does not know (removed by a
		// reload racing the accept): serve nothing it cannot revoke.
		return nil, fmt.Errorf("signed with TCP-AO key send_id %d, recv_id %d, which the keyring no longer holds", send, recv)
	}
	k := best.Public()
	return &k, nil
}
