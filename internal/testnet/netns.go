//go:build linux

// Package testnet is test support for code that needs real components: real
// network namespaces and veth pairs, a real OpenSSH server, tcpdump -M as an
// independent check of TCP-MD5 signatures, and the kernel's TCPMD5* counters.
//
// It is meant for _test.go files only. The tests run as root; a missing
// requirement (not root, binary absent, netns creation failing) fails the
// test with the reason instead of skipping it, so that CI cannot go green
// without having tested anything.
//
// Everything a helper creates is removed through t.Cleanup, also when the
// test fails, and every name is random, so several test binaries can run at
// the same time. Traffic only ever goes to loopback or to namespaces the
// test created.
package testnet

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sshmd5/sshmd5/internal/tcpsig/md5"
)

// RequireRoot fails the test (t.Fatal, not skip) unless euid is 0.
func RequireRoot(t testing.TB) {
	t.Helper()
	if euid := os.Geteuid(); euid != 0 {
		t.Fatalf("testnet: this test must run as root (euid is %d): it creates network namespaces and veth pairs, runs sshd and tcpdump", euid)
	}
}

// requireBinary returns the path of name or fails the test.
func requireBinary(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("testnet: required program %q not found: %v", name, err)
	}
	return p
}

// RandHex returns n random bytes in hex, for unique names (namespaces,
// interfaces, files).
func RandHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on Linux
	return hex.EncodeToString(b)
}

// NS is a network namespace created for one test.
type NS struct {
	Name string
}

var labelClean = regexp.MustCompile(`[^A-Za-z0-9_-]+`)

// NewNS creates a network namespace with lo up. The name is "smd", random
// hex and the label (sanitized), so that concurrent test binaries never
// collide and a leftover namespace says where it came from. It is deleted at
// cleanup.
func NewNS(t testing.TB, label string) *NS {
	t.Helper()
	RequireRoot(t)
	requireBinary(t, "ip")
	name := "smd" + RandHex(4)
	if l := labelClean.ReplaceAllString(label, ""); l != "" {
		name += "-" + l
	}
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("testnet: ip netns add %s: %v: %s", name, err, out)
	}
	ns := &NS{Name: name}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "delete", name).CombinedOutput(); err != nil {
			t.Errorf("testnet: ip netns delete %s: %v: %s", name, err, out)
		}
	})
	ns.Run(t, "ip", "link", "set", "lo", "up")
	return ns
}

// Cmd returns a command that runs name with args inside the namespace (via
// "ip netns exec", which execs the program, so the process is the program
// itself and Process.Kill reaches it).
//
// Wait gives up on the command's output pipes 5 s after it exits: a
// grandchild it leaves behind (ssh's ProxyCommand, after ssh is killed)
// would otherwise hold them open and hang the test.
func (ns *NS) Cmd(name string, args ...string) *exec.Cmd {
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns.Name, name}, args...)...)
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// Run runs a command in the namespace and returns its combined output; any
// failure fails the test.
func (ns *NS) Run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := ns.Cmd(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("testnet: in netns %s: %s %s: %v\n%s", ns.Name, name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// Do runs fn on the calling goroutine, locked to its OS thread, with that
// thread switched into the namespace, and switches back afterwards.
//
// Sockets created inside fn (net.Listen, net.Dial, ListenConfig.Listen, ...)
// belong to the namespace for good and may be used from anywhere after Do
// returns. Goroutines started inside fn do NOT inherit the namespace: they
// run on other threads, in the test's original namespace. Only the socket
// creation has to happen inside fn.
//
// If switching back fails the goroutine stays locked to the thread, so the
// runtime discards the thread when the goroutine ends instead of reusing a
// thread that sits in the wrong namespace.
func (ns *NS) Do(fn func() error) (err error) {
	runtime.LockOSThread()
	orig, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("testnet: open own netns: %w", err)
	}
	defer orig.Close()
	target, err := os.Open("/run/netns/" + ns.Name)
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("testnet: open netns %s: %w", ns.Name, err)
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("testnet: setns %s: %w", ns.Name, err)
	}
	// Deferred so that a t.FailNow (runtime.Goexit) inside fn still
	// switches back.
	defer func() {
		if berr := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); berr != nil {
			err = fmt.Errorf("testnet: setns back from %s: %w (thread discarded)", ns.Name, berr)
			return // stay locked: see above
		}
		runtime.UnlockOSThread()
	}()
	return fn()
}

