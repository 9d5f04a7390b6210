//go:build linux

package shim_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sshmd5/sshmd5/internal/knock"
	"github.com/sshmd5/sshmd5/internal/testnet"
)

// knockEnv is a shim on [::]:2222 keyed for every peer with k, started
// with tracefs (or tfs = a folder without it, for the fallback).
func (e *env) knockShim(tfs string, k []byte, extra ...string) *testnet.Proc {
	e.t.Helper()
	kr := e.keyring(map[string][]byte{"0.0.0.0/0": k, "::/0": k})
	e.t.Setenv(knock.TracefsEnv, tfs)
	args := append([]string{"-k", kr, "-l", "[::]:" + strconv.Itoa(port)}, extra...)
	p := e.start(nil, e.shim, append(append(args, "--"), e.sshd.InetdArgs()...)...)
	p.WaitLog(`serving .* in inetd mode`, 10*time.Second)
	return p
}

// knockOnce sends one SYN (signed with secret, or unsigned for nil): the
// dial gives up before the kernel's first retransmission at 1 s.
func (e *env) knockOnce(addr string, secret []byte) {
	e.t.Helper()
	c, err := e.dial(addr, secret, 700*time.Millisecond)
	if err == nil {
		c.Close()
		e.t.Fatalf("dial %s connected; want no answer", addr)
	}
}

// stop sends SIGTERM and waits for exit 0.
func stop(t *testing.T, p *testnet.Proc) {
	t.Helper()
	p.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.Done:
	case <-time.After(10 * time.Second):
		t.Fatal("the shim did not exit on SIGTERM")
	}
	if p.Err != nil {
		t.Fatalf("the shim exited with %v after SIGTERM, want status 0", p.Err)
	}
}

var knockLine = regexp.MustCompile(`(?m)knock: (wrong-key|unsigned) from (\S+) to (\S+), (\d+) segments?$`)

// knockLines returns the per-source lines of a log as "kind src dst n".
func knockLines(log string) []string {
	var l []string
	for _, m := range knockLine.FindAllStringSubmatch(log, -1) {
		l = append(l, strings.Join(m[1:], " "))
	}
	return l
}

// accounted adds up the segments every knock line of a log accounts for.
func accounted(log string) uint64 {
	var n uint64
	re := regexp.MustCompile(`(?m)knock: .*?(\d+) segments?`)
	for _, m := range re.FindAllStringSubmatch(log, -1) {
		v, _ := strconv.ParseUint(m[1], 10, 64)
		n += v
	}
	return n
}

// A wrong-key client (IPv4, through the dual-stack socket) and an unsigned
// one (IPv6) each show up once, with their address, from the kernel's
// tracepoints, and the counts match the kernel's counters. The tracefs
// instance exists while the shim runs and is gone after SIGTERM. The
// fail2ban filter in contrib/ finds exactly these two addresses in the
// shim's log, as written and as syslog writes it.
func TestKnockLog(t *testing.T) {
	e := newEnv(t)
	tfs := testnet.Tracefs(t)
	k := e.secret()
	p := e.knockShim(tfs, k)
	p.WaitLog(`knock: logging wrong-key and unsigned segments to \[::\]:2222 from tcp:tcp_hash_md5_required, tcp:tcp_hash_md5_mismatch`, 5*time.Second)
	inst := filepath.Join(tfs, "instances", knock.InstancePrefix+strconv.Itoa(p.Cmd.Process.Pid))
	if _, err := os.Stat(inst); err != nil {
		t.Fatalf("no tracefs instance of the shim: %v", err)
	}

	before := e.server.MD5Counters(t)
	e.knockOnce(hostPort(e.link.AddrA4, port), e.secret())
	e.knockOnce(hostPort(e.link.AddrA6, port), nil)
	want := []string{
		fmt.Sprintf("wrong-key %s %s 1", e.link.AddrB4, hostPort(e.link.AddrA4, port)),
		fmt.Sprintf("unsigned %s %s 1", e.link.AddrB6, hostPort(e.link.AddrA6, port)),
	}
	p.WaitLog(`knock: unsigned from `+regexp.QuoteMeta(e.link.AddrB6.String()), 5*time.Second)
	// A signed login still works, and is no knock.
	e.login(e.link.AddrA4, port, e.keyFile(k), "signed ssh login")
	d := e.server.MD5Counters(t).Sub(before)
	stop(e.t, p)
	log := p.Log()
	if got := knockLines(log); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("knock lines:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if d.Failure != 1 || d.NotFound != 1 {
		t.Errorf("counters moved by %+v; want 1 wrong-key and 1 unsigned segment, as logged", d)
	}
	if _, err := os.Stat(inst); !os.IsNotExist(err) {
		t.Errorf("tracefs instance %s still there after SIGTERM (%v)", inst, err)
	}

	// fail2ban: the shim's own lines, and the same as rsyslog writes them
	// from the journal (no timestamp of ours, JOURNAL_STREAM).
	var syslog strings.Builder
	for _, l := range strings.Split(log, "\n") {
		if i := strings.Index(l, "knock: "); i >= 0 {
			fmt.Fprintf(&syslog, "Dec  1 10:00:00 host sshd-md5-socket[%d]: sshd-md5-socket: %s\n", p.Cmd.Process.Pid, l[i:])
		}
	}
	wantIPs := e.link.AddrB4.String() + "\n" + e.link.AddrB6.String()
	for name, text := range map[string]string{"stderr": log, "syslog": syslog.String()} {
		if got := fail2banIPs(t, text); got != wantIPs {
			t.Errorf("fail2ban-regex on the %s lines found %q, want %q", name, got, wantIPs)
		}
	}
}

