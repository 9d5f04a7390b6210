//go:build linux

package systemd_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sshmd5/sshmd5/internal/testnet"
)

const (
	walkthroughScript = "../../scripts/walkthrough"
	readmePath        = "../../README.md"
	migrateHeading    = "## Migrate an existing server without locking yourself out"
)

// scriptSteps parses scripts/walkthrough: the body lines (trimmed, empty
// ones dropped) of each step function, by name ("server_switch").
func scriptSteps(t *testing.T) map[string][]string {
	t.Helper()
	data, err := os.ReadFile(walkthroughScript)
	if err != nil {
		t.Fatal(err)
	}
	start := regexp.MustCompile(`^((?:server|client)_[a-z0-9]+)\(\) \{$`)
	steps := map[string][]string{}
	var cur string
	for _, line := range strings.Split(string(data), "\n") {
		if m := start.FindStringSubmatch(line); m != nil {
			cur = m[1]
			steps[cur] = nil
			continue
		}
		if cur == "" {
			continue
		}
		if line == "}" {
			cur = ""
			continue
		}
		if l := strings.TrimSpace(line); l != "" {
			steps[cur] = append(steps[cur], l)
		}
	}
	if len(steps) == 0 {
		t.Fatalf("no server_*/client_* functions in %s", walkthroughScript)
	}
	return steps
}

// readmeBlock is one code block of the README's migration section.
type readmeBlock struct {
	side  string   // "server" or "client", from the block's first line
	lines []string // trimmed, non-empty, the first line included
}

func readmeBlocks(t *testing.T) []readmeBlock {
	t.Helper()
	data, err := os.ReadFile(readmePath)
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	i := strings.Index(text, "\n"+migrateHeading+"\n")
	if i < 0 {
		t.Fatalf("README.md has no section %q", migrateHeading)
	}
	section := text[i+1+len(migrateHeading):]
	if j := strings.Index(section, "\n## "); j >= 0 {
		section = section[:j]
	}
	var blocks []readmeBlock
	var cur *readmeBlock
	for _, line := range strings.Split(section, "\n") {
		if strings.HasPrefix(line, "```") {
			if cur == nil {
				cur = &readmeBlock{}
			} else {
				blocks = append(blocks, *cur)
				cur = nil
			}
			continue
		}
		if cur == nil {
			continue
		}
		l := strings.TrimSpace(line)
		if l == "" {
			continue
		}
		if len(cur.lines) == 0 {
			switch {
			case strings.HasPrefix(l, "# server"):
				cur.side = "server"
			case strings.HasPrefix(l, "# client"):
				cur.side = "client"
			default:
				t.Errorf("README migration section: a code block starts with %q; the first line must say \"# server\" or \"# client\"", l)
			}
		}
		cur.lines = append(cur.lines, l)
	}
	if cur != nil {
		t.Fatalf("README migration section: unterminated code block")
	}
	return blocks
}

// TestWalkthroughMatchesREADME checks that scripts/walkthrough, which
// TestMigrationWalkthrough runs, holds exactly the commands of the
// README's migration section: every line of each of the section's code
// blocks is in a step function of the same side, and every line of a step
// function is in a block of the README of that side.
func TestWalkthroughMatchesREADME(t *testing.T) {
	steps := scriptSteps(t)
	blocks := readmeBlocks(t)
	if len(blocks) < 8 {
		t.Fatalf("README migration section: %d code blocks; expected the steps (at least 8)", len(blocks))
	}
	scriptLines := map[string][]string{} // side -> lines of all its steps
	for name, lines := range steps {
		side, _, _ := strings.Cut(name, "_")
		scriptLines[side] = append(scriptLines[side], lines...)
	}
	readmeLines := map[string][]string{}
	for _, b := range blocks {
		if b.side == "" {
			continue
		}
		readmeLines[b.side] = append(readmeLines[b.side], b.lines...)
		for _, l := range b.lines[1:] {
			if !slices.Contains(scriptLines[b.side], l) {
				t.Errorf("README migration section, %s block: %q is not in any %s_* step of scripts/walkthrough", b.side, l, b.side)
			}
		}
	}
	for name, lines := range steps {
		side, _, _ := strings.Cut(name, "_")
		for _, l := range lines {
			if !slices.Contains(readmeLines[side], l) {
				t.Errorf("scripts/walkthrough %s: %q is not in any %s code block of the README's migration section", name, l, side)
			}
		}
	}
}

