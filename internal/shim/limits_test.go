//go:build linux

package shim_test

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sshmd5/sshmd5/internal/testnet"
)

// --max-conns 2: two sessions open, the third connection is closed and
// logged; once one ends, a new one is served again.
func TestMaxConns(t *testing.T) {
	e := newEnv(t)
	k := e.secret()
	kr := e.keyring(map[string][]byte{"0.0.0.0/0": k})
	addr := hostPort(e.link.AddrA4, port)
	p := e.start(nil, e.shim, append([]string{"-k", kr, "-l", addr, "--max-conns", "2", "--"}, e.sshd.InetdArgs()...)...)
	p.WaitLog(`at most 2 at a time`, 10*time.Second)
	var held []interface{ Close() error }
	for i := range 2 {
		c, err := e.dial(addr, k, 5*time.Second)
		if err != nil {
			t.Fatalf("signed dial %d: %v", i, err)
		}
		held = append(held, c)
		if b, err := banner(c); !strings.HasPrefix(b, "SSH-2.0-") {
			t.Fatalf("connection %d: no banner (%q, %v)", i, b, err)
		}
	}
	c3, err := e.dial(addr, k, 5*time.Second)
	if err != nil {
		t.Fatalf("third signed dial: %v", err)
	}
	defer c3.Close()
	expectClosed(t, c3)
	p.WaitLog(`closed connection from .*: --max-conns 2 reached`, 5*time.Second)
	held[0].Close()
	// sshd -i notices the closed connection and exits; the slot frees.
	waitServed(t, e.client, addr, k, "no connection served after a slot was freed")
	held[1].Close()
}

// 1,000 signed connections (connect, read the banner, close): children
// are reaped (no zombies after the first 200) and the shim's fd count
// does not grow.
func TestNoZombiesNoFDLeak(t *testing.T) {
	e := newEnv(t)
	k := e.secret()
	kr := e.keyring(map[string][]byte{"0.0.0.0/0": k})
	addr := hostPort(e.link.AddrA4, port)
	// One source, 8 connections at a time, none authenticating, and a
	// closed one counts until its sshd has exited: past the default
	// per-source bound, which TestPendingLimits tests.
	p := e.start(nil, e.shim, append([]string{"-k", kr, "-l", addr, "--max-startups", "100", "--per-source-max-startups", "100", "--"}, e.sshd.InetdArgs()...)...)
	p.WaitLog(`serving`, 10*time.Second)
	pid := p.Cmd.Process.Pid
	// children waits for the sshd processes of closed connections to exit
	// and be reaped, and returns the shim's children left.
	children := func() map[int]string { return testnet.WaitChildren(pid, 15*time.Second, nil) }
	before := testnet.FDs(t, pid)
	start := time.Now()
	e.served(addr, k, 200, false)
	if kids := children(); len(kids) != 0 {
		for kid := range kids {
			st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", kid))
			t.Logf("child %d: %s", kid, st)
		}
		t.Fatalf("after 200 connections the shim still has %d children (zombies or hung sshd)", len(kids))
	}
	e.served(addr, k, 800, false)
	if kids := children(); len(kids) != 0 {
		t.Fatalf("after 1000 connections the shim still has %d children", len(kids))
	}
	after := testnet.FDs(t, pid)
	t.Logf("1000 connections in %v; shim fds before %d, after %d", time.Since(start).Round(time.Millisecond), before, after)
	if after > before+2 {
		t.Fatalf("the shim's fds grew from %d to %d over 1000 connections", before, after)
	}
	if n := strings.Count(p.Log(), "-> sshd pid"); n != 1000 {
		t.Fatalf("the shim logged %d served connections, want 1000", n)
	}
}

// threads reads a process's OS thread count.
func threads(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "Threads:"); ok {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("no Threads: line in /proc/%d/status", pid)
	return 0
}

// At --max-conns, 200 sessions open at once and then closed: the shim's
// OS threads stay few, while the sessions run and after they end. Waiting
// for each child in a blocking wait4/waitid costs a thread per session,
// which the Go runtime never gives back, and at its limit of 10,000
// threads (debug.SetMaxThreads) it aborts the whole process.
func TestThreadsBounded(t *testing.T) {
	const n = 200
	// Far below n: the runtime's own threads (GOMAXPROCS, sysmon, the
	// netpoller, a few spares for fork and exec).
	const most = 30
	e := newEnv(t)
	k := e.secret()
	kr := e.keyring(map[string][]byte{"0.0.0.0/0": k})
	addr := hostPort(e.link.AddrA4, port)
	p := e.start(nil, e.shim, append([]string{"-k", kr, "-l", addr, "--max-conns", strconv.Itoa(n),
		// Silent connections are unauthenticated: let them all in.
		"--max-startups", strconv.Itoa(n), "--per-source-max-startups", strconv.Itoa(n), "--"}, e.sshd.InetdArgs()...)...)
	p.WaitLog(`serving`, 10*time.Second)
	pid := p.Cmd.Process.Pid
	before := threads(t, pid)
	held := e.served(addr, k, n, true)
	during := threads(t, pid)
	for _, c := range held {
		c.Close()
	}
	if left := testnet.WaitChildren(pid, 20*time.Second, nil); len(left) > 0 {
		t.Fatalf("%d children left 20s after their connections closed", len(left))
	}
	after := threads(t, pid)
	t.Logf("shim threads: %d before, %d with %d sessions open, %d after they ended", before, during, n, after)
	if during > most || after > most {
		t.Fatalf("the shim has %d threads with %d sessions open and %d after they ended; want at most %d", during, n, after, most)
	}
}