// fail2banIPs runs fail2ban-regex with contrib's filter on a log and
// returns the addresses it would ban, sorted.
func fail2banIPs(t *testing.T, log string) string {
	t.Helper()
	if _, err := exec.LookPath("fail2ban-regex"); err != nil {
		t.Fatalf("fail2ban-regex not found (apt-get install fail2ban; .ci/run installs it): %v", err)
	}
	f := filepath.Join(t.TempDir(), "log")
	if err := os.WriteFile(f, []byte(log), 0o600); err != nil {
		t.Fatal(err)
	}
	filter, err := filepath.Abs("../../contrib/fail2ban/filter.d/sshd-md5-socket.conf")
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("fail2ban-regex", "-o", "ip", f, filter).CombinedOutput()
	if err != nil {
		t.Fatalf("fail2ban-regex: %v\n%s", err, out)
	}
	ips := strings.Fields(string(out))
	sort.Strings(ips)
	return strings.Join(ips, "\n")
}

// 10,000 unsigned SYNs from random source addresses (hping3 --rand-source,
// to the test's own namespace): a bounded number of lines, every segment
// the kernel counted accounted for in them, and the shim still serves.
func TestKnockFlood(t *testing.T) {
	const syns = 10000
	if _, err := exec.LookPath("hping3"); err != nil {
		t.Fatalf("hping3 not found: %v", err)
	}
	e := newEnv(t)
	tfs := testnet.Tracefs(t)
	k := e.secret()
	p := e.knockShim(tfs, k)
	p.WaitLog(`knock: logging`, 5*time.Second)
	before := e.server.MD5Counters(t)
	t0 := time.Now()
	cmd := e.client.Cmd("timeout", "60", "hping3", "-I", e.link.IfB, "-S", "-q", "--rand-source",
		"-p", strconv.Itoa(port), "-i", "u100", "-c", strconv.Itoa(syns), e.link.AddrA4.String())
	if out, err := cmd.CombinedOutput(); err != nil && !strings.Contains(string(out), "packets transmitted") {
		t.Fatalf("hping3: %v\n%s", err, out)
	}
	flood := time.Since(t0)
	// Wait until the kernel has counted them all (the count settles).
	var d testnet.MD5Counters
	for last, stable := uint64(0), 0; stable < 5; time.Sleep(100 * time.Millisecond) {
		d = e.server.MD5Counters(t).Sub(before)
		if d.NotFound == last {
			stable++
		} else {
			last, stable = d.NotFound, 0
		}
	}
	// Martian sources (0/8, 127/8, multicast) never reach TCP.
	if d.NotFound < syns/2 {
		t.Fatalf("only %d of %d SYNs reached the listener", d.NotFound, syns)
	}
	c, err := e.dial(hostPort(e.link.AddrA4, port), k, 5*time.Second)
	if err != nil {
		t.Fatalf("signed dial after the flood: %v", err)
	}
	if l, err := banner(c); err != nil || !strings.HasPrefix(l, "SSH-2.0-") {
		t.Fatalf("signed connection after the flood: banner %q, %v", l, err)
	}
	c.Close()
	time.Sleep(300 * time.Millisecond) // let the reader drain
	during := len(knockLines(p.Log()))
	stop(e.t, p)
	log := p.Log()
	lines := strings.Count(log, "knock: ") - 1 // not the "logging" line
	t.Logf("%d SYNs in %v, %d counted by the kernel: %d per-source lines during the flood, %d knock lines in all; accounted %d segments",
		syns, flood.Round(time.Millisecond), d.NotFound, during, lines, accounted(log))
	// A window has at most MaxLines per-source lines and two summaries;
	// the flood and the final report after SIGTERM span at most three.
	if during > 2*knock.DefaultMaxLines {
		t.Errorf("%d per-source lines during the flood; at most %d per minute", during, knock.DefaultMaxLines)
	}
	if max := 3 * (knock.DefaultMaxLines + 2); lines > max {
		t.Errorf("%d knock lines for %d SYNs; want at most %d", lines, syns, max)
	}
	if !strings.Contains(log, "more source(s) suppressed") {
		t.Errorf("no summary line for the suppressed sources")
	}
	if got := accounted(log); got != d.NotFound {
		t.Errorf("the lines account for %d segments, the kernel counted %d", got, d.NotFound)
	}
}

