//go:build linux

package guest

import (
	"bufio"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sshmd5/sshmd5/internal/tcpsig"
	"github.com/sshmd5/sshmd5/internal/tcpsig/md5"
	"github.com/sshmd5/sshmd5/internal/testnet"
)

// The VRF item of the hardening issue: sock_diag reports an interface-bound
// (TCP_MD5SIG_FLAG_IFINDEX) key as a key for any interface, and Reconcile
// used to delete it under that wrong identity (ENOENT), whose undo then
// removed the real key: startup with -l failed and a reload of a systemd
// socket dropped the VRF key while logging "previous keys restored".

const port = 2222

// vrfNet is a server whose link to the client is enslaved to a VRF, the
// way a management VRF is set up, and whose listeners take connections
// from inside it (tcp_l3mdev_accept).
type vrfNet struct {
	server, client *testnet.NS
	link           *testnet.Link
	vrfIndex       int
}

func newVRFNet(t *testing.T) *vrfNet {
	t.Helper()
	n := &vrfNet{server: testnet.NewNS(t, "srv"), client: testnet.NewNS(t, "cli")}
	n.link = testnet.Connect(t, n.server, n.client)
	s := n.server
	s.Run(t, "ip", "link", "add", "vrf-x", "type", "vrf", "table", "10")
	s.Run(t, "ip", "link", "set", "vrf-x", "up")
	s.Run(t, "ip", "link", "set", n.link.IfA, "master", "vrf-x")
	s.Run(t, "sysctl", "-qw", "net.ipv4.tcp_l3mdev_accept=1")
	out := s.Run(t, "ip", "-o", "link", "show", "vrf-x")
	i, err := strconv.Atoi(strings.SplitN(out, ":", 2)[0])
	if err != nil {
		t.Fatalf("ifindex of vrf-x from %q: %v", out, err)
	}
	n.vrfIndex = i
	return n
}

func (n *vrfNet) addr() string { return netip.AddrPortFrom(n.link.AddrA4, port).String() }

// expectKey checks that the server answers a client signing with secret.
// The handshake is the kernel's verdict on the key, which is what these
// tests are about; what the shim does with the connection afterwards is
// checked once, in TestVRFKeyShimListen.
func (n *vrfNet) expectKey(t *testing.T, what string, secret []byte) net.Conn {
	t.Helper()
	c, err := n.client.Dial("tcp4", n.addr(), secret, 3*time.Second)
	if err != nil {
		t.Fatalf("%s: a client signing with the key of its [peers] entry got no answer: %v", what, err)
	}
	return c
}

// expectNoAnswer checks that the server drops a client signing with secret.
func (n *vrfNet) expectNoAnswer(t *testing.T, what string, secret []byte) {
	t.Helper()
	before := n.server.MD5Counters(t)
	if err := n.client.Unanswered(n.addr(), secret, 3*time.Second); err != nil {
		t.Fatalf("%s: a client signing with the wrong key: %v", what, err)
	}
	if d := n.server.MD5Counters(t).Sub(before); d.Failure == 0 {
		t.Fatalf("%s: no answer, but the server's TCPMD5Failure did not count it (%+v)", what, d)
	}
}

func secret(t *testing.T) []byte { return testnet.NewSecret() }