// walk runs scripts/walkthrough's steps: server steps in the container
// (through nsenter, like a console, or through ssh), client steps in the
// client namespace with a HOME of their own.
type walk struct {
	h         *debHost
	script    string // absolute path of scripts/walkthrough
	home      string // the client's HOME
	bin       string // holds the packaged ssh-md5-proxy
	sshConfig string // $HOME/.ssh/config
	ran       map[string]bool
}

func (w *walk) clientEnv() []string {
	return []string{"env", "-i",
		"HOME=" + w.home,
		"PATH=" + w.bin + ":/usr/sbin:/usr/bin:/sbin:/bin",
		"SHELL=/bin/sh", "LANG=C.UTF-8",
		"SERVER=" + w.h.v4.String(),
		"WALKTHROUGH_SSH_CONFIG=" + w.sshConfig,
	}
}

// clientCmd returns the command running args in the client namespace
// with the client's environment.
func (w *walk) clientCmd(ctx context.Context, args ...string) *exec.Cmd {
	full := append([]string{"netns", "exec", w.h.cl.ns.Name}, w.clientEnv()...)
	cmd := exec.CommandContext(ctx, "ip", append(full, args...)...)
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// client runs a client step and returns its output and error.
func (w *walk) client(step string) (string, error) {
	w.ran["client_"+step] = true
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := w.clientCmd(ctx, "bash", w.script, "client", step).CombinedOutput()
	return string(out), err
}

func (w *walk) mustClient(t *testing.T, step string) string {
	t.Helper()
	start := time.Now()
	out, err := w.client(step)
	if err != nil {
		t.Fatalf("walkthrough client %s: %v\n%s", step, err, out)
	}
	t.Logf("walkthrough client %s (%v):\n%s", step, time.Since(start).Round(time.Millisecond), strings.TrimSpace(out))
	return out
}

// server runs a server step in the container as root, from /root (where
// the .deb and the copy of the key are), as on a console.
func (w *walk) server(t *testing.T, step string) string {
	t.Helper()
	w.ran["server_"+step] = true
	start := time.Now()
	out, err := w.h.ct.exec(2*time.Minute, "sh", "-c", "cd /root && exec bash ./walkthrough server "+step)
	if err != nil {
		ss, _ := w.h.ct.exec(10*time.Second, "sh", "-c", "ss -tlnpe; systemctl status --no-pager 'sshd-md5*'")
		t.Fatalf("walkthrough server %s: %v\n%s\nlisteners and units:\n%s", step, err, out, ss)
	}
	t.Logf("walkthrough server %s (%v):\n%s", step, time.Since(start).Round(time.Millisecond), strings.TrimSpace(out))
	return out
}

// serverOverSSH runs a server step the way an administrator would: in an
// ssh session to port 22 (sshOpts as on ssh's command line). That the
// step's output ends with its last command shows that the session
// survived the step.
func (w *walk) serverOverSSH(t *testing.T, step string, sshOpts ...string) string {
	t.Helper()
	w.ran["server_"+step] = true
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	args := append([]string{"ssh", "-F", w.sshConfig}, sshOpts...)
	args = append(args, "myserver", "bash ./walkthrough server "+step+" && echo step-done")
	out, err := w.clientCmd(ctx, args...).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "step-done") {
		t.Fatalf("walkthrough server %s, run over ssh %s: %v\n%s", step, strings.Join(sshOpts, " "), err, out)
	}
	t.Logf("walkthrough server %s over ssh to port 22 (%v):\n%s", step, time.Since(start).Round(time.Millisecond), strings.TrimSpace(string(out)))
	return string(out)
}

