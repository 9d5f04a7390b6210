//go:build linux

package shim_test

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sshmd5/sshmd5/internal/testnet"
)

// --max-conns 2: two sessions open, the third connection is closed and
// logged; once one ends, a new one is served again.
func TestMaxConns(t *testing.T) {
	e := newEnv(t)
	k := e.secret()
	kr := filepath.Join(e.dir, "keyring.toml")
	e.writeKeyring(kr, map[string][]byte{"0.0.0.0/0": k})
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
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := e.dial(addr, k, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := banner(c)
		c.Close()
		if strings.HasPrefix(b, "SSH-2.0-") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no connection served after a slot was freed")
		}
		time.Sleep(100 * time.Millisecond)
	}
	held[1].Close()
}

// 1,000 signed connections (connect, read the banner, close): children
// are reaped (no zombies after the first 200) and the shim's fd count
// does not grow.
func TestNoZombiesNoFDLeak(t *testing.T) {
	e := newEnv(t)
	k := e.secret()
	kr := filepath.Join(e.dir, "keyring.toml")
	e.writeKeyring(kr, map[string][]byte{"0.0.0.0/0": k})
	addr := hostPort(e.link.AddrA4, port)
	// One source, 8 connections at a time, none authenticating, and a
	// closed one counts until its sshd has exited: past the default
	// per-source bound, which TestPendingLimits tests.
	p := e.start(nil, e.shim, append([]string{"-k", kr, "-l", addr, "--max-startups", "100", "--per-source-max-startups", "100", "--"}, e.sshd.InetdArgs()...)...)
	p.WaitLog(`serving`, 10*time.Second)
	pid := p.Cmd.Process.Pid
	fds := func() int {
		ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
		if err != nil {
			t.Fatal(err)
		}
		return len(ents)
	}
	// children lists the shim's child processes; it waits for the sshd
	// processes of closed connections to exit and be reaped.
	children := func() []string {
		var kids []string
		for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			kids = kids[:0]
			tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
			for _, f := range tasks {
				b, _ := os.ReadFile(f)
				kids = append(kids, strings.Fields(string(b))...)
			}
			if len(kids) == 0 || time.Now().After(deadline) {
				return kids
			}
		}
	}
	run := func(n int) {
		var wg sync.WaitGroup
		errs := make(chan error, n)
		work := make(chan int, n)
		for i := range n {
			work <- i
		}
		close(work)
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range work {
					c, err := e.dial(addr, k, 5*time.Second)
					if err != nil {
						errs <- err
						return
					}
					b, err := banner(c)
					c.Close()
					if !strings.HasPrefix(b, "SSH-2.0-") {
						errs <- fmt.Errorf("no banner: %q, %v", b, err)
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
	}
	before := fds()
	start := time.Now()
	run(200)
	if kids := children(); len(kids) != 0 {
		for _, kid := range kids {
			st, _ := os.ReadFile("/proc/" + kid + "/stat")
			t.Logf("child %s: %s", kid, st)
		}
		t.Fatalf("after 200 connections the shim still has %d children (zombies or hung sshd)", len(kids))
	}
	run(800)
	if kids := children(); len(kids) != 0 {
		t.Fatalf("after 1000 connections the shim still has %d children", len(kids))
	}
	after := fds()
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
	kr := filepath.Join(e.dir, "keyring.toml")
	e.writeKeyring(kr, map[string][]byte{"0.0.0.0/0": k})
	addr := hostPort(e.link.AddrA4, port)
	p := e.start(nil, e.shim, append([]string{"-k", kr, "-l", addr, "--max-conns", strconv.Itoa(n),
		// Silent connections are unauthenticated: let them all in.
		"--max-startups", strconv.Itoa(n), "--per-source-max-startups", strconv.Itoa(n), "--"}, e.sshd.InetdArgs()...)...)
	p.WaitLog(`serving`, 10*time.Second)
	pid := p.Cmd.Process.Pid
	before := threads(t, pid)
	var (
		mu   sync.Mutex
		held []net.Conn
		wg   sync.WaitGroup
		errs = make(chan error, n)
	)
	work := make(chan int, n)
	for i := range n {
		work <- i
	}
	close(work)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range work {
				c, err := e.dial(addr, k, 5*time.Second)
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				held = append(held, c)
				mu.Unlock()
				if b, err := banner(c); !strings.HasPrefix(b, "SSH-2.0-") {
					errs <- fmt.Errorf("no banner: %q, %v", b, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	during := threads(t, pid)
	for _, c := range held {
		c.Close()
	}
	for deadline := time.Now().Add(20 * time.Second); len(testnet.Children(pid)) > 0; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d children left 20s after their connections closed", len(testnet.Children(pid)))
		}
	}
	after := threads(t, pid)
	t.Logf("shim threads: %d before, %d with %d sessions open, %d after they ended", before, during, n, after)
	if during > most || after > most {
		t.Fatalf("the shim has %d threads with %d sessions open and %d after they ended; want at most %d", during, n, after, most)
	}
}
