//go:build linux

// The tests of the package from outside (md5_test), so that they can use
// internal/testnet, which imports md5: its namespaces, counters and "this
// SYN gets no answer" check. export_test.go lends them the few internals
// they pin.
package md5_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/sshmd5/sshmd5/internal/keyring"
	"github.com/sshmd5/sshmd5/internal/tcpsig"
	. "github.com/sshmd5/sshmd5/internal/tcpsig/md5"
	"github.com/sshmd5/sshmd5/internal/testnet"
)

// inNS runs body on a thread switched into a fresh namespace (lo up), so
// that the sockets it opens, the sysctls it sets and the sock_diag reads
// it makes are the namespace's; the kernel is real, nothing is mocked.
func inNS(t *testing.T, body func(ns *testnet.NS)) {
	t.Helper()
	ns := testnet.NewNS(t, "md5")
	if err := ns.Do(func() error { body(ns); return nil }); err != nil {
		t.Fatal(err)
	}
}

func key(p, secret string) Key {
	return Key{Prefix: netip.MustParsePrefix(p), Secret: Secret(secret)}
}

// listen opens a TCP listener with keys installed before bind and listen.
func listen(t *testing.T, addr string, keys ...Key) (net.Listener, Socket) {
	t.Helper()
	lc := net.ListenConfig{Control: ListenControl(keys)}
	lc.SetMultipathTCP(false)
	ln, err := lc.Listen(context.Background(), "tcp", addr)
	if err != nil {
		t.Fatalf("listen %s: %v", addr, err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	return ln, socketOf(t, ln.(*net.TCPListener))
}

func socketOf(t *testing.T, sc syscall.Conn) Socket {
	t.Helper()
	rc, err := sc.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	ts, err := tcpsig.FromConn(rc)
	if err != nil {
		t.Fatal(err)
	}
	return Socket{Socket: ts}
}

// dial connects from src (invalid: the kernel's choice) in ns, signed
// with secret (nil: unsigned), and checks an echo round trip. It returns
// the error of the attempt.
func dial(ns *testnet.NS, src netip.Addr, dst string, secret Secret) error {
	c, err := ns.DialFrom(src, "tcp", dst, secret, 1500*time.Millisecond)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := c.Write([]byte("ping")); err != nil {
		return err
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil {
		return err
	}
	if string(buf) != "ping" {
		return fmt.Errorf("echo returned %q", buf)
	}
	return nil
}

// from is a source address for mustConnect and mustBeIgnored; "" is the
// kernel's choice.
func from(src string) netip.Addr {
	if src == "" {
		return netip.Addr{}
	}
	return netip.MustParseAddr(src)
}

func mustConnect(t *testing.T, ns *testnet.NS, src, dst string, secret Secret) {
	t.Helper()
	if err := dial(ns, from(src), dst, secret); err != nil {
		t.Fatalf("dial %s from %q: %v", dst, src, err)
	}
}

// mustBeIgnored asserts that the SYN got no answer at all: a timeout, not
// a refusal, which is what a port dropped by a firewall looks like.
func mustBeIgnored(t *testing.T, ns *testnet.NS, src, dst string, secret Secret) {
	t.Helper()
	if err := ns.UnansweredFrom(from(src), dst, secret, 1500*time.Millisecond); err != nil {
		t.Fatalf("dial %s from %q: %v", dst, src, err)
	}
}

func TestStructLayout(t *testing.T) {
	// struct tcp_md5sig from include/uapi/linux/tcp.h, which the kernel
	// reads byte for byte.
	var s unix.TCPMD5Sig
	for _, c := range []struct {
		name      string
		got, want uintptr
	}{
		{"sizeof", unsafe.Sizeof(s), 216},
		{"tcpm_flags", unsafe.Offsetof(s.Flags), 128},
		{"tcpm_prefixlen", unsafe.Offsetof(s.Prefixlen), 129},
		{"tcpm_keylen", unsafe.Offsetof(s.Keylen), 130},
		{"tcpm_ifindex", unsafe.Offsetof(s.Ifindex), 132},
		{"tcpm_key", unsafe.Offsetof(s.Key), 136},
	} {
		if c.got != c.want {
			t.Errorf("%s = %d, want %d", c.name, c.got, c.want)
		}
	}
	if SizeofTCPMD5Sig != 216 {
		t.Errorf("SizeofTCPMD5Sig = %d", SizeofTCPMD5Sig)
	}
}

func TestEncode(t *testing.T) {
	v4 := Socket{Socket: tcpsig.Socket{Family: unix.AF_INET, Takes4: true}}
	dual := Socket{Socket: tcpsig.Socket{Family: unix.AF_INET6, Takes4: true, Takes6: true}}
	v6 := Socket{Socket: tcpsig.Socket{Family: unix.AF_INET6, Takes6: true}}
	for _, c := range []struct {
		s      Socket
		k      Key
		opt    int
		family uint16
		flags  uint8
		plen   uint8
		data   string // hex of Addr.Data[:22]
	}{
		{v4, key("192.0.2.7/32", "k"), unix.TCP_MD5SIG, unix.AF_INET, 0, 32, "0000c0000207" + strings.Repeat("00", 16)},
		{v4, key("10.0.0.0/8", "k"), unix.TCP_MD5SIG_EXT, unix.AF_INET, 1, 8, "00000a000000" + strings.Repeat("00", 16)},
		{dual, key("0.0.0.0/0", "k"), unix.TCP_MD5SIG_EXT, unix.AF_INET6, 1, 0, strings.Repeat("00", 6) + "00000000000000000000ffff00000000"},
		{dual, key("10.1.0.0/16", "k"), unix.TCP_MD5SIG_EXT, unix.AF_INET6, 1, 16, strings.Repeat("00", 6) + "00000000000000000000ffff0a010000"},
		{v6, key("2001:db8::/32", "k"), unix.TCP_MD5SIG_EXT, unix.AF_INET6, 1, 32, strings.Repeat("00", 6) + "20010db8000000000000000000000000"},
		{v6, key("2001:db8::1/128", "k"), unix.TCP_MD5SIG, unix.AF_INET6, 0, 128, strings.Repeat("00", 6) + "20010db8000000000000000000000001"},
		{v6, Key{Prefix: netip.MustParsePrefix("2001:db8::1/128"), Ifindex: 7}, unix.TCP_MD5SIG_EXT, unix.AF_INET6, 3, 128, strings.Repeat("00", 6) + "20010db8000000000000000000000001"},
	} {
		sig, opt, err := c.s.Encode(c.k)
		if err != nil {
			t.Errorf("%v: %v", c.k, err)
			continue
		}
		if opt != c.opt || sig.Addr.Family != c.family || sig.Flags != c.flags || sig.Prefixlen != c.plen {
			t.Errorf("%v: opt %d family %d flags %d prefixlen %d, want %d %d %d %d", c.k, opt, sig.Addr.Family, sig.Flags, sig.Prefixlen, c.opt, c.family, c.flags, c.plen)
		}
		if got := fmt.Sprintf("%x", sig.Addr.Data[:22]); got != c.data {
			t.Errorf("%v: address bytes %s, want %s", c.k, got, c.data)
		}
	}
	if _, _, err := v4.Encode(key("2001:db8::/32", "k")); err == nil {
		t.Error("IPv6 key accepted for an IPv4 socket")
	}
	if _, _, err := v6.Encode(key("10.0.0.0/8", "k")); err == nil {
		t.Error("IPv4 key accepted for a v6-only socket")
	}
}

func TestSecretNeverFormats(t *testing.T) {
	k := key("10.0.0.0/8", "hunter2hunter2")
	for _, f := range []string{"%v", "%+v", "%#v", "%s", "%x", "%q"} {
		if out := fmt.Sprintf(f, k); strings.Contains(out, "hunter2") || strings.Contains(out, "68756e746572") {
			t.Errorf("%s printed the secret: %s", f, out)
		}
		if out := fmt.Sprintf(f, k.Secret); strings.Contains(out, "hunter2") || strings.Contains(out, "68756e746572") {
			t.Errorf("%s printed the secret: %s", f, out)
		}
	}
}

func TestValidate(t *testing.T) {
	for _, c := range []struct {
		k    Key
		want string
	}{
		{Key{Secret: Secret("x")}, "invalid peer prefix"},
		{key("::ffff:10.0.0.0/104", "x"), "write IPv4 peers as IPv4"},
		{key("10.0.0.0/8", ""), "0 bytes, the kernel takes 1 to 80"},
		{key("10.0.0.0/8", strings.Repeat("x", 81)), "81 bytes"},
	} {
		err := c.k.Validate()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: got %v, want %q", c.k, err, c.want)
		}
	}
}

func TestSignedPeerAcceptedOthersIgnored(t *testing.T) {
	inNS(t, func(ns *testnet.NS) {
		ln, _ := listen(t, "127.0.0.1:0", key("0.0.0.0/0", "right"))
		dst := ln.Addr().String()

		before := ns.MD5Counters(t)
		mustConnect(t, ns, "", dst, Secret("right"))
		mustBeIgnored(t, ns, "", dst, nil)
		afterUnsigned := ns.MD5Counters(t)
		if d := afterUnsigned.Sub(before); d.NotFound == 0 {
			t.Errorf("unsigned SYN: TCPMD5NotFound did not move: %+v", d)
		}
		mustBeIgnored(t, ns, "", dst, Secret("wrong"))
		if d := ns.MD5Counters(t).Sub(afterUnsigned); d.Failure == 0 {
			t.Errorf("wrong-key SYN: TCPMD5Failure did not move: %+v", d)
		}
	})
}

func TestLongestPrefixWins(t *testing.T) {
	inNS(t, func(ns *testnet.NS) {
		// The more specific key is installed first: order must not matter.
		ln, s := listen(t, "127.0.0.1:0", key("127.0.0.2/32", "host"), key("0.0.0.0/0", "all"))
		dst := ln.Addr().String()
		mustConnect(t, ns, "127.0.0.2", dst, Secret("host"))
		mustBeIgnored(t, ns, "127.0.0.2", dst, Secret("all"))
		mustConnect(t, ns, "127.0.0.3", dst, Secret("all"))
		mustBeIgnored(t, ns, "127.0.0.3", dst, Secret("host"))

		if err := s.Delete(netip.MustParsePrefix("127.0.0.2/32"), 0); err != nil {
			t.Fatal(err)
		}
		mustConnect(t, ns, "127.0.0.2", dst, Secret("all"))
		err := s.Delete(netip.MustParsePrefix("127.0.0.2/32"), 0)
		if !errors.Is(err, unix.ENOENT) || !strings.Contains(err.Error(), "no such key") {
			t.Errorf("second delete: %v", err)
		}
		// Setting the same prefix again replaces its key.
		if err := s.Set(key("0.0.0.0/0", "new")); err != nil {
			t.Fatal(err)
		}
		mustConnect(t, ns, "127.0.0.3", dst, Secret("new"))
		mustBeIgnored(t, ns, "127.0.0.3", dst, Secret("all"))
	})
}

func TestDualStack(t *testing.T) {
	inNS(t, func(ns *testnet.NS) {
		lc := net.ListenConfig{Control: ListenControl([]Key{key("::/0", "six")})}
		lc.SetMultipathTCP(false)
		if _, err := lc.Listen(context.Background(), "tcp", "[::]:0"); err == nil || !strings.Contains(keyring.WordFix(err).Error(), `[peers."0.0.0.0/0"]`) {
			t.Fatalf("dual-stack listener with only ::/0: want an uncovered-IPv4 error, got %v", err)
		}

		ln, s := listen(t, "[::]:0", key("::/0", "six"), key("0.0.0.0/0", "four"))
		if !s.Takes4 || !s.Takes6 {
			t.Fatalf("[::] socket: Takes4=%v Takes6=%v", s.Takes4, s.Takes6)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		v4, v6 := fmt.Sprintf("127.0.0.1:%d", port), fmt.Sprintf("[::1]:%d", port)
		mustConnect(t, ns, "", v4, Secret("four"))
		mustConnect(t, ns, "", v6, Secret("six"))
		mustBeIgnored(t, ns, "", v4, nil)
		mustBeIgnored(t, ns, "", v6, nil)
		mustBeIgnored(t, ns, "", v4, Secret("six"))

		keys, err := s.Keys()
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]string{}
		for _, k := range keys {
			got[k.Prefix.String()] = string(k.Secret)
		}
		if len(got) != 2 || got["::/0"] != "six" || got["0.0.0.0/0"] != "four" {
			var names []string
			for p := range got {
				names = append(names, p)
			}
			t.Errorf("read back prefixes %v, want exactly ::/0 and 0.0.0.0/0 with their secrets", names)
		}
	})
}

// TestOneFamilyKeyLeavesOtherOpen documents the kernel behaviour that Cover
// exists for: a dual-stack socket with only ::/0 lets unsigned IPv4 in.
func TestOneFamilyKeyLeavesOtherOpen(t *testing.T) {
	inNS(t, func(ns *testnet.NS) {
		ln, s := listen(t, "[::]:0", key("::/0", "six"), key("0.0.0.0/0", "four"))
		if err := s.Delete(netip.MustParsePrefix("0.0.0.0/0"), 0); err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		mustConnect(t, ns, "", fmt.Sprintf("127.0.0.1:%d", port), nil)
	})
}

func TestKeysOfAcceptedConnections(t *testing.T) {
	inNS(t, func(ns *testnet.NS) {
		lc := net.ListenConfig{}
		lc.SetMultipathTCP(false)
		ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		s := socketOf(t, ln.(*net.TCPListener))
		// Queued before the listener had keys: the accepted socket has none.
		early, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer early.Close()
		if err := s.Install([]Key{key("0.0.0.0/0", "k")}); err != nil {
			t.Fatal(err)
		}
		d := net.Dialer{Control: DialControl(Secret("k"))}
		late, err := d.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer late.Close()

		for i, want := range []int{0, 1} {
			c, err := ln.Accept()
			if err != nil {
				t.Fatal(err)
			}
			keys, err := socketOf(t, c.(*net.TCPConn)).Keys()
			c.Close()
			if err != nil {
				t.Fatal(err)
			}
			if len(keys) != want {
				t.Errorf("accepted connection %d carries %d keys, want %d", i, len(keys), want)
			}
			if want == 1 && keys[0].Prefix != netip.MustParsePrefix("127.0.0.1/32") {
				t.Errorf("accepted connection key is for %s, want the peer's /32", keys[0].Prefix)
			}
		}
	})
}

func TestReconcile(t *testing.T) {
	inNS(t, func(ns *testnet.NS) {
		ln, s := listen(t, "127.0.0.1:0", key("0.0.0.0/0", "a"), key("127.0.0.2/32", "b"))
		dst := ln.Addr().String()

		d, err := s.Reconcile([]Key{key("0.0.0.0/0", "a"), key("127.0.0.2/32", "b")})
		if err != nil || !d.Empty() {
			t.Fatalf("no-op reconcile: %v %v", d, err)
		}
		d, err = s.Reconcile([]Key{key("0.0.0.0/0", "a2"), key("127.0.0.3/32", "c")})
		if err != nil {
			t.Fatal(err)
		}
		if len(d.Added) != 1 || len(d.Replaced) != 1 || len(d.Deleted) != 1 {
			t.Fatalf("diff %v, want 1 added, 1 replaced, 1 deleted", d)
		}
		mustConnect(t, ns, "127.0.0.2", dst, Secret("a2"))
		mustConnect(t, ns, "127.0.0.3", dst, Secret("c"))
		mustBeIgnored(t, ns, "127.0.0.4", dst, Secret("a"))

		// Dropping the catch-all is refused and changes nothing.
		if _, err := s.Reconcile([]Key{key("127.0.0.3/32", "c")}); !errors.As(err, new(UncoveredError)) {
			t.Fatalf("reconcile without a catch-all: %v", err)
		}
		mustConnect(t, ns, "127.0.0.4", dst, Secret("a2"))
	})
}

func TestReconcileRollsBackOnENOMEM(t *testing.T) {
	inNS(t, func(ns *testnet.NS) {
		ln, s := listen(t, "127.0.0.1:0", key("0.0.0.0/0", "old"))
		setOptmem(t, 2048)
		want := []Key{key("0.0.0.0/0", "new")}
		for i := range 200 {
			want = append(want, key(fmt.Sprintf("10.0.%d.0/24", i), "x"))
		}
		_, err := s.Reconcile(want)
		if !errors.Is(err, unix.ENOMEM) || !strings.Contains(err.Error(), "net.core.optmem_max") || !strings.Contains(err.Error(), "previous keys restored") {
			t.Fatalf("want ENOMEM naming optmem_max and a rollback, got %v", err)
		}
		keys, err := s.Keys()
		if err != nil {
			t.Fatal(err)
		}
		if len(keys) != 1 || keys[0].Prefix.Bits() != 0 || string(keys[0].Secret) != "old" {
			t.Fatalf("after rollback the socket carries %d keys, want only the old 0.0.0.0/0", len(keys))
		}
		mustConnect(t, ns, "", ln.Addr().String(), Secret("old"))
	})
}

// setOptmem lowers net.core.optmem_max in this test's namespace only.
func setOptmem(t *testing.T, n int) {
	t.Helper()
	// /proc/sys/net follows the opening thread's network namespace.
	f, err := os.OpenFile("/proc/sys/net/core/optmem_max", os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := fmt.Fprint(f, n); err != nil {
		t.Fatalf("setting optmem_max: %v", err)
	}
}

func TestMPTCPRefused(t *testing.T) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, unix.IPPROTO_MPTCP)
	if err != nil {
		t.Fatalf("opening an MPTCP socket to test the refusal: %v", err)
	}
	defer unix.Close(fd)
	if _, err := tcpsig.Inspect(fd); err == nil || !strings.Contains(err.Error(), "is MPTCP, which cannot carry TCP-MD5 or TCP-AO keys; use plain TCP (for a systemd socket, drop SocketProtocol=mptcp") {
		t.Fatalf("Inspect(MPTCP socket) = %v", err)
	}
}

func TestReadCounters(t *testing.T) {
	p := t.TempDir() + "/netstat"
	os.WriteFile(p, []byte("TcpExt: SyncookiesSent TCPMD5NotFound TCPMD5Unexpected TCPMD5Failure\nTcpExt: 1 7 8 9\nIpExt: A\nIpExt: 1\n"), 0o600)
	c, err := ReadCountersAt(p)
	if err != nil || c != (Counters{NotFound: 7, Unexpected: 8, Failure: 9}) {
		t.Fatalf("got %+v, %v", c, err)
	}
	if _, err := ReadCounters(); err != nil {
		t.Fatal(err)
	}
}

// TestReadBackLimit pins how many keys sock_diag can report, and that past
// it Keys says so instead of returning a short list.
func TestReadBackLimit(t *testing.T) {
	inNS(t, func(ns *testnet.NS) {
		setOptmem(t, 1<<22)
		if MaxReadableKeys != 655 {
			t.Errorf("MaxReadableKeys = %d, want 655", MaxReadableKeys)
		}
		for _, c := range []struct {
			n       int
			wantErr error
		}{{MaxReadableKeys, nil}, {MaxReadableKeys + 45, ErrTooManyToRead}} {
			want := []Key{key("0.0.0.0/0", "k")}
			for i := 1; i < c.n; i++ {
				want = append(want, key(fmt.Sprintf("10.%d.%d.0/24", i/256, i%256), "k"))
			}
			want[len(want)-1] = key("::/0", "k")
			_, s := listen(t, "[::]:0", want...)
			keys, err := s.Keys()
			if !errors.Is(err, c.wantErr) {
				t.Fatalf("%d keys: error %v, want %v", c.n, err, c.wantErr)
			}
			if err == nil && len(keys) != c.n {
				t.Fatalf("%d keys: read back %d", c.n, len(keys))
			}
		}
	})
}

// TestKeysNotPermitted runs itself again without CAP_NET_ADMIN: the kernel
// then hides keys, and Keys must say so rather than report none.
func TestKeysNotPermitted(t *testing.T) {
	if os.Getenv("MD5_TEST_NO_NET_ADMIN") == "1" {
		// No traffic flows, so the host's loopback will do: without
		// CAP_NET_ADMIN a new namespace could not bring lo up.
		_, s := listen(t, "127.0.0.1:0", key("0.0.0.0/0", "k"))
		if _, err := s.Keys(); !errors.Is(err, ErrNotPermitted) || !strings.Contains(err.Error(), "CAP_NET_ADMIN") {
			t.Fatalf("Keys without CAP_NET_ADMIN: %v", err)
		}
		return
	}
	if os.Geteuid() != 0 {
		t.Fatal("needs root to drop a capability from the bounding set")
	}
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Fatalf("setpriv (util-linux) is needed to drop CAP_NET_ADMIN: %v", err)
	}
	cmd := exec.Command(setpriv, "--bounding-set", "-net_admin", os.Args[0], "-test.run", "^TestKeysNotPermitted$", "-test.count=1")
	cmd.Env = append(os.Environ(), "MD5_TEST_NO_NET_ADMIN=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("child without CAP_NET_ADMIN: %v\n%s", err, out)
	}
}