// login22 logs in on port 22 with ssh's options opts (none: as the config
// says) and fails the test unless it works.
func (w *walk) login22(t *testing.T, what string, opts ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	args := append([]string{"ssh", "-F", w.sshConfig}, opts...)
	args = append(args, "myserver", "echo ok")
	out, err := w.clientCmd(ctx, args...).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "ok" {
		t.Fatalf("%s login on port 22: %v\n%s", what, err, out)
	}
	t.Logf("%s login on port 22: ok", what)
}

var signedOpt = []string{"-o", "ProxyCommand=ssh-md5-proxy %h %p"}
var plainOpt = []string{"-o", "ProxyCommand=none"}

var (
	fingerprintRE = regexp.MustCompile(`SHA256:[A-Za-z0-9+/]+`)
	hostKeyLineRE = regexp.MustCompile(`(?m)^ +host key .*$`)
)

// hostFingerprints returns the SHA256 fingerprints of the server's host
// keys.
func (w *walk) hostFingerprints(t *testing.T) []string {
	t.Helper()
	keys, _ := filepath.Glob(filepath.Join(w.h.root, "etc/ssh/ssh_host_*_key.pub"))
	var fps []string
	for _, k := range keys {
		fps = append(fps, fingerprintRE.FindString(run(t, "ssh-keygen", "-l", "-f", k)))
	}
	if len(fps) == 0 {
		t.Fatal("no host keys in the container's /etc/ssh")
	}
	return fps
}

// checkProbe checks what ssh-md5-proxy probe printed for port: the signed
// connection reached sshd and showed one of the server's host keys, the
// unsigned one got no answer.
func (w *walk) checkProbe(t *testing.T, out string, port int) {
	t.Helper()
	for _, want := range []string{
		fmt.Sprintf("probe %s port %d", w.h.v4, port),
		"banner SSH-2.0-OpenSSH",
		"unsigned: no answer",
		"ok: the server takes signed connections only",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("probe of port %d: no %q in its output", port, want)
		}
	}
	// The host key's, not the TCP-MD5 key's fingerprint on the line below.
	fp := fingerprintRE.FindString(hostKeyLineRE.FindString(out))
	if !slices.Contains(w.hostFingerprints(t), fp) {
		t.Errorf("probe of port %d: host key %q is not one of the server's (%v)", port, fp, w.hostFingerprints(t))
	}
}

// ignored checks that unsigned connections to port over IPv4 and IPv6
// get no answer (both at once: each takes the full 3 s).
func (w *walk) ignored(t *testing.T, port int, what string) {
	t.Helper()
	var wg sync.WaitGroup
	for _, a := range []netip.Addr{w.h.v4, w.h.v6} {
		wg.Add(1)
		go func() { defer wg.Done(); w.h.cl.mustBeIgnoredPort(t, a, port, nil, what) }()
	}
	wg.Wait()
}

// refused checks that nothing listens on addr:port: the connection is
// refused at once.
func (w *walk) refused(t *testing.T, addr netip.Addr, port int) {
	t.Helper()
	_, err := w.h.cl.dial(addr, port, nil, 3*time.Second)
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("connection to %s port %d: %v; want it refused (nothing listening)", addr, port, err)
	}
}

// console is the session kept open through the switch.
type console struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *testnet.LockedBuffer
	n     int
}

// alive sends a command through the session and waits for its answer.
func (c *console) alive(t *testing.T, when string) {
	t.Helper()
	c.n++
	word := "console-alive-" + strconv.Itoa(c.n)
	if _, err := fmt.Fprintf(c.stdin, "echo %s\n", word); err != nil {
		t.Fatalf("console session, %s: write: %v\n%s", when, err, c.out.String())
	}
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(c.out.String(), word); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("console session, %s: no answer within 10s:\n%s", when, c.out.String())
		}
	}
	t.Logf("console session (port 2222) answers %s", when)
}