// MD5Counters are the TcpExt TCPMD5* counters of one namespace.
type MD5Counters = md5.Counters

// MD5Counters reads the namespace's TCPMD5* counters from netstat as seen
// from inside it.
func (ns *NS) MD5Counters(t testing.TB) MD5Counters {
	t.Helper()
	var c MD5Counters
	err := ns.Do(func() error {
		// thread-self, not self: /proc/self/net shows the namespace of
		// the process's main thread, not of this (switched) thread.
		var err error
		c, err = md5.ReadCountersAt("/proc/thread-self/net/netstat")
		return err
	})
	if err != nil {
		t.Fatalf("testnet: TCP-MD5 counters of %s: %v", ns.Name, err)
	}
	return c
}

// Link is a veth pair joining two namespaces, addressed on both ends.
type Link struct {
	A, B           *NS
	AddrA4, AddrB4 netip.Addr // 10.x.y.1 and 10.x.y.2 in a /24
	AddrA6, AddrB6 netip.Addr // fd00:x:y::1 and ::2 in a /64
	IfA, IfB       string     // interface names in A and in B
}

// usedNets keeps Connect from handing out the same /24 twice in one test
// binary, which could put two links of one namespace on the same subnet.
var (
	usedNetsMu sync.Mutex
	usedNets   = map[[2]byte]bool{}
)

func pickNet() [2]byte {
	usedNetsMu.Lock()
	defer usedNetsMu.Unlock()
	for {
		var b [2]byte
		_, _ = rand.Read(b[:])
		b[0] = 200 + b[0]%50 // 10.200.0.0 - 10.249.255.0
		if !usedNets[b] {
			usedNets[b] = true
			return b
		}
	}
}

