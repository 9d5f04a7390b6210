//go:build linux

package shim_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sshmd5/sshmd5/internal/fingerprint"
	"github.com/sshmd5/sshmd5/internal/tcpsig/md5"
	"github.com/sshmd5/sshmd5/internal/testnet"
)

// session is a live ssh login that echoes lines back, to show that a
// reload leaves established sessions alone.
type session struct {
	in  io.WriteCloser
	out *bufio.Reader
}

func (e *env) openSession(addr string, keyring string) *session {
	e.t.Helper()
	host, p, _ := net.SplitHostPort(addr)
	args := append(e.sshd.SSHArgs(), "-o", e.proxyCommand(keyring), "-p", p, "root@"+host,
		`while read l; do echo "got $l"; done`)
	cmd := e.client.Cmd("ssh", args...)
	in, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	// ssh's stderr is also its ProxyCommand's; were it the test binary's,
	// a proxy outliving the server namespace would hold go test's output
	// open. ssh and the proxy share a process group so cleanup ends both.
	stderr := &testnet.LockedBuffer{}
	cmd.Stderr = stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
		if e.t.Failed() {
			e.t.Logf("ssh session stderr:\n%s", stderr)
		}
	})
	s := &session{in: in, out: bufio.NewReader(out)}
	s.check(e.t, "hello")
	return s
}

func (s *session) check(t *testing.T, word string) {
	t.Helper()
	done := make(chan string, 1)
	go func() {
		io.WriteString(s.in, word+"\n")
		l, _ := s.out.ReadString('\n')
		done <- l
	}()
	select {
	case l := <-done:
		if strings.TrimSpace(l) != "got "+word {
			t.Fatalf("ssh session answered %q to %q; the session is gone", l, word)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("ssh session did not answer %q", word)
	}
}

// SIGHUP in inetd mode: added, removed and changed prefixes reach the
// listener exactly; a broken keyring keeps the old keys; an established
// session survives every step.
func TestReload(t *testing.T) {
	e := newEnv(t)
	k1, k2, kc := e.secret(), e.secret(), e.secret()
	kr := filepath.Join(e.dir, "keyring.toml")
	addr := hostPort(e.link.AddrA4, port)
	clientNet := e.link.AddrB4.String() + "/32"
	peers := map[string][]byte{"0.0.0.0/0": k1}
	e.writeKeyring(kr, peers)
	p := e.start(nil, e.shim, append([]string{"-k", kr, "-l", addr, "--"}, e.sshd.InetdArgs()...)...)
	p.WaitLog(`serving`, 10*time.Second)
	pid := p.Cmd.Process.Pid
	e.checkKeys(pid, addr, peers)
	sess := e.openSession(addr, e.keyFile(k1))

	reloads := 0
	hup := func(wantLog string) {
		t.Helper()
		reloads++
		p.Cmd.Process.Signal(syscall.SIGHUP)
		p.WaitLog(`(?s)(reload: .*){`+strconv.Itoa(reloads)+`}`, 5*time.Second)
		p.WaitLog(wantLog, 5*time.Second)
	}

	// Add a prefix.
	peers = map[string][]byte{"0.0.0.0/0": k1, clientNet: kc}
	e.writeKeyring(kr, peers)
	hup(`reload: 2 key\(s\) from .* in force`)
	e.checkKeys(pid, addr, peers)
	sess.check(t, "after-add")
	e.login(e.link.AddrA4, port, e.keyFile(kc), "login with the added /32 key")

	// Change a key.
	peers = map[string][]byte{"0.0.0.0/0": k2, clientNet: kc}
	e.writeKeyring(kr, peers)
	hup(`reload: .*: 0 added, 1 replaced, 0 deleted`)
	e.checkKeys(pid, addr, peers)
	sess.check(t, "after-change")

	// Remove a prefix.
	peers = map[string][]byte{"0.0.0.0/0": k2}
	e.writeKeyring(kr, peers)
	hup(`reload: .*: 0 added, 0 replaced, 1 deleted`)
	e.checkKeys(pid, addr, peers)
	sess.check(t, "after-remove")
	e.login(e.link.AddrA4, port, e.keyFile(k2), "login with the changed 0/0 key")

	// Broken keyring: a parse error keeps the old keys.
	e.writeFile(kr, "[peers.\"0.0.0.0/0\"\nkey = \"SECRET-broken\"\n")
	hup(`reload: keyring .*; keeping the previous keys`)
	e.checkKeys(pid, addr, peers)
	sess.check(t, "after-broken")

	// A key set that leaves IPv4 uncovered keeps the old keys too.
	e.writeKeyring(kr, map[string][]byte{clientNet: kc, "::/0": k1})
	hup(`reload: .*no key covers 0.0.0.0/0.*; keeping the previous keys`)
	e.checkKeys(pid, addr, peers)
	sess.check(t, "after-uncovered")
	if strings.Contains(p.Log(), "SECRET-broken") {
		t.Fatal("the broken keyring's key appears in the log")
	}
}

// SIGTERM stops accepting and exits 0; the running session is left alone.
func TestSIGTERM(t *testing.T) {
	e := newEnv(t)
	k := e.secret()
	kr := e.keyring(map[string][]byte{"0.0.0.0/0": k})
	addr := hostPort(e.link.AddrA4, port)
	p := e.start(nil, e.shim, append([]string{"-k", kr, "-l", addr, "--"}, e.sshd.InetdArgs()...)...)
	p.WaitLog(`serving`, 10*time.Second)
	sess := e.openSession(addr, e.keyFile(k))
	p.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.Done:
	case <-time.After(5 * time.Second):
		t.Fatal("the shim did not exit on SIGTERM")
	}
	if p.Err != nil && !errors.Is(p.Err, exec.ErrWaitDelay) {
		t.Fatalf("the shim exited with %v after SIGTERM, want status 0", p.Err)
	}
	p.WaitLog(`stopped accepting after 1 connection\(s\); 1 session\(s\) left running`, time.Second)
	sess.check(t, "after-sigterm")
	if c, err := e.dial(addr, k, 2*time.Second); err == nil {
		c.Close()
		t.Fatal("a signed dial connected after SIGTERM; the listener should be closed")
	}
}