// Without tracefs (SSHD_MD5_TRACEFS names a folder without it): one line
// says so, and the counters are reported instead, here at SIGTERM.
func TestKnockFallback(t *testing.T) {
	e := newEnv(t)
	p := e.knockShim(t.TempDir(), e.secret())
	p.WaitLog(`knock: no tracefs at .*; counting knocks with the kernel's counters instead, without peer addresses`, 5*time.Second)
	e.knockOnce(hostPort(e.link.AddrA4, port), e.secret())
	e.knockOnce(hostPort(e.link.AddrA4, port), nil)
	e.knockOnce(hostPort(e.link.AddrA6, port), nil)
	stop(e.t, p)
	log := p.Log()
	if n := strings.Count(log, "counting knocks with the kernel's counters"); n != 1 {
		t.Errorf("the fallback is announced %d times, want once", n)
	}
	if !strings.Contains(log, "knock: counters: 2 unsigned and 1 wrong-key segment(s) since the last report, all ports of this network namespace (no peer addresses)") {
		t.Errorf("no counters line for 2 unsigned and 1 wrong-key segment")
	}
	if l := knockLines(log); len(l) > 0 {
		t.Errorf("per-source lines without tracefs: %q", l)
	}
}

// A shim killed with SIGKILL leaves its instance; the next start removes
// it. --knocks=false makes none and logs no knock.
func TestKnockStaleInstance(t *testing.T) {
	e := newEnv(t)
	tfs := testnet.Tracefs(t)
	k := e.secret()
	inst := func(p *testnet.Proc) string {
		return filepath.Join(tfs, "instances", knock.InstancePrefix+strconv.Itoa(p.Cmd.Process.Pid))
	}
	p1 := e.knockShim(tfs, k)
	p1.WaitLog(`knock: logging`, 5*time.Second)
	p1.Cmd.Process.Signal(syscall.SIGKILL)
	<-p1.Done
	if _, err := os.Stat(inst(p1)); err != nil {
		t.Fatalf("after SIGKILL: %v; want the instance left behind", err)
	}
	t.Cleanup(func() { os.Remove(inst(p1)) })
	p2 := e.knockShim(tfs, k)
	p2.WaitLog(`knock: logging`, 5*time.Second)
	if _, err := os.Stat(inst(p1)); !os.IsNotExist(err) {
		t.Errorf("the dead shim's instance is still there after the next start (%v)", err)
	}
	stop(e.t, p2)

	p3 := e.knockShim(tfs, k, "--knocks=false")
	e.knockOnce(hostPort(e.link.AddrA4, port), nil)
	stop(e.t, p3)
	if strings.Contains(p3.Log(), "knock:") {
		t.Errorf("--knocks=false logged:\n%s", p3.Log())
	}
	if _, err := os.Stat(inst(p3)); !os.IsNotExist(err) {
		t.Errorf("--knocks=false made an instance (%v)", err)
	}
}