// Connect joins a and b with a veth pair, addresses both ends (IPv4 /24 and
// IPv6 ULA /64, the latter with nodad so it is usable at once), brings it up
// and waits until both ends are up.
func Connect(t testing.TB, a, b *NS) *Link {
	t.Helper()
	id := "smd" + RandHex(4) // + "a"/"b": 12 chars, under IFNAMSIZ-1 = 15
	n := pickNet()
	l := &Link{
		A: a, B: b, IfA: id + "a", IfB: id + "b",
		AddrA4: netip.AddrFrom4([4]byte{10, n[0], n[1], 1}),
		AddrB4: netip.AddrFrom4([4]byte{10, n[0], n[1], 2}),
		AddrA6: netip.MustParseAddr(fmt.Sprintf("fd00:%x:%x::1", n[0], n[1])),
		AddrB6: netip.MustParseAddr(fmt.Sprintf("fd00:%x:%x::2", n[0], n[1])),
	}
	if out, err := exec.Command("ip", "link", "add", l.IfA, "netns", a.Name,
		"type", "veth", "peer", "name", l.IfB, "netns", b.Name).CombinedOutput(); err != nil {
		t.Fatalf("testnet: create veth %s/%s: %v: %s", l.IfA, l.IfB, err, out)
	}
	// Deleting the namespaces would remove the pair too, but only once the
	// last process in them is gone; delete it explicitly (either end takes
	// both).
	t.Cleanup(func() { _ = exec.Command("ip", "-n", a.Name, "link", "del", l.IfA).Run() })
	for _, e := range []struct {
		ns     *NS
		ifc    string
		a4, a6 netip.Addr
	}{{a, l.IfA, l.AddrA4, l.AddrA6}, {b, l.IfB, l.AddrB4, l.AddrB6}} {
		e.ns.Run(t, "ip", "addr", "add", e.a4.String()+"/24", "dev", e.ifc)
		e.ns.Run(t, "ip", "-6", "addr", "add", e.a6.String()+"/64", "dev", e.ifc, "nodad")
		e.ns.Run(t, "ip", "link", "set", e.ifc, "up")
	}
	// A veth end reports carrier only once its peer is up too.
	deadline := time.Now().Add(5 * time.Second)
	for _, e := range []struct {
		ns  *NS
		ifc string
	}{{a, l.IfA}, {b, l.IfB}} {
		for {
			out := e.ns.Run(t, "ip", "-o", "link", "show", e.ifc)
			if strings.Contains(out, "state UP") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("testnet: %s in %s not up after 5s: %s", e.ifc, e.ns.Name, out)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return l
}

// Listen opens a TCP listener on addr inside the namespace, with keys set
// before bind and listen (none: unkeyed, as a .socket unit's), the way
// systemd or an earlier run of the shim would have left it. It is closed
// at cleanup.
func (ns *NS) Listen(t testing.TB, network, addr string, keys []md5.Key) *net.TCPListener {
	t.Helper()
	var ln net.Listener
	if err := ns.Do(func() error {
		lc := net.ListenConfig{}
		if keys != nil {
			lc.Control = md5.ListenControl(keys)
		}
		lc.SetMultipathTCP(false)
		var err error
		ln, err = lc.Listen(context.Background(), network, addr)
		return err
	}); err != nil {
		t.Fatalf("testnet: listen on %s in %s: %v", addr, ns.Name, err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln.(*net.TCPListener)
}

// Dial connects to dst (host:port) from the namespace, signed with secret
// (nil: unsigned), giving up after timeout. MPTCP is off: TCP_MD5SIG
// fails on an MPTCP socket.
func (ns *NS) Dial(network, dst string, secret []byte, timeout time.Duration) (*net.TCPConn, error) {
	return ns.DialFrom(netip.Addr{}, network, dst, secret, timeout)
}

// DialFrom is Dial from the local address src (the zero Addr: the
// kernel's choice), for a test that tells peers apart by address.
func (ns *NS) DialFrom(src netip.Addr, network, dst string, secret []byte, timeout time.Duration) (*net.TCPConn, error) {
	d := net.Dialer{Timeout: timeout}
	d.SetMultipathTCP(false)
	if secret != nil {
		d.Control = md5.DialControl(md5.Secret(secret))
	}
	if src.IsValid() {
		d.LocalAddr = &net.TCPAddr{IP: src.AsSlice()}
	}
	var c net.Conn
	err := ns.Do(func() error {
		var err error
		c, err = d.Dial(network, dst)
		return err
	})
	if err != nil {
		return nil, err
	}
	return c.(*net.TCPConn), nil
}

// Unanswered dials dst (host:port) from the namespace, signed with secret
// (nil: unsigned), and returns nil when the SYN got no answer at all
// within timeout: a timeout, which is what a TCP-MD5 listener gives a
// peer without the right key. Anything else (a connection, a refusal) is
// returned as an error that says what came back.
func (ns *NS) Unanswered(dst string, secret []byte, timeout time.Duration) error {
	return ns.UnansweredFrom(netip.Addr{}, dst, secret, timeout)
}

// UnansweredFrom is Unanswered from the local address src (the zero
// Addr: the kernel's choice).
func (ns *NS) UnansweredFrom(src netip.Addr, dst string, secret []byte, timeout time.Duration) error {
	c, err := ns.DialFrom(src, "tcp", dst, secret, timeout)
	var ne net.Error
	switch {
	case err == nil:
		c.Close()
		return fmt.Errorf("dial %s (signed: %v) was answered and connected; want no answer", dst, secret != nil)
	case errors.As(err, &ne) && ne.Timeout():
		return nil
	default:
		return fmt.Errorf("dial %s (signed: %v): %v; want no answer (a timeout), not an error", dst, secret != nil, err)
	}
}
