//go:build linux

package testnet

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Children returns the pids whose parent is pid, each with its state
// letter from /proc/PID/stat ("S", "R", "Z" for a zombie, ...): what a
// test checks to see that a server reaps its sessions.
func Children(pid int) map[int]string {
	kids := map[int]string{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...; comm may hold spaces and parens.
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) < 2 {
			continue
		}
		if pp, _ := strconv.Atoi(f[1]); pp == pid {
			kids[p] = f[0]
		}
	}
	return kids
}

// WaitChildren waits up to timeout until pid has no children that counts
// (nil: every child, a zombie not yet reaped included) reports true for
// their state letter, and returns those still there: empty when it got
// its way.
func WaitChildren(pid int, timeout time.Duration, counts func(state string) bool) map[int]string {
	deadline := time.Now().Add(timeout)
	for {
		left := map[int]string{}
		for p, st := range Children(pid) {
			if counts == nil || counts(st) {
				left[p] = st
			}
		}
		if len(left) == 0 || time.Now().After(deadline) {
			return left
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// FDs returns how many file descriptors process pid has open: what a test
// compares before and after a load to find a leak.
func FDs(t testing.TB, pid int) int {
	t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatalf("testnet: fds of pid %d: %v", pid, err)
	}
	return len(ents)
}

// Parallel runs job(0) to job(n-1) on workers goroutines and returns once
// all have ended, with the errors the jobs returned, joined (nil: none). A
// worker stops at its first error, the others go on; a job must not call
// t.Fatal, which cannot stop a test from another goroutine.
func Parallel(n, workers int, job func(i int) error) error {
	work := make(chan int, n)
	for i := range n {
		work <- i
	}
	close(work)
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				if err := job(i); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	var all []error
	for err := range errs {
		all = append(all, err)
	}
	return errors.Join(all...)
}

// Proc is a background process (a server, a flood, tcpdump) started in a
// namespace, with its stdout and stderr collected.
type Proc struct {
	Name string
	Cmd  *exec.Cmd
	// Secrets returns the keys that must not appear in the output; it is
	// called at cleanup, so keys made after Start count too.
	Secrets func() [][]byte
	// Done is closed when the process has exited, with Wait's error in Err.
	Done <-chan struct{}
	Err  error

	t    testing.TB
	ns   *NS
	out  LockedBuffer
	done chan struct{}
}

// NewProc prepares prog in ns, for a caller that sets more of Cmd (extra
// files, WaitDelay) before Start. It runs in a process group of its own,
// which cleanup kills, so that what it spawned (sshd sessions) goes too.
func (ns *NS) NewProc(prog string, args ...string) *Proc {
	p := &Proc{Name: filepath.Base(prog), Cmd: ns.Cmd(prog, args...), ns: ns, done: make(chan struct{})}
	p.Done = p.done
	p.Cmd.Stdout, p.Cmd.Stderr = &p.out, &p.out
	p.Cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// Children keep the output pipe open after the process exits; without
	// a delay Wait would wait for them.
	p.Cmd.WaitDelay = 2 * time.Second
	return p
}

// StartProc starts prog in ns; secrets must not appear in its output.
func (ns *NS) StartProc(t testing.TB, secrets [][]byte, prog string, args ...string) *Proc {
	t.Helper()
	p := ns.NewProc(prog, args...)
	p.Secrets = func() [][]byte { return secrets }
	return p.Start(t)
}

// Start starts the process. At cleanup it kills the process group and
// fails the test if a secret appears in the output; the output is logged,
// with secrets redacted, if the test failed.
func (p *Proc) Start(t testing.TB) *Proc {
	t.Helper()
	p.t = t
	if err := p.Cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", p.Name, err)
	}
	go func() { p.Err = p.Cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		_ = syscall.Kill(-p.Cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
		out := []byte(p.Log())
		var secrets [][]byte
		if p.Secrets != nil {
			secrets = p.Secrets()
		}
		for _, s := range secrets {
			if len(s) > 0 && bytes.Contains(out, s) {
				t.Errorf("a secret appears in the output of %s", p.Name)
			}
			out = redact(out, s)
		}
		if t.Failed() {
			t.Logf("output of %s:\n%s", p.Name, out)
		}
	})
	return p
}

// Log returns the output so far.
func (p *Proc) Log() string { return p.out.String() }

// Write adds b to the collected output, for a caller that points another
// stream at the Proc.
func (p *Proc) Write(b []byte) (int, error) { return p.out.Write(b) }

// Exited reports whether the process has ended.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// WaitLog waits until the output matches re. It fails the test at once if
// the process exits without having written it, or after timeout.
func (p *Proc) WaitLog(re string, timeout time.Duration) {
	p.t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.Now().Add(timeout)
	for !rx.MatchString(p.Log()) {
		if p.Exited() {
			// Wait has returned, so the output is complete.
			if rx.MatchString(p.Log()) {
				return
			}
			p.t.Fatalf("%s exited (%v) before logging %q:\n%s", p.Name, p.Err, re, p.redacted())
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("%s: no output matching %q after %v:\n%s", p.Name, re, timeout, p.redacted())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// WaitListen waits until something listens on TCP port in the process's
// namespace, failing at once if the process exits first, or after timeout.
func (p *Proc) WaitListen(port int, timeout time.Duration) {
	p.t.Helper()
	if err := p.ns.WaitListen(port, timeout, p.done); err != nil {
		p.t.Fatalf("%s: %v:\n%s", p.Name, err, p.redacted())
	}
}

func (p *Proc) redacted() []byte {
	out := []byte(p.Log())
	if p.Secrets != nil {
		for _, s := range p.Secrets() {
			out = redact(out, s)
		}
	}
	return out
}

// WaitListen waits until a TCP socket listens on port in ns. It gives up
// after timeout, or when exited (nil: never) is closed.
func (ns *NS) WaitListen(port int, timeout time.Duration, exited <-chan struct{}) error {
	want := fmt.Sprintf(":%04X ", port)
	deadline := time.Now().Add(timeout)
	for {
		out, err := ns.Cmd("cat", "/proc/net/tcp", "/proc/net/tcp6").Output()
		if err != nil {
			return fmt.Errorf("read /proc/net/tcp in %s: %v", ns.Name, err)
		}
		if listening(string(out), want) {
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("exited before listening on port %d", port)
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nothing listens on port %d in %s after %v", port, ns.Name, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// listening reports whether /proc/net/tcp text has a socket in state 0A
// (LISTEN) whose local address ends in want (":PORT ").
func listening(text, want string) bool {
	for _, line := range strings.Split(text, "\n") {
		f := strings.Fields(line)
		if len(f) > 3 && f[3] == "0A" && strings.HasSuffix(f[1]+" ", want) {
			return true
		}
	}
	return false
}

// Redact returns out with secret replaced, for output about to be shown.
func Redact(out, secret []byte) string { return string(redact(out, secret)) }
