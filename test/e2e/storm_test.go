//go:build linux

package e2e

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/sshmd5/sshmd5/internal/testnet"
)

// TestReloadStorm: sshd-md5-socket in inetd mode, its COMMAND a wrapper
// that logs one line per spawn before exec'ing sshd -i, takes at once 50
// SIGHUPs (keyring rewritten each time, an extra /32 added or removed),
// 200 signed logins (4 at a time) and 2,000 unsigned SYNs from the
// attacker. Signed logins keep working (at least 90%, none hangs), no
// child is ever spawned for an unsigned connection (spawns <= signed
// logins), and afterwards the shim has no zombie children and as many open
// fds as before.
func TestReloadStorm(t *testing.T) {
	const (
		sighups     = 50
		logins      = 200
		concurrency = 4
		synCount    = 2000
	)
	l := newLab(t)
	// sshd runs "echo ok" with root's shell; bash started by sshd reads
	// ~/.bashrc, which on some machines is slow (pyenv, ...) and would
	// make this test measure it. SHLVL=1 makes bash skip it.
	l.sshd = testnet.NewSSHD(t, "SetEnv SHLVL=1")
	spawnLog := filepath.Join(l.dir, "spawns.log")
	wrapper := filepath.Join(l.dir, "wrapper.sh")
	inetd := l.sshd.InetdArgs()
	script := fmt.Sprintf("#!/bin/sh\necho \"$(date +%%s.%%N) $$\" >> %s\nexec %s\n", spawnLog, strings.Join(inetd, " "))
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	args := []string{"-k", l.serverKeyring, "-l", "[::]:" + strconv.Itoa(protectedPort), "--", "/bin/sh", wrapper}
	shim := l.server.ns.StartProc(t, [][]byte{l.secret}, l.shimBin, args...)
	shim.WaitLog(`serving .* in inetd mode`, 20*time.Second)
	pid := shim.Cmd.Process.Pid

	// Warm up: one login, so the fd count below is the steady state.
	if out, errb, err := l.runSSH(l.client.ns, l.sshArgs(true, l.server.a4, "-k "+l.clientKeyring, "true"), 60*time.Second); err != nil {
		t.Fatalf("warm-up login: %v; stdout %q; stderr:\n%s", err, out, errb)
	}
	waitNoChildren(t, pid, 30*time.Second)
	fdsBefore := testnet.FDs(t, pid)
	spawnsBefore := countLines(t, spawnLog)
	before := l.server.ns.MD5Counters(t)

	var wg sync.WaitGroup

	// 50 SIGHUPs, the keyring alternating with and without an extra /32.
	kf := filepath.Join(l.dir, "server.key")
	extra := fmt.Sprintf("10.%d.%d.250/32", l.net4[0], l.net4[1])
	var hupsSent atomic.Int32
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < sighups; i++ {
			kr := testnet.Keyring{Peers: testnet.Both(kf)}
			if i%2 == 0 {
				kr.Peers = append(kr.Peers, testnet.Peer(extra, kf))
			}
			// Not kr.Write: t.Fatal cannot stop the test from this goroutine.
			tmp := l.serverKeyring + ".tmp"
			if err := os.WriteFile(tmp, []byte(kr.String()), 0o600); err != nil {
				t.Errorf("keyring %d: %v", i, err)
				return
			}
			if err := os.Rename(tmp, l.serverKeyring); err != nil {
				t.Errorf("keyring %d: %v", i, err)
				return
			}
			if err := shim.Cmd.Process.Signal(syscall.SIGHUP); err != nil {
				t.Errorf("SIGHUP %d: %v", i, err)
				return
			}
			hupsSent.Add(1)
			time.Sleep(100 * time.Millisecond)
		}
	}()

	// 2,000 unsigned SYNs from the attacker, 100 a second.
	var hpingOut []byte
	var hpingErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		cmd := l.attacker.ns.Cmd("hping3", "-I", l.attacker.ifc, "-S", "-q", "-p", strconv.Itoa(protectedPort),
			"-i", "u10000", "-c", strconv.Itoa(synCount), l.server.a4.String())
		cmd.WaitDelay = 5 * time.Second
		done := make(chan struct{})
		go func() {
			select {
			case <-done:
			case <-time.After(90 * time.Second):
				cmd.Process.Kill()
			}
		}()
		hpingOut, hpingErr = cmd.CombinedOutput()
		close(done)
	}()

	// 200 signed logins, 4 at a time.
	var ok, failedClean, hung, otherFail atomic.Int32
	var failMu sync.Mutex
	var failures []string
	jobs := make(chan int)
	var lw sync.WaitGroup
	stormStart := time.Now()
	for w := 0; w < concurrency; w++ {
		lw.Add(1)
		go func() {
			defer lw.Done()
			for i := range jobs {
				dst := l.server.a4
				if i%2 == 1 {
					dst = l.server.a6
				}
				out, errb, err := l.runSSH(l.client.ns, l.sshArgs(true, dst, "-k "+l.clientKeyring, "echo", "ok"), 120*time.Second)
				var ee *exec.ExitError
				switch {
				case err == nil && out == "ok\n":
					ok.Add(1)
					continue
				case errors.As(err, &ee) && ee.ExitCode() == 255 && strings.TrimSpace(errb) != "":
					failedClean.Add(1)
				case err != nil && strings.Contains(err.Error(), "still running"):
					hung.Add(1)
				default:
					otherFail.Add(1)
				}
				failMu.Lock()
				failures = append(failures, fmt.Sprintf("login %d to %v: %v; stdout %q; stderr %s", i, dst, err, out, strings.TrimSpace(errb)))
				failMu.Unlock()
			}
		}()
	}
	for i := 0; i < logins; i++ {
		jobs <- i
	}
	close(jobs)
	lw.Wait()
	loginsTook := time.Since(stormStart)
	wg.Wait()
	checkNoSecret(t, "hping3's output", string(hpingOut), [][]byte{l.secret})

	waitNoChildren(t, pid, 60*time.Second)
	d := l.server.ns.MD5Counters(t).Sub(before)
	spawns := countLines(t, spawnLog) - spawnsBefore
	// A child that just exited is a zombie until the shim reaps it; one
	// that stays a zombie for 10 s is a leak.
	zombies := testnet.WaitChildren(pid, 10*time.Second, func(st string) bool { return st == "Z" })
	fdsAfter := testnet.FDs(t, pid)
	reloads := len(regexp.MustCompile(`reload: \d+ key\(s\) from .* in force`).FindAllString(shim.Log(), -1))
	sent := synCount
	if m := regexp.MustCompile(`(\d+) packets transmitted`).FindSubmatch(hpingOut); m != nil {
		sent, _ = strconv.Atoi(string(m[1]))
	}

	t.Logf("signed logins: %d ok, %d failed cleanly (exit 255 with a message), %d hung, %d other failures, in %v",
		ok.Load(), failedClean.Load(), hung.Load(), otherFail.Load(), loginsTook.Round(time.Millisecond))
	t.Logf("SIGHUPs sent %d, reloads logged %d; unsigned SYNs sent %d (hping3: %v); TCPMD5NotFound +%d, TCPMD5Failure +%d",
		hupsSent.Load(), reloads, sent, hpingErr, d.NotFound, d.Failure)
	t.Logf("spawns recorded by the wrapper %d (signed attempts %d); zombie children %d; shim fds before %d, after %d",
		spawns, logins, len(zombies), fdsBefore, fdsAfter)
	for i, f := range failures {
		if i == 10 {
			t.Logf("... and %d more failures", len(failures)-10)
			break
		}
		t.Logf("failure: %s", f)
	}
	checkNoSecret(t, "sshd-md5-socket's log", shim.Log(), [][]byte{l.secret})

	if hung.Load() != 0 || otherFail.Load() != 0 {
		t.Errorf("%d logins hung, %d failed other than cleanly", hung.Load(), otherFail.Load())
	}
	if int(ok.Load())*10 < logins*9 {
		t.Errorf("only %d of %d signed logins worked, want at least 90%%", ok.Load(), logins)
	}
	if spawns > logins {
		t.Errorf("%d spawns for %d signed login attempts: something unsigned got a child", spawns, logins)
	}
	if spawns < int(ok.Load()) {
		t.Errorf("%d spawns for %d successful logins", spawns, ok.Load())
	}
	if strings.Contains(shim.Log(), "closed unsigned connection") {
		t.Errorf("the shim accepted an unsigned connection")
	}
	if hupsSent.Load() != sighups || reloads == 0 {
		t.Errorf("SIGHUPs sent %d, reloads logged %d", hupsSent.Load(), reloads)
	}
	if sent < synCount*9/10 || d.NotFound < uint64(sent)*9/10 {
		t.Errorf("unsigned SYNs sent %d, TCPMD5NotFound +%d; want about %d of each", sent, d.NotFound, synCount)
	}
	if len(zombies) != 0 {
		t.Errorf("zombie children of the shim: %v", zombies)
	}
	if fdsAfter > fdsBefore+2 || fdsAfter < fdsBefore-2 {
		t.Errorf("shim fds: %d before, %d after", fdsBefore, fdsAfter)
	}
}

// countLines counts the lines of a file (0 if it does not exist).
func countLines(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), "\n")
}

// waitNoChildren waits until pid has no live (non-zombie) children, so
// every session has ended and been reaped or is a zombie to be reported.
func waitNoChildren(t *testing.T, pid int, limit time.Duration) {
	t.Helper()
	if live := testnet.WaitChildren(pid, limit, func(st string) bool { return st != "Z" }); len(live) > 0 {
		t.Fatalf("the shim still has %d live children after %v", len(live), limit)
	}
	// Give the shim a moment to reap the last ones.
	time.Sleep(500 * time.Millisecond)
}
