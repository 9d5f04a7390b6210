//go:build linux

package systemd_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sshmd5/sshmd5/internal/tcpsig/md5"
	"github.com/sshmd5/sshmd5/internal/testnet"
)

// TestLifecycle runs the routine operations of a migrated server, with the
// package installed as README.md's migration says, and an unsigned prober
// in a third namespace knocking on port 22 all along. After every step the
// prober has had no SYN-ACK (counted by its dials and by a capture), and a
// signed login works, except after the boots with a broken keyring, where
// the port must be closed or silent and the reason must be where an admin
// looks.
func TestLifecycle(t *testing.T) {
	t0 := time.Now()
	h := newDebHost(t)
	// Boots register their shutdown with the test they are given: reboot
	// with the top-level test, or the container dies with the subtest.
	top := t
	atk := testnet.NewNS(t, "atk")
	alink := testnet.Connect(t, h.ns, atk)
	var prober *testnet.Prober
	answered := int64(0)
	step := func(t *testing.T, name string) {
		t.Helper()
		n := prober.Answered.Load()
		if n != answered {
			t.Errorf("%s: the unsigned prober completed %d handshake(s) with port 22", name, n-answered)
		}
		answered = n
		t.Logf("step %q done; prober: %d attempts so far, %d answered, %d refused (closed port)", name, prober.Attempts.Load(), n, prober.Refused.Load())
	}

	// As README.md's migration does it, without the detour over 2222.
	h.ct.must(t, "dpkg", "-i", h.deb)
	secret := newSecret(t)
	writeFile(t, filepath.Join(h.root, "etc/ssh/md5/default.key"), secret+"\n", 0o600)
	goodKeyring := "[peers.\"0.0.0.0/0\"]\nkey_file = \"/etc/ssh/md5/default.key\"\n" +
		"[peers.\"::/0\"]\nkey_file = \"/etc/ssh/md5/default.key\"\n" +
		// A client-side entry whose key file is missing: the server
		// must not care (a warning, not a refusal).
		"[hosts.elsewhere]\nkey_file = \"/etc/ssh/md5/absent.key\"\n"
	keyringPath := filepath.Join(h.root, "etc/ssh/md5-keyring.toml")
	writeFile(t, keyringPath, goodKeyring, 0o600)
	writeFile(t, h.cl.keyFile, secret+"\n", 0o600)
	h.cl.setupProxy(h.v4, h.v6)

	h.ct.must(t, "systemctl", "enable", "--now", "sshd-md5.service")
	// From here on, plain sshd is gone (Conflicts=) and the port must
	// never answer an unsigned peer again.
	prober = atk.StartProber(t, alink.IfB, 22,
		netip.AddrPortFrom(alink.AddrA4, 22), netip.AddrPortFrom(alink.AddrA6, 22))
	h.ct.must(t, "systemctl", "disable", "ssh.service", "ssh.socket")
	if out, _ := h.ct.exec(20*time.Second, "sshd-md5-socket", "status"); !strings.Contains(out, "ssh.service is not masked") {
		t.Errorf("sshd-md5-socket status before the mask does not warn that ssh.service is not masked:\n%s", out)
	}
	h.ct.must(t, "systemctl", "mask", "ssh.service", "ssh.socket")
	out := h.ct.must(t, "sshd-md5-socket", "status")
	if strings.Contains(out, "warning:") || !strings.Contains(out, "[::]:22") {
		t.Errorf("sshd-md5-socket status after the mask: want [::]:22 and no warning:\n%s", out)
	}
	h.cl.login(t, h.v4)
	h.cl.login(t, h.v6)
	step(t, "migrated")

	mainPID := func() string {
		return strings.TrimSpace(h.ct.must(t, "systemctl", "show", "-P", "MainPID", "sshd-md5.service"))
	}

	// The listening socket itself, by inode: the fd store must hand the
	// same one back. A closed moment would also show as RSTs to the
	// prober (a signed SYN to a closed port gets nothing and is simply
	// retransmitted, so the key holders alone would not tell).
	listenIno := func() string {
		out := h.ct.must(t, "ss", "-Htlne", "sport = :22")
		m := regexp.MustCompile(`ino:(\d+)`).FindAllStringSubmatch(out, -1)
		if len(m) != 1 {
			t.Fatalf("want one listener on port 22, ss says:\n%s", out)
		}
		return m[0][1]
	}
	sameSocket := func(t *testing.T, what, ino string, refused int64) {
		t.Helper()
		if now := listenIno(); now != ino {
			t.Errorf("%s: the listening socket changed (inode %s -> %s): systemd's fd store did not keep it", what, ino, now)
		}
		if n := prober.Refused.Load() - refused; n != 0 {
			t.Errorf("%s: the unsigned prober got %d RST(s): the port was closed for a moment", what, n)
		}
	}

	t.Run("restart", func(t *testing.T) {
		ino, refused := listenIno(), prober.Refused.Load()
		w := h.signedWaits(t, h.v4, md5.Secret(secret), func() {
			h.ct.must(t, "systemctl", "restart", "sshd-md5.service")
		})
		w.report(t, "systemctl restart", 0)
		sameSocket(t, "systemctl restart", ino, refused)
		h.cl.login(t, h.v4)
		step(t, "restart")
	})

	t.Run("stop", func(t *testing.T) {
		h.ct.must(t, "systemctl", "stop", "sshd-md5.service")
		// The store is emptied: the port is closed, so a signed SYN gets
		// nothing and an unsigned one a RST.
		if banner, err := h.cl.dial(h.v4, 22, md5.Secret(secret), 2*time.Second); err == nil {
			t.Errorf("signed connection after systemctl stop was served (%q); want a closed port", banner)
		}
		if _, err := h.cl.dial(h.v4, 22, nil, 2*time.Second); !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("unsigned connection after systemctl stop: %v; want connection refused (closed port)", err)
		}
		h.ct.must(t, "systemctl", "start", "sshd-md5.service")
		h.cl.login(t, h.v4)
		step(t, "stop and start")
	})

	t.Run("kill -9", func(t *testing.T) {
		ino, refused := listenIno(), prober.Refused.Load()
		old := mainPID()
		w := h.signedWaits(t, h.v4, md5.Secret(secret), func() {
			h.ct.must(t, "kill", "-9", old)
			for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
				if p := mainPID(); p != old && p != "0" {
					if st, _ := h.ct.exec(5*time.Second, "systemctl", "is-active", "sshd-md5.service"); strings.TrimSpace(st) == "active" {
						return
					}
				}
				if time.Now().After(deadline) {
					t.Fatalf("sshd-md5.service did not come back within 20s of kill -9")
				}
			}
		})
		w.report(t, "kill -9 and Restart=on-failure", 1)
		sameSocket(t, "kill -9", ino, refused)
		h.cl.login(t, h.v4)
		step(t, "kill -9")
	})

	t.Run("50 reloads during logins", func(t *testing.T) {
		pid := mainPID()
		stop := make(chan struct{})
		var wg sync.WaitGroup
		logins := 0
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				h.cl.login(t, h.v4)
				logins++
				select {
				case <-stop:
					return
				default:
				}
			}
		}()
		for range 50 {
			h.ct.must(t, "systemctl", "reload", "sshd-md5.service")
		}
		close(stop)
		wg.Wait()
		if p := mainPID(); p != pid {
			t.Errorf("reloads replaced the main process (%s -> %s)", pid, p)
		}
		t.Logf("%d signed logins during 50 reloads, all ok", logins)
		step(t, "50 reloads")
	})

	t.Run("package reinstalled", func(t *testing.T) {
		out := h.ct.must(t, "dpkg", "-i", h.deb)
		t.Logf("dpkg -i again:\n%s", strings.TrimSpace(out))
		h.cl.login(t, h.v4)
		step(t, "dpkg -i over itself")
		// Offline: the .deb debootstrap fetched is still in apt's cache.
		out, err := h.ct.exec(2*time.Minute, "apt-get", "install", "--reinstall", "-y", "--no-download", "openssh-server")
		t.Logf("apt-get install --reinstall openssh-server: %v\n%s", err, strings.TrimSpace(out))
		if err != nil {
			t.Errorf("apt-get install --reinstall openssh-server failed: %v", err)
		}
		h.wantState(t, "is-enabled", "masked", "ssh.service", "ssh.socket")
		h.wantState(t, "is-active", "inactive", "ssh.service", "ssh.socket")
		h.wantState(t, "is-active", "active", "sshd-md5.service")
		h.cl.login(t, h.v4)
		step(t, "openssh-server reinstalled")
	})

	t.Run("plain sshd cannot come back", func(t *testing.T) {
		pid := mainPID()
		for _, args := range [][]string{{"systemctl", "restart", "ssh"}, {"systemctl", "start", "ssh.socket"}, {"systemctl", "start", "ssh.service"}} {
			if out, err := h.ct.exec(30*time.Second, args...); err == nil {
				t.Errorf("%s succeeded; ssh's units must be masked", strings.Join(args, " "))
			} else {
				t.Logf("%s: refused: %s", strings.Join(args, " "), strings.TrimSpace(out))
			}
		}
		if p := mainPID(); p != pid {
			t.Errorf("the shim was restarted (%s -> %s)", pid, p)
		}
		h.cl.login(t, h.v4)
		h.cl.login(t, h.v6)
		step(t, "systemctl restart ssh")
	})

	t.Run("reboot", func(t *testing.T) {
		h.reboot(top)
		h.wantState(t, "is-active", "active", "sshd-md5.service")
		h.cl.login(t, h.v4)
		h.cl.login(t, h.v6)
		step(t, "boot with a good keyring")
	})

	brokenBoot := func(t *testing.T, name, keyring string, wantLog ...string) {
		t.Helper()
		writeFile(t, keyringPath, keyring, 0o600)
		h.reboot(top)
		// Restart=on-failure retries; give it time to give up or retry.
		time.Sleep(3 * time.Second)
		if st, _ := h.ct.exec(5*time.Second, "systemctl", "is-active", "sshd-md5.service"); strings.TrimSpace(st) == "active" {
			t.Errorf("%s: sshd-md5.service is active", name)
		}
		if banner, err := h.cl.dial(h.v4, 22, md5.Secret(secret), 2*time.Second); err == nil {
			t.Errorf("%s: a signed connection was served (%q); the port must be closed or silent", name, banner)
		}
		journal, _ := h.ct.exec(10*time.Second, "journalctl", "-b", "--no-pager", "-o", "cat", "-u", "sshd-md5.service")
		st, _ := h.ct.exec(10*time.Second, "systemctl", "status", "--no-pager", "sshd-md5.service")
		status, err := h.ct.exec(10*time.Second, "sshd-md5-socket", "status")
		if err == nil {
			t.Errorf("%s: sshd-md5-socket status exited 0 with nothing listening", name)
		}
		// One line with the file, the line and the fix, where an admin
		// looks; a restart would not fix it, so systemd does not retry.
		for _, want := range wantLog {
			re := regexp.MustCompile(want)
			if n := len(re.FindAllString(journal, -1)); n != 1 {
				t.Errorf("%s: the journal says %q %d times, want once:\n%s", name, want, n, journal)
			}
			if !re.MatchString(st) {
				t.Errorf("%s: systemctl status does not say %q:\n%s", name, want, st)
			}
			if !re.MatchString(status) || !strings.Contains(status, "port is closed") {
				t.Errorf("%s: sshd-md5-socket status does not say the port is closed and %q:\n%s", name, want, status)
			}
		}
		t.Logf("%s: systemctl status:\n%s\nsshd-md5-socket status:\n%s", name, st, status)
		step(t, name)
	}
	t.Run("boot with a broken keyring", func(t *testing.T) {
		brokenBoot(t, "boot with a broken keyring", "[peers.\"0.0.0.0/0\"]\nkey_file = \"/etc/ssh/md5/default.key\"\n[peers.\"::/0\"\nkey_file = \"/etc/ssh/md5/default.key\"\n",
			`keyring /etc/ssh/md5-keyring\.toml:\d+: syntax error at column \d+: a table header is malformed; [^\n]*`)
	})
	t.Run("boot with a missing key file", func(t *testing.T) {
		brokenBoot(t, "boot with a missing key file", strings.ReplaceAll(goodKeyring, "[peers.\"::/0\"]\nkey_file = \"/etc/ssh/md5/default.key\"", "[peers.\"::/0\"]\nkey_file = \"/etc/ssh/md5/gone.key\""),
			`keyring /etc/ssh/md5-keyring\.toml:3: [^\n]*gone\.key: no such file or directory; create it or fix key_file`)
	})
	t.Run("fixed and rebooted", func(t *testing.T) {
		writeFile(t, keyringPath, goodKeyring, 0o600)
		h.reboot(top)
		h.cl.login(t, h.v4)
		if out, _ := h.ct.exec(10*time.Second, "sshd-md5-socket", "status"); strings.Contains(out, "port is closed") {
			t.Errorf("status still reports the failed start after a good one:\n%s", out)
		}
		step(t, "fixed keyring")
	})

	// Last, the prober's capture: not one SYN-ACK went its way.
	stats := prober.Stop(t)
	t.Logf("prober: %d unsigned dials, %d answered, %d refused; its capture: %s", prober.Attempts.Load(), prober.Answered.Load(), prober.Refused.Load(), stats)
	if stats.SYNACKs != 0 {
		t.Errorf("the capture saw %d SYN-ACK(s) to the unsigned prober", stats.SYNACKs)
	}
	if stats.UnsignedSYNs == 0 {
		t.Errorf("the capture saw no unsigned SYN from the prober: it did not probe")
	}

	t.Run("rollback", func(t *testing.T) {
		h.ct.must(t, "systemctl", "unmask", "ssh.service", "ssh.socket")
		h.ct.must(t, "systemctl", "enable", "--now", "ssh.service")
		h.ct.must(t, "systemctl", "disable", "sshd-md5.service")
		h.wantState(t, "is-active", "inactive", "sshd-md5.service")
		h.plainAnswers(t, h.v4)
		h.plainAnswers(t, h.v6)
	})
	t.Logf("timing: TestLifecycle %v", time.Since(t0).Round(time.Millisecond))
}