// manyPeers returns n filler /32 prefixes (in 10.251.0.0/16, no real peer)
// sharing one key, plus the given entries.
func manyPeers(n int, filler []byte, extra map[string][]byte) map[string][]byte {
	m := make(map[string][]byte, n+len(extra))
	for i := range n {
		m[fmt.Sprintf("10.251.%d.%d/32", i/250, 1+i%250)] = filler
	}
	maps.Copy(m, extra)
	return m
}

// Past md5.MaxReadableKeys the kernel cannot report a listener's keys, so
// a reload compares against what the shim installed: a changed key is one
// replacement, a removed prefix one deletion, and the kernel acts on both.
// A systemd socket carrying that many keys from an earlier run, which no
// one can read back, is refused rather than trusted.
func TestReloadPastReadBackLimit(t *testing.T) {
	e := newEnv(t)
	const fillers = md5.MaxReadableKeys + 100
	// ~140 bytes of option memory per key: raise this namespace's limit.
	e.server.Run(t, "sysctl", "-qw", "net.core.optmem_max=4194304")
	k1, kc, kc2, kf := e.secret(), e.secret(), e.secret(), e.secret()
	kr := filepath.Join(e.dir, "keyring.toml")
	addr := hostPort(e.link.AddrA4, port)
	clientNet := e.link.AddrB4.String() + "/32"
	e.writeKeyring(kr, manyPeers(fillers, kf, map[string][]byte{"0.0.0.0/0": k1, clientNet: kc}))
	p := e.start(nil, e.shim, append([]string{"-k", kr, "-l", addr, "--"}, e.sshd.InetdArgs()...)...)
	p.WaitLog(`keyed 1 listener\(s\) with `+strconv.Itoa(fillers+2)+` key\(s\)`, 20*time.Second)
	p.WaitLog(`serving`, 10*time.Second)
	signedBanner := func(secret []byte) {
		t.Helper()
		c, err := e.dial(addr, secret, 5*time.Second)
		if err != nil {
			t.Fatalf("signed dial: %v", err)
		}
		defer c.Close()
		if b, err := banner(c); err != nil || !strings.HasPrefix(b, "SSH-2.0-") {
			t.Fatalf("banner %q, %v", b, err)
		}
	}
	signedBanner(kc)

	reloads := 0
	hup := func(wantLog string) {
		t.Helper()
		reloads++
		p.Cmd.Process.Signal(syscall.SIGHUP)
		p.WaitLog(`(?s)(reload: [^\n]* in force.*){`+strconv.Itoa(reloads)+`}`, 10*time.Second)
		p.WaitLog(wantLog, time.Second)
	}
	e.writeKeyring(kr, manyPeers(fillers, kf, map[string][]byte{"0.0.0.0/0": k1, clientNet: kc2}))
	hup(`reload: [^\n]*: 0 added, 1 replaced, 0 deleted`)
	signedBanner(kc2)
	e.expectNoAnswer(addr, kc)

	e.writeKeyring(kr, manyPeers(fillers, kf, map[string][]byte{"0.0.0.0/0": k1}))
	hup(`reload: [^\n]*: 0 added, 0 replaced, 1 deleted`)
	signedBanner(k1)
	e.expectNoAnswer(addr, kc2)

	// The same number of keys on a socket systemd would pass: refused.
	saddr := hostPort(e.link.AddrA4, port+1)
	keys := []md5.Key{{Prefix: netip.MustParsePrefix("0.0.0.0/0"), Secret: k1}}
	for p := range manyPeers(fillers, nil, nil) {
		keys = append(keys, md5.Key{Prefix: netip.MustParsePrefix(p), Secret: kf})
	}
	f, _ := e.server.Listen(t, "tcp4", saddr, keys).File()
	defer f.Close()
	p2 := e.start([]*os.File{f}, "sh", "-c", `export LISTEN_PID=$$ LISTEN_FDS=1; exec "$0" "$@"`, e.shim, "-k", kr, "--", "/bin/true")
	select {
	case <-p2.Done:
	case <-time.After(20 * time.Second):
		t.Fatal("the shim serves a systemd socket whose keys it cannot read back")
	}
	if p2.Err == nil {
		t.Fatal("the shim exited 0 on a systemd socket whose keys it cannot read back")
	}
	p2.WaitLog(`systemctl stop NAME.socket NAME.service`, time.Second)
}

