//go:build linux

package shim

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"golang.org/x/sys/unix"

	"github.com/sshmd5/sshmd5/internal/fingerprint"
	"github.com/sshmd5/sshmd5/internal/plan"
	"github.com/sshmd5/sshmd5/internal/tcpsig"
	"github.com/sshmd5/sshmd5/internal/tcpsig/md5"
)

// inetd holds the counters and limits of inetd mode.
type inetd struct {
	*server
	mu       sync.Mutex // guards keys/peers against a reload
	served   atomic.Int64
	kids     *children
	children sync.WaitGroup
	sessions sessions // TCP-AO connections, by key, for revocation
}

func (s *server) serveInetd(ctx context.Context) error {
	d := &inetd{server: s, kids: newChildren(s.cfg.MaxConns, s.cfg.MaxStartups, s.cfg.PerSourceMaxStartups)}
	hup := s.cfg.Reload
	if hup == nil {
		c := make(chan os.Signal, 1)
		signal.Notify(c, syscall.SIGHUP)
		defer signal.Stop(c)
		hup = c
	}
	// A SIGHUP that came while loading and keying waits in hup (buffered,
	// one deep): it becomes one reload right after serving starts.

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	for _, l := range s.lns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d.acceptLoop(ctx, l)
		}()
	}
	d.notify(daemon.SdNotifyReady)
	s.log.Printf("serving %s in inetd mode, at most %d at a time (unauthenticated: --max-startups %s, --per-source-max-startups %d)",
		s.cfg.Command[0], s.cfg.MaxConns, s.cfg.MaxStartups, s.cfg.PerSourceMaxStartups)
	defer s.watchKnocks(ctx)() // stops, and removes its tracefs instance, before Run returns
	tick := time.NewTicker(time.Minute)
	defer tick.Stop()
	for {
		select {
		case <-hup:
			d.notify(daemon.SdNotifyReloading + "\n" + daemon.SdNotifyMonotonicUsec())
			d.reload()
			d.notify(daemon.SdNotifyReady)
		case <-tick.C:
			d.notify("")
		case <-ctx.Done():
			d.notify(daemon.SdNotifyStopping)
			// Closing the listeners stops accepting; the children are
			// running sessions and are left alone (systemd's
			// KillMode=process does the same).
			for _, l := range s.lns {
				l.ln.Close()
			}
			wg.Wait()
			pending, authed := d.kids.counts()
			s.log.Printf("stopped accepting after %d connection(s); %d session(s) left running", d.served.Load(), pending+authed)
			return nil
		}
	}
}

// notify sends state to systemd with a fresh STATUS= line; without
// NOTIFY_SOCKET it does nothing.
func (d *inetd) notify(state string) {
	d.mu.Lock()
	nkeys := len(d.keys)
	d.mu.Unlock()
	pending, authed := d.kids.counts()
	status := fmt.Sprintf("STATUS=%d listener(s), %d key(s), %d connection(s) served, %d active (%d authenticated, %d not yet)",
		len(d.lns), nkeys, d.served.Load(), pending+authed, authed, pending)
	if c, err := md5.ReadCounters(); err == nil {
		status += fmt.Sprintf(", MD5 drops: %d unsigned, %d bad signature", c.NotFound, c.Failure)
	}
	msg := status
	if state != "" {
		msg = state + "\n" + status
	}
	if _, err := daemon.SdNotify(false, msg); err != nil {
		d.log.Printf("sd_notify: %v", err)
	}
}

// acceptLoop serves l until it is closed. Accept errors other than that
// (EMFILE, ...) are transient: stopping would take sshd off the net.
func (d *inetd) acceptLoop(ctx context.Context, l *listener) {
	var delay time.Duration
	for {
		c, err := l.ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of fds (EMFILE) or similar: back off rather than
			// spin, as net/http does.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			d.log.Printf("%s: accept: %v; retrying in %v", l.name, err, delay)
			time.Sleep(delay)
			continue
		}
		delay = 0
		d.handle(l, c.(*net.TCPConn))
	}
}

