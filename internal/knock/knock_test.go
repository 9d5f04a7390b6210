//go:build linux

package knock_test

import (
	"context"
	"fmt"
	"log"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sshmd5/sshmd5/internal/knock"
	"github.com/sshmd5/sshmd5/internal/tcpsig/md5"
	"github.com/sshmd5/sshmd5/internal/testnet"
)

// keyedListener opens a TCP-MD5 listener in ns on addr, keyed for every
// IPv4 peer, and returns it with its namespace cookie.
func keyedListener(t *testing.T, ns *testnet.NS, addr string) (net.Listener, uint64) {
	t.Helper()
	ln := ns.Listen(t, "tcp4", addr, []md5.Key{{Prefix: netip.MustParsePrefix("0.0.0.0/0"), Secret: md5.Secret("knock-test-key")}})
	rc, _ := ln.SyscallConn()
	var cookie uint64
	var cerr error
	rc.Control(func(fd uintptr) { cookie, cerr = knock.NetnsCookie(int(fd)) })
	if cerr != nil {
		t.Fatal(cerr)
	}
	return ln, cookie
}

// knockFrom sends one SYN (unsigned, or signed with a wrong key) from ns,
// which gets no answer: the dial gives up before the first retransmission.
func knockFrom(t *testing.T, ns *testnet.NS, addr string, wrongKey bool) {
	t.Helper()
	var secret []byte
	if wrongKey {
		secret = []byte("not-the-key")
	}
	if err := ns.Unanswered(addr, secret, 500*time.Millisecond); err != nil {
		t.Fatalf("knock on %s: %v", addr, err)
	}
}

// Watch against the real tracepoints: a wrong-key and an unsigned knock
// each give one line with the peer's address; knocks on another port of
// the namespace, and on the same port in another namespace, give none
// (the kernel-side filter by namespace cookie and port); the stale
// instance of a dead pid is removed at start, the live one of another
// process kept, and Watch's own removed when it returns.
func TestWatchTracepoints(t *testing.T) {
	tfs := testnet.Tracefs(t)
	srv, cli := testnet.NewNS(t, "ksrv"), testnet.NewNS(t, "kcli")
	link := testnet.Connect(t, srv, cli)
	addr := netip.AddrPortFrom(link.AddrA4, 2222)
	_, cookie := keyedListener(t, srv, addr.String())
	keyedListener(t, srv, netip.AddrPortFrom(link.AddrA4, 2223).String()) // same namespace, other port
	keyedListener(t, cli, netip.AddrPortFrom(link.AddrB4, 2222).String()) // other namespace, same port

	// A dead pid's instance, and one of a live process (sleep).
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	live := exec.Command("sleep", "60")
	if err := live.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { live.Process.Kill(); live.Wait() })
	inst := filepath.Join(tfs, "instances")
	deadDir := filepath.Join(inst, fmt.Sprintf("sshd-md5-%d", dead.Process.Pid))
	liveDir := filepath.Join(inst, fmt.Sprintf("sshd-md5-%d", live.Process.Pid))
	for _, d := range []string{deadDir, liveDir} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { os.Remove(liveDir); os.Remove(deadDir) })

	var out testnet.LockedBuffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		knock.Watch(ctx, knock.Config{Listeners: []netip.AddrPort{addr}, Cookie: cookie, Log: log.New(&out, "", 0), Tracefs: tfs})
	}()
	defer func() { cancel(); <-done }()
	waitFor(t, &out, "knock: logging wrong-key and unsigned segments to "+addr.String())
	own := filepath.Join(inst, fmt.Sprintf("sshd-md5-%d", os.Getpid()))
	if _, err := os.Stat(own); err != nil {
		t.Fatalf("no instance of our own: %v", err)
	}
	if _, err := os.Stat(deadDir); !os.IsNotExist(err) {
		t.Errorf("the dead pid's instance %s is still there (%v)", deadDir, err)
	}
	if _, err := os.Stat(liveDir); err != nil {
		t.Errorf("the live pid's instance was removed: %v", err)
	}

	knockFrom(t, cli, addr.String(), true)
	knockFrom(t, cli, addr.String(), false)
	knockFrom(t, cli, netip.AddrPortFrom(link.AddrA4, 2223).String(), false)
	knockFrom(t, srv, netip.AddrPortFrom(link.AddrB4, 2222).String(), false)
	wrong := fmt.Sprintf("knock: wrong-key from %s to %s, 1 segment\n", link.AddrB4, addr)
	unsigned := fmt.Sprintf("knock: unsigned from %s to %s, 1 segment\n", link.AddrB4, addr)
	waitFor(t, &out, wrong)
	waitFor(t, &out, unsigned)
	time.Sleep(300 * time.Millisecond) // give a stray event time to show
	cancel()
	<-done
	got := out.String()
	lines := strings.Split(strings.TrimSpace(got), "\n")
	if len(lines) != 3 || lines[1]+"\n" != wrong || lines[2]+"\n" != unsigned {
		t.Fatalf("log:\n%s\nwant the start line, then:\n%s%s", got, wrong, unsigned)
	}
	if _, err := os.Stat(own); !os.IsNotExist(err) {
		t.Errorf("instance %s left behind after Watch returned (%v)", own, err)
	}
}

// Without tracefs: one line saying so, then the counters.
func TestWatchFallback(t *testing.T) {
	testnet.RequireRoot(t)
	var out testnet.LockedBuffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		knock.Watch(ctx, knock.Config{Listeners: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:2222")}, Log: log.New(&out, "", 0), Tracefs: t.TempDir()})
	}()
	waitFor(t, &out, "counting knocks with the kernel's counters instead, without peer addresses")
	cancel()
	<-done
	if n := strings.Count(out.String(), "\n"); n > 2 {
		t.Errorf("log:\n%s", out.String())
	}
	if !strings.HasPrefix(out.String(), "knock: no tracefs at ") {
		t.Errorf("log %q: want the reason first", out.String())
	}
}

func waitFor(t *testing.T, out *testnet.LockedBuffer, s string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(out.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in the log after 5s:\n%s", s, out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