// A SIGHUP while the shim loads a large keyring and keys its socket (config
// management, a reload right after a start, pkill -HUP sshd) used to be
// the default action, death: the shim now takes it from its first line of
// Go, and it becomes a reload once serving.
func TestSIGHUPDuringStartup(t *testing.T) {
	e := newEnv(t)
	e.server.Run(t, "sysctl", "-qw", "net.core.optmem_max=4194304")
	k := e.secret()
	kr := e.keyring(manyPeers(5000, e.secret(), map[string][]byte{"0.0.0.0/0": k}))
	addr := hostPort(e.link.AddrA4, port)
	p := e.start(nil, e.shim, append([]string{"-k", kr, "-l", addr, "--"}, e.sshd.InetdArgs()...)...)
	// "ip netns exec" is the process until it execs the shim; a HUP to
	// it would kill ip, not test the shim. Then leave the Go runtime its
	// few microseconds of start-up before the handler exists.
	pid := p.Cmd.Process.Pid
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		if exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); filepath.Base(exe) == "sshd-md5-socket" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the shim did not start within 5s")
		}
	}
	time.Sleep(20 * time.Millisecond)
	sent := 0
	for !strings.Contains(p.Log(), "keyed 1 listener") {
		select {
		case <-p.Done:
			t.Fatalf("the shim died after %d SIGHUP(s) during startup: %v\n%s", sent, p.Err, p.Log())
		default:
		}
		syscall.Kill(pid, syscall.SIGHUP)
		sent++
		time.Sleep(time.Millisecond)
	}
	if sent < 10 {
		t.Fatalf("only %d SIGHUPs went out before the shim had keyed its socket; the keyring should take longer to load", sent)
	}
	p.WaitLog(`serving`, 10*time.Second)
	// The HUPs before serving are one reload, right after serving starts.
	p.WaitLog(`(?s)serving.*reload: [^\n]* in force`, 20*time.Second)
	c, err := e.dial(addr, k, 5*time.Second)
	if err != nil {
		t.Fatalf("signed dial after the startup SIGHUPs: %v", err)
	}
	defer c.Close()
	if b, err := banner(c); err != nil || !strings.HasPrefix(b, "SSH-2.0-") {
		t.Fatalf("banner %q, %v", b, err)
	}
	t.Logf("%d SIGHUPs during startup: the shim lived and reloaded once serving", sent)
}