// handle checks one accepted connection and starts a child for it.
func (d *inetd) handle(l *listener, c *net.TCPConn) {
	rc, err := c.SyscallConn()
	if err != nil {
		c.Close()
		return
	}
	fd := rawFD(rc)
	peer, who := peerOf(fd)
	var signer *tcpsig.Key // TCP-AO: the key the peer signs with
	keyed := false
	if l.backend == plan.AO {
		d.mu.Lock()
		signer, err = aoSigner(fd, peer.Addr(), d.keys)
		d.mu.Unlock()
		keyed = signer != nil
	} else {
		keyed, err = connKeyed(fd)
	}
	if err != nil {
		d.log.Printf("closed connection from %s: cannot check its %s key: %v", who, l.backend.Name(), err)
		c.Close()
		return
	}
	if !keyed {
		d.log.Printf("closed unsigned connection from %s queued before the keys were set", who)
		c.Close()
		return
	}
	kid, why := d.kids.admit(peer.Addr())
	if kid == nil {
		d.log.Printf("closed connection from %s: %s", who, why)
		c.Close()
		return
	}
	d.mu.Lock()
	match := d.matched(peer.Addr())
	d.mu.Unlock()
	if signer != nil {
		match += ", TCP-AO key " + signer.String()
	}
	// Kept to end the session if its key is revoked: shutdown acts on
	// the connection, whichever process holds it.
	var conn *os.File
	if signer != nil {
		if conn, err = c.File(); err != nil {
			d.kids.done(kid)
			d.log.Printf("closed connection from %s: %v", who, err)
			c.Close()
			return
		}
	}
	// File dups the socket without close-on-exec only in the child (as
	// stdin/stdout); every other fd of ours, listeners included, is
	// close-on-exec.
	f, err := c.File()
	c.Close()
	if err != nil {
		d.kids.done(kid)
		d.log.Printf("closed connection from %s: %v", who, err)
		if conn != nil {
			conn.Close()
		}
		return
	}
	cmd := exec.Command(d.cfg.Command[0], d.cfg.Command[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = f, f, d.cfg.Stderr
	err = cmd.Start()
	f.Close()
	if err != nil {
		d.kids.done(kid)
		d.log.Printf("closed connection from %s: starting %s: %v", who, d.cfg.Command[0], err)
		if conn != nil {
			conn.Close()
		}
		return
	}
	d.served.Add(1)
	d.kids.started(kid, cmd.Process.Pid)
	var ss *session
	if signer != nil {
		// Opened before the reaper runs, so it names this child.
		pidfd, err := unix.PidfdOpen(cmd.Process.Pid, 0)
		if err != nil {
			pidfd = -1
		}
		ss = &session{key: signer.Public(), pid: cmd.Process.Pid, peer: who, conn: conn, pidfd: pidfd}
		d.sessions.add(ss)
		// A reload may have revoked the key since it was looked up, and
		// scanned the sessions before this one was added: look again,
		// now that revoke would find it (see revoke).
		d.mu.Lock()
		keys := d.keys
		d.mu.Unlock()
		d.revoke(keys)
	}
	d.log.Printf("connection from %s (peers %s) -> %s pid %d", who, match, baseName(d.cfg.Command[0]), cmd.Process.Pid)
	d.children.Add(1)
	go func() {
		defer d.children.Done()
		// sshd logs its own outcome to stderr.
		reap(cmd.Process, func() {
			d.kids.done(kid)
			if ss != nil {
				d.sessions.remove(ss)
			}
		})
	}()
}

// reload rereads the keyring and applies the difference to every
// listener. Nothing changes unless the whole new key set is valid and
// covers every listener; a kernel error part way puts the old keys back.
func (d *inetd) reload() {
	pl, err := loadKeys(d.cfg.Keyring)
	if err != nil {
		d.log.Printf("reload: %v; keeping the previous keys", err)
		return
	}
	keys := pl.Keys
	logWarnings(d.log, "reload: ", pl.Ring)
	for _, l := range d.lns {
		lp := pl.For(l.sock)
		if lp.Err != nil {
			d.log.Printf("reload: %s: keyring %s: %v; keeping the previous keys", l.name, d.cfg.Keyring, lp.Err)
			return
		}
		if lp.Backend != l.backend {
			// One socket cannot go from one backend to the other with
			// every peer keyed throughout; a new socket can.
			d.log.Printf("reload: %s: keyring %s moves this listener from %s to %s, which needs a new socket; keeping the previous keys. Restart sshd-md5-socket (systemctl restart sshd-md5): it replaces the socket, and the port is closed, never open, for that moment",
				l.name, d.cfg.Keyring, l.backend.Name(), lp.Backend.Name())
			return
		}
	}
	d.mu.Lock()
	old := d.keys
	d.mu.Unlock()
	for _, l := range d.lns {
		if n := massRemoval(l.sock, old, keys); n > 0 {
			d.log.Printf("reload: %s: keyring %s would remove all %d of its keys other than the catch-all ones, as a keyring cut short by an interrupted write does; keeping the previous keys. "+
				"Write the keyring whole (to a temporary file, then rename it over %s); to drop them all on purpose, restart sshd-md5-socket, which applies any valid keyring",
				l.name, d.cfg.Keyring, n, d.cfg.Keyring)
			return
		}
	}
	for i, l := range d.lns {
		t0 := time.Now()
		diff, err := l.rekey(keys)
		if err != nil {
			d.log.Printf("reload: %s: %v; keeping the previous keys", l.name, err)
			// Reconcile restored this socket; put the ones done before
			// it back too, so all listeners agree.
			for _, p := range d.lns[:i] {
				if _, rerr := p.rekey(old); rerr != nil {
					d.log.Printf("reload: %s: restoring the previous keys: %v", p.name, rerr)
				}
			}
			return
		}
		// The time lets an operator with many prefixes see what a
		// reload costs the kernel side (docs/benchmarks.md).
		d.log.Printf("reload: %s: %s in %v", l.name, diff, time.Since(t0).Round(10*time.Microsecond))
	}
	d.mu.Lock()
	d.keys, d.peers = keys, pl.Ring.Peers
	d.mu.Unlock()
	d.revoke(keys)
	added, removed, changed := tcpsig.Compare(old, keys)
	d.log.Printf("reload: %d key(s) from %s in force: +%d -%d prefixes, %d key(s) changed%s",
		len(keys), d.cfg.Keyring, len(added), len(removed), len(changed), prefixList(added, removed))
	for _, line := range fingerprintLines(old, keys) {
		d.log.Printf("reload: %s", line)
	}
}

// fingerprintLines says, per prefix whose key a reload added or changed,
// the fingerprint now in force (and the one before), a few of them, so
// that an operator can match a rotation against the clients' keygen or
// probe output without the key in the log.
func fingerprintLines(old, new []tcpsig.Key) []string {
	const most = 8
	was := make(map[tcpsig.ID]tcpsig.Key, len(old))
	for _, k := range old {
		was[k.ID()] = k
	}
	var out []string
	n := 0
	for _, k := range new {
		o, had := was[k.ID()]
		prev := o.Secret
		if had && o.Same(k) {
			continue
		}
		if n++; n > most {
			continue
		}
		if had {
			out = append(out, fmt.Sprintf("%s key changed: %s (was %s)", k, keyPrint(k, k.Secret), keyPrint(k, prev)))
		} else {
			out = append(out, fmt.Sprintf("%s key added: %s", k, keyPrint(k, k.Secret)))
		}
	}
	if n > most {
		out = append(out, fmt.Sprintf("%d more key(s) added or changed (sshd-md5-socket status lists every fingerprint)", n-most))
	}
	return out
}

// massRemovalMin is how many keys besides its catch-alls a listener must
// carry before a reload may not remove them all at once: one key can
// always be dropped by a reload (revoking one host must not need a
// restart), a whole set cannot (see DESIGN.md).
const massRemovalMin = 2

// massRemoval returns how many keys the move from old to new would take
// off sock, if that is every key it carries besides its catch-alls and at
// least massRemovalMin of them; else 0.
func massRemoval(sock tcpsig.Socket, old, new []tcpsig.Key) int {
	specific := func(keys []tcpsig.Key) []tcpsig.Key {
		apply, _ := sock.Cover(keys)
		var out []tcpsig.Key
		for _, k := range apply {
			// A TCP-AO key is one user's, never a catch-all.
			if k.Prefix.Bits() != 0 || k.Ifindex != 0 || k.AO != nil {
				out = append(out, k)
			}
		}
		return out
	}
	was := specific(old)
	_, removed, _ := tcpsig.Compare(was, specific(new))
	if len(was) >= massRemovalMin && len(removed) == len(was) {
		return len(was)
	}
	return 0
}

// prefixList names the prefixes a reload added and removed, a few of
// each, for the log.
func prefixList(added, removed []tcpsig.Key) string {
	const most = 8
	var b []string
	for _, l := range []struct {
		sign string
		keys []tcpsig.Key
	}{{"+", added}, {"-", removed}} {
		for i, k := range l.keys {
			if i == most {
				b = append(b, fmt.Sprintf("%s%d more", l.sign, len(l.keys)-most))
				break
			}
			b = append(b, l.sign+k.String())
		}
	}
	if len(b) == 0 {
		return ""
	}
	return " (" + strings.Join(b, " ") + ")"
}

// keyPrint is the fingerprint of secret in the form of k's backend.
func keyPrint(k tcpsig.Key, secret tcpsig.Secret) string {
	if k.AO != nil {
		return fingerprint.OfAO(secret)
	}
	return fingerprint.Of(secret)
}