// TestVRFKeyReconcile is the md5 package on its own: a listener keyed with
// a catch-all and a VRF key for the client, reconciled as the shim does at
// startup and on reload.
func TestVRFKeyReconcile(t *testing.T) {
	n := newVRFNet(t)
	all, vrf := secret(t), secret(t)
	client := netip.PrefixFrom(n.link.AddrB4, 32)
	keys := []md5.Key{
		{Prefix: netip.MustParsePrefix("0.0.0.0/0"), Secret: all},
		{Prefix: client, Ifindex: n.vrfIndex, Secret: vrf},
	}
	ln := n.server.Listen(t, "tcp4", fmt.Sprintf("0.0.0.0:%d", port), keys)
	ts, err := tcpsig.FromConn(mustRaw(t, ln))
	if err != nil {
		t.Fatal(err)
	}
	sock := md5.Socket{Socket: ts}
	// sock_diag answers about the namespace its netlink socket is in.
	reconcile := func(keys []md5.Key) (d md5.Diff, err error) {
		err = n.server.Do(func() error { d, err = sock.Reconcile(keys); return err })
		return d, err
	}
	n.expectKey(t, "keyed before listen", vrf).Close()
	n.expectNoAnswer(t, "keyed before listen, catch-all key", all)

	if d, err := reconcile(keys); err != nil {
		t.Fatalf("reconciling the keys just set: %v", err)
	} else {
		t.Logf("reconcile, same keys: %s", d)
	}
	n.expectKey(t, "after reconciling the same keys", vrf).Close()

	vrf2 := secret(t)
	keys[1].Secret = vrf2
	if d, err := reconcile(keys); err != nil {
		t.Fatalf("reconciling a new VRF secret: %v", err)
	} else if len(d.Replaced) != 1 || len(d.Added)+len(d.Deleted) != 0 {
		t.Errorf("a new secret for the VRF key: %s, want 1 replaced", d)
	}
	n.expectKey(t, "after a new VRF secret", vrf2).Close()
	n.expectNoAnswer(t, "after a new VRF secret, old secret", vrf)

	if d, err := reconcile(keys[:1]); err != nil {
		t.Fatalf("reconciling without the VRF key: %v", err)
	} else if len(d.Deleted) != 1 || len(d.Added)+len(d.Replaced) != 0 {
		t.Errorf("removing the VRF key: %s, want 1 deleted", d)
	}
	n.expectNoAnswer(t, "VRF key removed", vrf2)
	n.expectKey(t, "VRF key removed, catch-all key", all).Close()
}

func mustRaw(t *testing.T, l *net.TCPListener) syscall.RawConn {
	rc, err := l.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	return rc
}

// shim is a running sshd-md5-socket with its log.
type shim struct {
	*testnet.Proc
	t   *testing.T
	pid int
}

func startShim(t *testing.T, ns *testnet.NS, extra []*os.File, args ...string) *shim {
	t.Helper()
	bin := testnet.BuildBinary(t, "cmd/sshd-md5-socket")
	name, argv := bin, args
	if len(extra) > 0 {
		// systemd's LISTEN_PID is the service's own pid, hence sh's exec.
		name, argv = "sh", append([]string{"-c", `export LISTEN_PID=$$ LISTEN_FDS=1; exec "$0" "$@"`, bin}, args...)
	}
	p := ns.NewProc(name, argv...)
	p.Name = "sshd-md5-socket"
	p.Cmd.ExtraFiles = extra
	p.Cmd.WaitDelay = 500 * time.Millisecond
	p.Start(t)
	return &shim{Proc: p, t: t, pid: p.Cmd.Process.Pid}
}

func (s *shim) stop() {
	syscall.Kill(-s.pid, syscall.SIGKILL)
	<-s.Done
}

func (s *shim) waitLog(re string) {
	s.t.Helper()
	s.WaitLog(re, 20*time.Second)
}

// reload sends SIGHUP, waits for the n-th reload to be done and fails
// the test if it did not apply the keyring.
func (s *shim) reload(n int) {
	s.t.Helper()
	syscall.Kill(s.pid, syscall.SIGHUP)
	s.waitLog(fmt.Sprintf(`(?s)(reload: [^\n]*(in force|previous keys).*){%d}`, n))
	if m := regexp.MustCompile(`reload: [^\n]*previous keys[^\n]*`).FindString(s.Log()); m != "" {
		s.t.Fatalf("reload %d failed: %s", n, m)
	}
}

func writeKeyring(t *testing.T, path, ifname string, all, vrf []byte, client netip.Addr) {
	t.Helper()
	testnet.Keyring{Peers: []testnet.Entry{
		{Name: "0.0.0.0/0", Key: all},
		{Name: client.String() + "/32", Key: vrf, Interface: ifname},
	}}.Write(t, path)
}