// The reload log names what changed in prefixes, so that a mass removal
// (a keyring cut short at an entry boundary is valid TOML) is visible;
// and a reload that would take every key but the catch-alls off a
// listener carrying two or more of them is refused, the old keys kept.
// One such key can still be dropped by a reload.
func TestReloadPrefixChanges(t *testing.T) {
	e := newEnv(t)
	k1, kf := e.secret(), e.secret()
	kr := filepath.Join(e.dir, "keyring.toml")
	addr := hostPort(e.link.AddrA4, port)
	peers := map[string][]byte{"0.0.0.0/0": k1, "10.251.0.1/32": kf, "10.251.0.2/32": kf, "10.251.0.3/32": kf}
	e.writeKeyring(kr, peers)
	p := e.start(nil, e.shim, append([]string{"-k", kr, "-l", addr, "--"}, e.sshd.InetdArgs()...)...)
	p.WaitLog(`serving`, 10*time.Second)
	pid := p.Cmd.Process.Pid
	reloads := 0
	hup := func(wantLog string) {
		t.Helper()
		reloads++
		p.Cmd.Process.Signal(syscall.SIGHUP)
		p.WaitLog(`(?s)((in force|keeping the previous keys)[^\n]*\n.*){`+strconv.Itoa(reloads)+`}`, 5*time.Second)
		p.WaitLog(wantLog, time.Second)
	}

	k2 := e.secret()
	peers = map[string][]byte{"0.0.0.0/0": k1, "10.251.0.1/32": k2, "10.252.0.1/32": kf, "10.252.0.2/32": kf}
	e.writeKeyring(kr, peers)
	hup(`reload: 4 key\(s\) from \S+ in force: \+2 -2 prefixes, 1 key\(s\) changed \(\+10\.252\.0\.1/32 \+10\.252\.0\.2/32 -10\.251\.0\.2/32 -10\.251\.0\.3/32\)`)
	// Per prefix added or changed, the fingerprint in force; the
	// unchanged catch-all is not repeated.
	fp := func(k []byte) string { return regexp.QuoteMeta(fingerprint.Of(k)) }
	p.WaitLog(`reload: 10\.251\.0\.1/32 key changed: `+fp(k2)+` \(was `+fp(kf)+`\)`, time.Second)
	p.WaitLog(`reload: 10\.252\.0\.1/32 key added: `+fp(kf), time.Second)
	p.WaitLog(`reload: 10\.252\.0\.2/32 key added: `+fp(kf), time.Second)
	if strings.Contains(p.Log(), "0.0.0.0/0 key") {
		t.Errorf("the unchanged catch-all's key is logged as changed:\n%s", p.Log())
	}
	e.checkKeys(pid, addr, peers)

	// Only the catch-all left, as from a cut keyring: refused, 3 > bound.
	e.writeKeyring(kr, map[string][]byte{"0.0.0.0/0": k1})
	hup(`reload: ` + regexp.QuoteMeta(addr) + `: keyring ` + regexp.QuoteMeta(kr) + ` would remove all 3 of its keys other than the catch-all ones.*keeping the previous keys\. Write the keyring whole.*restart sshd-md5-socket`)
	e.checkKeys(pid, addr, peers)

	// At the bound: two keys besides the catch-all, both dropped: refused.
	peers = map[string][]byte{"0.0.0.0/0": k1, "10.252.0.1/32": kf, "10.252.0.2/32": kf}
	e.writeKeyring(kr, peers)
	hup(`in force: \+0 -1 prefixes, 0 key\(s\) changed \(-10\.251\.0\.1/32\)`)
	e.writeKeyring(kr, map[string][]byte{"0.0.0.0/0": k1})
	hup(`would remove all 2 of its keys other than the catch-all ones`)
	e.checkKeys(pid, addr, peers)

	// Under the bound: the last one such key can go by reload.
	peers = map[string][]byte{"0.0.0.0/0": k1, "10.252.0.1/32": kf}
	e.writeKeyring(kr, peers)
	hup(`in force: \+0 -1 prefixes`)
	peers = map[string][]byte{"0.0.0.0/0": k1}
	e.writeKeyring(kr, peers)
	hup(`in force: \+0 -1 prefixes, 0 key\(s\) changed \(-10\.252\.0\.1/32\)`)
	e.checkKeys(pid, addr, peers)
}