// TestMigrationWalkthrough runs scripts/walkthrough, the README's "Migrate
// an existing server without locking yourself out", against stock Debian
// booted with systemd (ssh.service on port 22), and checks after each step
// what a user would check.
func TestMigrationWalkthrough(t *testing.T) {
	t0 := time.Now()
	steps := scriptSteps(t)
	h := newDebHost(t)
	script, err := filepath.Abs(walkthroughScript)
	if err != nil {
		t.Fatal(err)
	}
	w := &walk{h: h, script: script, ran: map[string]bool{}}
	w.home = filepath.Join(h.cl.dir, "home")
	w.bin = filepath.Join(h.cl.dir, "bin")
	w.sshConfig = filepath.Join(w.home, ".ssh", "config")
	if err := os.MkdirAll(w.bin, 0o755); err != nil {
		t.Fatal(err)
	}
	// The client's existing ssh setup: myserver is the container.
	writeFile(t, w.sshConfig, fmt.Sprintf(`# written by test/systemd: the client's ssh config before the walkthrough
Host myserver
    HostName %s
    User root
    IdentityFile %s
    IdentitiesOnly yes
    IdentityAgent none
    BatchMode yes
    StrictHostKeyChecking yes
    UserKnownHostsFile %s
    GlobalKnownHostsFile /dev/null
    UpdateHostKeys no
    ConnectTimeout 10
    LogLevel ERROR
`, h.v4, h.cl.clientKey, h.cl.knownHosts), 0o600)
	os.Chmod(filepath.Join(w.home, ".ssh"), 0o700)
	copyFile(t, walkthroughScript, filepath.Join(h.root, "root/walkthrough"), 0o755)

	allUnits := packagedUnits(t)
	u2222 := []string{"sshd-md5-2222.service"}
	u22 := []string{"sshd-md5.service"}
	h.wantState(t, "is-active", "active", "ssh.service")
	h.plainAnswers(t, h.v4)
	w.login22(t, "plain (stock Debian)")

	// 1. Install: nothing changes.
	w.server(t, "install")
	h.wantState(t, "is-enabled", "disabled", allUnits...)
	h.wantState(t, "is-active", "inactive", allUnits...)
	h.wantState(t, "is-active", "active", "ssh.service")
	copyFile(t, filepath.Join(h.root, "usr/bin/ssh-md5-proxy"), filepath.Join(w.bin, "ssh-md5-proxy"), 0o755)
	w.login22(t, "plain (after install)")

	// 2. The key, made on the client, copied over the ordinary ssh.
	w.mustClient(t, "key")
	clientKey := filepath.Join(w.home, ".ssh/md5/server.key")
	for _, f := range []string{clientKey, filepath.Join(w.home, ".ssh/md5-keyring.toml"), filepath.Join(h.root, "root/md5.key")} {
		if fi, err := os.Stat(f); err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("after the key step, %s: %v, want mode 0600", f, err)
		}
	}

	// 3. Server keyring, then the shim on 2222 beside port 22.
	w.server(t, "keyring")
	if _, err := os.Stat(filepath.Join(h.root, "root/md5.key")); !os.IsNotExist(err) {
		t.Errorf("the copy of the key in root's home is still there: %v", err)
	}
	serverKey, err := os.ReadFile(filepath.Join(h.root, "etc/ssh/md5/default.key"))
	if err != nil {
		t.Fatal(err)
	}
	if ck, _ := os.ReadFile(clientKey); string(ck) != string(serverKey) {
		t.Fatal("the server's /etc/ssh/md5/default.key differs from the client's key")
	}
	out := w.server(t, "start2222")
	if !regexp.MustCompile(`(?m)^\[::\]:2222 .*2 keys: ::/0, 0\.0\.0\.0/0$`).MatchString(out) {
		t.Errorf("sshd-md5-socket status does not show [::]:2222 keyed for ::/0 and 0.0.0.0/0:\n%s", out)
	}
	h.wantState(t, "is-active", "active", append(u2222, "ssh.service")...)
	h.wantState(t, "is-active", "inactive", u22...)
	w.ignored(t, 2222, "unsigned")
	w.login22(t, "plain (2222 running beside)", plainOpt...)

	// 4. Probe 2222, log in, keep a session open.
	out = w.mustClient(t, "probe2222")
	w.checkProbe(t, out, 2222)
	cctx, ccancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer ccancel()
	con := &console{out: &testnet.LockedBuffer{}}
	w.ran["client_console"] = true
	con.cmd = w.clientCmd(cctx, "bash", w.script, "client", "console")
	con.cmd.Stdout, con.cmd.Stderr = con.out, con.out
	if con.stdin, err = con.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := con.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer con.cmd.Process.Kill()
	con.alive(t, "after opening it")

	// 5. Switch port 22, run from an ordinary ssh session on port 22: it
	// must survive ssh.service being stopped under it.
	out = w.serverOverSSH(t, "switch", plainOpt...)
	h.wantState(t, "is-active", "active", u22...)
	h.wantState(t, "is-enabled", "enabled", u22...)
	h.wantState(t, "is-active", "inactive", "ssh.service", "ssh.socket")
	h.wantState(t, "is-enabled", "masked", "ssh.service", "ssh.socket")
	if !regexp.MustCompile(`(?m)^\[::\]:22 .*2 keys: ::/0, 0\.0\.0\.0/0$`).MatchString(out) || strings.Contains(out, "warning:") {
		t.Errorf("after the switch, sshd-md5-socket status should show [::]:22 keyed and no warning:\n%s", out)
	}
	con.alive(t, "after the switch")
	w.login22(t, "signed (after the switch)", signedOpt...)
	before := h.ns.MD5Counters(t)
	w.ignored(t, 22, "unsigned (after the switch)")
	if d := h.ns.MD5Counters(t).Sub(before); d.NotFound == 0 {
		t.Errorf("TCPMD5NotFound did not grow (%+v): the unsigned SYNs to port 22 were not dropped for want of a signature", d)
	}

	// 6. Probe 22, log in signed, make it the default.
	out = w.mustClient(t, "probe22")
	w.checkProbe(t, out, 22)
	w.mustClient(t, "config")
	w.login22(t, "signed (ssh config)")

	// 7. Retire 2222, from a signed session on port 22.
	w.serverOverSSH(t, "retire2222")
	h.wantState(t, "is-active", "inactive", u2222...)
	h.wantState(t, "is-enabled", "disabled", u2222...)
	con.alive(t, "after retiring port 2222")
	w.refused(t, h.v4, 2222)
	io.WriteString(con.stdin, "exit\n")
	con.stdin.Close()
	if err := con.cmd.Wait(); err != nil {
		t.Errorf("console session: %v\n%s", err, con.out.String())
	}

	// The setup survives a reboot.
	h.reboot(t)
	h.wantState(t, "is-active", "active", u22...)
	h.wantState(t, "is-active", "inactive", append(u2222, "ssh.service")...)
	out = w.mustClient(t, "probe22")
	w.checkProbe(t, out, 22)
	w.login22(t, "signed (after reboot)")
	h.cl.mustBeIgnored(t, h.v6, nil, "unsigned (after reboot)")

	// Rollback, from a signed session on port 22: it must survive the
	// shim being stopped under it.
	w.serverOverSSH(t, "rollback")
	h.wantState(t, "is-active", "inactive", u22...)
	h.wantState(t, "is-enabled", "disabled", u22...)
	h.wantState(t, "is-active", "active", "ssh.service")
	h.wantState(t, "is-enabled", "enabled", "ssh.service")
	h.plainAnswers(t, h.v4)
	h.plainAnswers(t, h.v6)
	w.mustClient(t, "rollback")

	// And it stays rolled back across a reboot.
	h.reboot(t)
	h.wantState(t, "is-active", "active", "ssh.service")
	h.wantState(t, "is-active", "inactive", allUnits...)
	h.plainAnswers(t, h.v4)
	w.mustClient(t, "rollback")

	for name := range steps {
		if !w.ran[name] {
			t.Errorf("scripts/walkthrough step %s was never run by this test", name)
		}
	}
	for name := range w.ran {
		if _, ok := steps[name]; !ok {
			t.Errorf("this test ran %s, which scripts/walkthrough does not have", name)
		}
	}
	t.Logf("timing: TestMigrationWalkthrough %v", time.Since(t0).Round(time.Millisecond))
}