// TestVRFKeyShimListen: sshd-md5-socket -l with a keyring that has an
// interface = "vrf-x" entry starts, serves the VRF peer, and keeps its key
// over reloads.
func TestVRFKeyShimListen(t *testing.T) {
	n := newVRFNet(t)
	sshd := testnet.NewSSHD(t)
	kr := filepath.Join(t.TempDir(), "keyring.toml")
	all, vrf := secret(t), secret(t)
	writeKeyring(t, kr, "vrf-x", all, vrf, n.link.AddrB4)
	s := startShim(t, n.server, nil, append([]string{"-k", kr, "-l", fmt.Sprintf("0.0.0.0:%d", port), "--"}, sshd.InetdArgs()...)...)
	s.waitLog(`keyed 1 listener\(s\) with 2 key\(s\)`)
	// A connection accepted through the VRF is bound to it; the shim's
	// key check finds it with its interface and sshd answers.
	c := n.expectKey(t, "startup", vrf)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if b, err := bufio.NewReader(c).ReadString('\n'); err != nil || !strings.HasPrefix(b, "SSH-2.0-") {
		t.Errorf("startup: a signed connection through the VRF got %q, %v from the shim; want sshd's banner\n%s", b, err, s.Log())
	}
	c.Close()
	n.expectNoAnswer(t, "startup, catch-all key from the VRF peer", all)

	s.reload(1) // same keyring
	n.expectKey(t, "reload, same keyring", vrf).Close()

	vrf2 := secret(t)
	writeKeyring(t, kr, "vrf-x", all, vrf2, n.link.AddrB4)
	s.reload(2)
	n.expectKey(t, "reload, new VRF secret", vrf2).Close()
	n.expectNoAnswer(t, "reload, new VRF secret, old one", vrf)
	if strings.Contains(s.Log(), string(vrf)) || strings.Contains(s.Log(), string(all)) {
		t.Error("a secret appears in the shim's log")
	}
}

// TestVRFKeySystemdSocket: a socket that systemd holds keeps its keys
// across restarts of the service, so the second run finds the VRF key in
// the kernel's report under no interface and must neither fail nor drop it;
// reloads in both runs keep it.
func TestVRFKeySystemdSocket(t *testing.T) {
	n := newVRFNet(t)
	sshd := testnet.NewSSHD(t)
	kr := filepath.Join(t.TempDir(), "keyring.toml")
	all, vrf := secret(t), secret(t)
	writeKeyring(t, kr, "vrf-x", all, vrf, n.link.AddrB4)
	ln := n.server.Listen(t, "tcp4", fmt.Sprintf("0.0.0.0:%d", port), nil)
	f, err := ln.File()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	args := append([]string{"-k", kr, "--"}, sshd.InetdArgs()...)

	s1 := startShim(t, n.server, []*os.File{f}, args...)
	s1.waitLog(`keyed 1 listener\(s\) with 2 key\(s\)`)
	n.expectKey(t, "first run", vrf).Close()
	s1.reload(1)
	n.expectKey(t, "first run, reload", vrf).Close()
	s1.stop()

	// The restarted service: the socket still carries both keys.
	n.expectKey(t, "between runs (the kernel completes the handshake)", vrf).Close()
	s2 := startShim(t, n.server, []*os.File{f}, args...)
	s2.waitLog(`keyed 1 listener\(s\) with 2 key\(s\)`)
	n.expectKey(t, "second run", vrf).Close()
	n.expectNoAnswer(t, "second run, catch-all key from the VRF peer", all)
	s2.reload(1)
	n.expectKey(t, "second run, reload", vrf).Close()

	vrf2 := secret(t)
	writeKeyring(t, kr, "vrf-x", all, vrf2, n.link.AddrB4)
	s2.reload(2)
	n.expectKey(t, "second run, reload with a new VRF secret", vrf2).Close()
	n.expectNoAnswer(t, "second run, old VRF secret", vrf)
}