// waits is what key holders saw while an operation ran: how long each
// signed connection took to reach sshd's banner, and what failed.
type waits struct {
	n      int
	max    time.Duration
	failed []string
	resets int // connections reset after the handshake
}

// report fails on any refusal, timeout or wrong answer, and on more than
// allowResets resets: a shim killed with -9 takes down the one connection
// it had accepted and not yet handed to sshd, which nothing can save.
func (w waits) report(t *testing.T, what string, allowResets int) {
	t.Helper()
	t.Logf("%s: %d signed connections across it, the longest wait for sshd's banner %v, %d reset", what, w.n, w.max.Round(time.Millisecond), w.resets)
	if len(w.failed) > 0 {
		t.Errorf("%s: %d signed connection(s) failed: %s", what, len(w.failed), strings.Join(w.failed, "; "))
	}
	if w.resets > allowResets {
		t.Errorf("%s: %d signed connection(s) reset, want at most %d", what, w.resets, allowResets)
	}
}

// signedWaits keeps connecting signed to addr:22, one connection after the
// other, while op runs and until two have succeeded after it, and reports
// what they saw. A refusal or a reset is a failure: key holders must wait
// in the accept queue, never be turned away.
func (h *debHost) signedWaits(t *testing.T, addr netip.Addr, secret md5.Secret, op func()) waits {
	t.Helper()
	var w waits
	var mu sync.Mutex
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		after := 0
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		for after < 2 && ctx.Err() == nil {
			start := time.Now()
			banner, err := h.cl.dial(addr, 22, secret, 20*time.Second)
			d := time.Since(start)
			mu.Lock()
			w.n++
			w.max = max(w.max, d)
			var ne net.Error
			switch {
			case err == nil && strings.HasPrefix(banner, "SSH-2.0-"):
			case err == nil:
				w.failed = append(w.failed, fmt.Sprintf("connected but got %q after %v", banner, d.Round(time.Millisecond)))
			case errors.Is(err, syscall.ECONNRESET):
				w.resets++
			case errors.As(err, &ne) && ne.Timeout():
				w.failed = append(w.failed, fmt.Sprintf("no answer within 20s: %v", err))
			default:
				w.failed = append(w.failed, err.Error())
			}
			mu.Unlock()
			select {
			case <-done:
				after++
			default:
			}
		}
	}()
	time.Sleep(200 * time.Millisecond)
	op()
	close(done)
	wg.Wait()
	return w
}
