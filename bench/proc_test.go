//go:build bench && linux

package bench

import (
	"bytes"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sshmd5/sshmd5/internal/testnet"
)

// proc is a background process (a server, a flood) with its output
// collected.
type proc struct {
	b    *testing.B
	name string
	cmd  *exec.Cmd
	out  testnet.LockedBuffer
	done chan struct{}
	err  error
}

// startProc runs prog in ns in a process group of its own, which cleanup
// kills (a shim takes its sessions with it). Its output is shown, with
// secret redacted, if the benchmark fails.
func startProc(b *testing.B, ns *testnet.NS, name string, secret []byte, prog string, args ...string) *proc {
	b.Helper()
	p := &proc{b: b, name: name, cmd: ns.Cmd(prog, args...), done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	p.cmd.WaitDelay = 2 * time.Second
	if err := p.cmd.Start(); err != nil {
		b.Fatalf("start %s: %v", name, err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	b.Cleanup(func() {
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
		if b.Failed() {
			b.Logf("output of %s:\n%s", name, redact([]byte(p.log()), secret))
		}
	})
	return p
}

func (p *proc) log() string { return p.out.String() }

// waitLog waits until the output matches re, failing if the process
// exits first or limit passes.
func (p *proc) waitLog(re string, limit time.Duration) {
	p.b.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.Now().Add(limit)
	for !rx.MatchString(p.log()) {
		select {
		case <-p.done:
			p.b.Fatalf("%s exited (%v) before logging %q:\n%s", p.name, p.err, re, p.log())
		default:
		}
		if time.Now().After(deadline) {
			p.b.Fatalf("%s: no output matching %q after %v:\n%s", p.name, re, limit, p.log())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitListen waits until something listens on TCP port in ns, failing
// if the process exits first or limit passes.
func (p *proc) waitListen(ns *testnet.NS, port int, limit time.Duration) {
	p.b.Helper()
	deadline := time.Now().Add(limit)
	for {
		if strings.TrimSpace(ns.Run(p.b, "ss", "-Hltn", "sport = :"+strconv.Itoa(port))) != "" {
			return
		}
		select {
		case <-p.done:
			p.b.Fatalf("%s exited before listening on port %d: %v\n%s", p.name, port, p.err, p.log())
		default:
		}
		if time.Now().After(deadline) {
			p.b.Fatalf("%s not listening on port %d after %v:\n%s", p.name, port, limit, p.log())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// redact replaces secret in out, for output that is about to be shown.
func redact(out, secret []byte) string {
	if len(secret) == 0 {
		return string(out)
	}
	return string(bytes.ReplaceAll(out, secret, []byte("[secret]")))
}