// A socket that systemd's fd store hands back carrying more keys than
// sock_diag can report cannot be checked for the stale keys of the last
// run. The shim replaces it with a new socket keyed before listen(): the
// port is closed for that moment, never open, and afterwards carries
// exactly the keyring's keys (the stale one is gone).
func TestStoredSocketPastReadBackLimit(t *testing.T) {
	e := newEnv(t)
	const fillers = md5.MaxReadableKeys + 100
	e.server.Run(t, "sysctl", "-qw", "net.core.optmem_max=4194304")
	k1, stale, kf := e.secret(), e.secret(), e.secret()
	kr := filepath.Join(e.dir, "keyring.toml")
	addr := hostPort(e.link.AddrA4, port)
	clientNet := e.link.AddrB4.String() + "/32"
	e.writeKeyring(kr, manyPeers(fillers, kf, map[string][]byte{"0.0.0.0/0": k1}))

	// The last run's socket: the same fillers plus a key for the client
	// that the keyring no longer has.
	keys := []md5.Key{{Prefix: netip.MustParsePrefix("0.0.0.0/0"), Secret: k1}, {Prefix: netip.MustParsePrefix(clientNet), Secret: stale}}
	for p := range manyPeers(fillers, nil, nil) {
		keys = append(keys, md5.Key{Prefix: netip.MustParsePrefix(p), Secret: kf})
	}
	ln := e.server.Listen(t, "tcp4", addr, keys)
	f, _ := ln.File()
	name := "sshd-md5-listen-tcp4-" + strings.ReplaceAll(addr, ":", "_")
	p := e.start([]*os.File{f}, "sh", append([]string{"-c", `export LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=` + name + `; exec "$0" "$@"`,
		e.shim, "-k", kr, "-l", addr, "--"}, e.sshd.InetdArgs()...)...)
	// systemd's copy goes with FDSTOREREMOVE; here the test's copies go.
	ln.Close()
	f.Close()
	p.WaitLog(`replacing the stored socket with a new one \(the port is closed for a moment\)`, 20*time.Second)
	p.WaitLog(`serving`, 20*time.Second)
	c, err := e.dial(addr, k1, 5*time.Second)
	if err != nil {
		t.Fatalf("signed dial with the keyring's key after the replacement: %v", err)
	}
	if b, err := banner(c); err != nil || !strings.HasPrefix(b, "SSH-2.0-") {
		t.Fatalf("banner %q, %v", b, err)
	}
	c.Close()
	e.expectNoAnswer(addr, stale)
}

// A stored socket that no -l names any more (a drop-in moved the port) is
// dropped from the store and closed; a stored socket that -l names is
// reused with its keys reconciled (the stale key goes), not reopened.
func TestStoredSocketsMatchedToListen(t *testing.T) {
	e := newEnv(t)
	k1, stale := e.secret(), e.secret()
	kr := e.keyring(map[string][]byte{"0.0.0.0/0": k1})
	keep, drop := hostPort(e.link.AddrA4, port), hostPort(e.link.AddrA4, port+1)
	clientNet := netip.MustParsePrefix(e.link.AddrB4.String() + "/32")
	var files []*os.File
	for _, a := range []string{keep, drop} {
		keys := []md5.Key{{Prefix: netip.MustParsePrefix("0.0.0.0/0"), Secret: k1}, {Prefix: clientNet, Secret: stale}}
		ln := e.server.Listen(t, "tcp4", a, keys)
		f, _ := ln.File()
		ln.Close()
		files = append(files, f)
	}
	names := "sshd-md5-listen-tcp4-" + strings.ReplaceAll(keep, ":", "_") + ":sshd-md5-listen-tcp4-" + strings.ReplaceAll(drop, ":", "_")
	p := e.start(files, "sh", append([]string{"-c", `export LISTEN_PID=$$ LISTEN_FDS=2 LISTEN_FDNAMES=` + names + `; exec "$0" "$@"`,
		e.shim, "-k", kr, "-l", keep, "--"}, e.sshd.InetdArgs()...)...)
	for _, f := range files {
		f.Close() // the shim has its own copies now
	}
	p.WaitLog(regexp.QuoteMeta(keep)+`: listening socket kept by systemd across the restart`, 10*time.Second)
	p.WaitLog(`dropping the stored socket tcp4-`+regexp.QuoteMeta(strings.ReplaceAll(drop, ":", "_"))+`: no -l names it any more`, 10*time.Second)
	p.WaitLog(`serving`, 10*time.Second)
	e.checkKeys(p.Cmd.Process.Pid, keep, map[string][]byte{"0.0.0.0/0": k1})
	e.expectNoAnswer(keep, stale)
	if c, err := e.dial(drop, k1, 2*time.Second); err == nil {
		c.Close()
		t.Errorf("the dropped stored socket %s still answers", drop)
	}
}
