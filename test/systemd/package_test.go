//go:build linux

package systemd_test

import (
	"context"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sshmd5/sshmd5/internal/testnet"
)

// The .deb is built once per test binary run by packaging/build-deb, into
// a directory that TestMain removes at the end.
var (
	debOnce sync.Once
	debDir  string
	debPath string
	debErr  string
)

func removeDebDir() {
	if debDir != "" {
		os.RemoveAll(debDir)
	}
}

// buildDeb runs packaging/build-deb and returns the path of the package.
func buildDeb(t *testing.T) string {
	t.Helper()
	debOnce.Do(func() {
		for _, p := range []struct{ bin, pkg string }{{"go", "Go"}, {"git", "git"}, {"gzip", "gzip"}} {
			if _, err := exec.LookPath(p.bin); err != nil {
				debErr = p.bin + " not found (" + p.pkg + "): packaging/build-deb needs it: " + err.Error()
				return
			}
		}
		d, err := os.MkdirTemp("", "smd-deb-")
		if err != nil {
			debErr = err.Error()
			return
		}
		debDir = d
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		// The first run fetches and builds nfpm through the module proxy.
		cmd := exec.CommandContext(ctx, "../../packaging/build-deb", d)
		out, err := cmd.CombinedOutput()
		if err != nil {
			debErr = "packaging/build-deb: " + err.Error() + "\n" + tail(out, 40)
			return
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		debPath = lines[len(lines)-1]
		if !strings.HasSuffix(debPath, ".deb") || !strings.HasPrefix(debPath, d+"/") {
			debErr = "packaging/build-deb did not end with the path of the .deb:\n" + tail(out, 20)
			return
		}
		fi, err := os.Stat(debPath)
		if err != nil {
			debErr = err.Error()
			return
		}
		t.Logf("packaging/build-deb: %s, %d KiB, in %v", filepath.Base(debPath), fi.Size()/1024, time.Since(start).Round(time.Millisecond))
	})
	if debErr != "" {
		t.Fatal(debErr)
	}
	return debPath
}

// debHost is a booted stock Debian (ssh.service on port 22) with the .deb
// copied to /root, not installed, and a client namespace that can log in
// as root with plain ssh.
type debHost struct {
	root   string // the overlay the container boots
	ct     *container
	ns     *testnet.NS // the container's network namespace
	cl     *client
	v4, v6 netip.Addr
	deb    string // the package's path inside the container
}

func newDebHost(t *testing.T) *debHost {
	t.Helper()
	requireTools(t)
	deb := buildDeb(t)
	lower := rootfs(t)
	h := &debHost{root: overlay(t, lower)}
	h.deb = "/root/" + filepath.Base(deb)
	copyFile(t, deb, filepath.Join(h.root, h.deb), 0o644)
	cl := newRootClient(t, h.root)
	h.cl = cl

	h.ns = testnet.NewNS(t, "ct")
	cl.ns = testnet.NewNS(t, "cli")
	link := testnet.Connect(t, h.ns, cl.ns)
	h.v4, h.v6 = link.AddrA4, link.AddrA6

	h.boot(t)
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := h.ct.exec(10*time.Second, "journalctl", "-b", "--no-pager", "-o", "short-monotonic",
				"-u", "sshd-md5*", "-u", "ssh*")
			t.Logf("container journal (sshd-md5*, ssh*):\n%s", out)
		}
	})
	return h
}

// boot boots the container (again, after a shutdown).
func (h *debHost) boot(t *testing.T) {
	t.Helper()
	start := time.Now()
	h.ct = boot(t, h.root, h.ns)
	t.Logf("timing: boot to running %v", time.Since(start).Round(time.Millisecond))
}

// reboot powers the container off and boots it again.
func (h *debHost) reboot(t *testing.T) {
	t.Helper()
	h.ct.shutdown()
	h.boot(t)
}

// state returns "systemctl is-active" or "is-enabled" of each unit, one
// word per unit.
func (h *debHost) state(verb string, units ...string) []string {
	out, _ := h.ct.exec(10*time.Second, append([]string{"systemctl", verb}, units...)...)
	return strings.Fields(out)
}

// wantState fails the test unless "systemctl VERB" says want for each unit.
func (h *debHost) wantState(t *testing.T, verb, want string, units ...string) {
	t.Helper()
	got := h.state(verb, units...)
	for i, u := range units {
		if i >= len(got) || got[i] != want {
			t.Errorf("systemctl %s %s: %q, want %s", verb, u, got, want)
			return
		}
	}
}

// plainAnswers checks that an unsigned connection to addr:22 gets an SSH
// banner: the ordinary sshd is there.
func (h *debHost) plainAnswers(t *testing.T, addr netip.Addr) {
	t.Helper()
	banner, err := h.cl.dial(addr, 22, nil, 5*time.Second)
	if err != nil || !strings.HasPrefix(banner, "SSH-2.0-") {
		t.Errorf("unsigned connection to %s port 22: %q, %v; want an SSH banner from the ordinary sshd", addr, banner, err)
		return
	}
	t.Logf("unsigned connection to %s port 22: %s", addr, banner)
}

// packagedUnits are the unit files in contrib/systemd, which the package
// must ship.
func packagedUnits(t *testing.T) []string {
	t.Helper()
	var units []string
	for _, pat := range []string{"*.socket", "*.service"} {
		m, err := filepath.Glob(filepath.Join(unitsDir, pat))
		if err != nil {
			t.Fatal(err)
		}
		for _, u := range m {
			units = append(units, filepath.Base(u))
		}
	}
	if len(units) == 0 {
		t.Fatalf("no units in %s", unitsDir)
	}
	slices.Sort(units)
	return units
}

// TestPackage installs the .deb of packaging/build-deb with dpkg into
// stock Debian, checks that it ships what it should and changes nothing
// on install, enables the inetd units as contrib/systemd/README.md says,
// logs in signed over IPv4 and IPv6 with the packaged ssh-md5-proxy, and
// removes and purges the package again.
func TestPackage(t *testing.T) {
	t0 := time.Now()
	h := newDebHost(t)
	c := h.ct
	units := packagedUnits(t)
	h.wantState(t, "is-active", "active", "ssh.service")

	out := c.must(t, "dpkg", "-i", h.deb)
	t.Logf("dpkg -i:\n%s", strings.TrimSpace(out))

	t.Run("contents", func(t *testing.T) {
		want := []string{
			"/usr/bin/ssh-md5-proxy",
			"/usr/sbin/sshd-md5-socket",
			"/usr/share/man/man1/ssh-md5-proxy.1.gz",
			"/usr/share/man/man8/sshd-md5-socket.8.gz",
			"/usr/share/doc/sshmd5/README.md",
			"/usr/share/doc/sshmd5/README.systemd.md",
			"/usr/share/doc/sshmd5/sshd-md5-2222.conf",
			"/usr/share/doc/sshmd5/copyright",
			"/usr/share/doc/sshmd5/changelog.gz",
		}
		for _, u := range units {
			want = append(want, "/lib/systemd/system/"+u)
		}
		listed := strings.Fields(c.must(t, "dpkg", "-L", "sshmd5"))
		for _, w := range want {
			if !slices.Contains(listed, w) {
				t.Errorf("dpkg -L sshmd5 does not list %s", w)
			}
		}
		for _, l := range listed {
			if strings.HasPrefix(l, "/etc") {
				t.Errorf("the package ships %s: it must ship no configuration, no keyring, no key", l)
			}
		}
		// Modes and owners as installed.
		st := c.must(t, append([]string{"stat", "-L", "-c", "%a %U:%G %n"}, want...)...)
		for _, line := range strings.Split(strings.TrimSpace(st), "\n") {
			f := strings.Fields(line)
			mode := "644"
			if strings.Contains(f[2], "/bin/") || strings.Contains(f[2], "/sbin/") {
				mode = "755"
			}
			if f[0] != mode || f[1] != "root:root" {
				t.Errorf("installed %s: mode %s owner %s, want %s root:root", f[2], f[0], f[1], mode)
			}
		}
		if out := c.must(t, "zcat", "/usr/share/doc/sshmd5/changelog.gz"); !strings.HasPrefix(out, "sshmd5 (") {
			t.Errorf("changelog.gz is not a Debian changelog:\n%s", out)
		}
		// The man pages are gzipped roff.
		for _, m := range []string{"/usr/share/man/man1/ssh-md5-proxy.1.gz", "/usr/share/man/man8/sshd-md5-socket.8.gz"} {
			if out := c.must(t, "zcat", m); !strings.Contains(out, ".TH ") {
				t.Errorf("%s: no .TH line after gunzip:\n%s", m, tail([]byte(out), 5))
			}
		}
		if out := c.must(t, "cat", "/usr/share/doc/sshmd5/copyright"); !strings.HasPrefix(out, "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/") {
			t.Errorf("copyright is not machine-readable (DEP-5):\n%s", tail([]byte(out), 5))
		} else if !strings.Contains(out, "Files: *\nCopyright: 2026 The sshmd5 authors\nLicense: BSD-2-clause\n") {
			t.Errorf("copyright does not state the project's BSD-2-Clause licence:\n%s", tail([]byte(out), 40))
		}
		if out := c.must(t, "dpkg-query", "-W", "-f=${Maintainer}", "sshmd5"); out != "The sshmd5 authors <sshmd5@users.noreply.github.com>" {
			t.Errorf("the package's maintainer is %q, want the project", out)
		}
		// Both programs report the package's version (build-deb stamps it).
		ver := c.must(t, "dpkg-query", "-W", "-f=${Version}", "sshmd5")
		for _, p := range []string{"/usr/bin/ssh-md5-proxy", "/usr/sbin/sshd-md5-socket"} {
			out := c.must(t, p, "--version")
			if w := filepath.Base(p) + " " + ver + " ("; !strings.HasPrefix(out, w) {
				t.Errorf("%s --version printed %q, want it to start with %q", p, out, w)
			}
		}
		if _, err := c.exec(10*time.Second, "test", "-e", "/etc/ssh/md5-keyring.toml"); err == nil {
			t.Errorf("/etc/ssh/md5-keyring.toml exists after install; the package must not ship or make a keyring")
		}
		// With the binaries in place, the installed units verify.
		args := []string{"systemd-analyze", "verify", "--man=no"}
		for _, u := range units {
			args = append(args, "/lib/systemd/system/"+u)
		}
		if out, err := c.exec(60*time.Second, args...); err != nil || strings.TrimSpace(out) != "" {
			t.Errorf("systemd-analyze verify of the installed units: %v\n%s", err, out)
		}
	})

	t.Run("install changes nothing", func(t *testing.T) {
		h.wantState(t, "is-enabled", "disabled", units...)
		h.wantState(t, "is-active", "inactive", units...)
		h.wantState(t, "is-active", "active", "ssh.service")
		h.wantState(t, "is-enabled", "enabled", "ssh.service")
		// postinst ran daemon-reload: systemd knows the new files.
		if out := c.must(t, "systemctl", "show", "-P", "NeedDaemonReload", "sshd-md5.service"); strings.TrimSpace(out) != "no" {
			t.Errorf("NeedDaemonReload of sshd-md5.service after install: %q", out)
		}
		h.plainAnswers(t, h.v4)
	})
	if t.Failed() {
		t.FailNow()
	}

	// A key made on the server by the packaged keygen; the test plays scp
	// to give the client a copy.
	c.must(t, "install", "-d", "-m", "0700", "/etc/ssh/md5")
	kg := c.must(t, "ssh-md5-proxy", "keygen", "-o", "/etc/ssh/md5/default.key")
	t.Logf("ssh-md5-proxy keygen:\n%s", kg)
	key, err := os.ReadFile(filepath.Join(h.root, "etc/ssh/md5/default.key"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(kg, strings.TrimSpace(string(key))) {
		t.Fatalf("keygen printed the key")
	}
	writeFile(t, h.cl.keyFile, string(key), 0o600)
	writeFile(t, filepath.Join(h.root, "etc/ssh/md5-keyring.toml"),
		"[peers.\"0.0.0.0/0\"]\nkey_file = \"/etc/ssh/md5/default.key\"\n"+
			"[peers.\"::/0\"]\nkey_file = \"/etc/ssh/md5/default.key\"\n", 0o600)

	// contrib/systemd/README.md, "Install (inetd mode)".
	c.must(t, "systemctl", "disable", "--now", "ssh.service", "ssh.socket")
	c.must(t, "systemctl", "mask", "ssh.service", "ssh.socket")
	c.must(t, "systemctl", "enable", "--now", "sshd-md5.service")
	h.wantState(t, "is-active", "active", "sshd-md5.service")
	h.wantState(t, "is-enabled", "enabled", "sshd-md5.service")
	h.wantState(t, "is-active", "inactive", "ssh.service")

	// The client signs with the packaged ssh-md5-proxy.
	proxy := filepath.Join(h.cl.dir, "ssh-md5-proxy")
	copyFile(t, filepath.Join(h.root, "usr/bin/ssh-md5-proxy"), proxy, 0o755)
	h.cl.setupProxyBinary(proxy, h.v4, h.v6)
	h.cl.login(t, h.v4)
	h.cl.login(t, h.v6)
	before := h.ns.MD5Counters(t)
	var wg sync.WaitGroup
	for _, a := range []netip.Addr{h.v4, h.v6} {
		wg.Add(1)
		go func() { defer wg.Done(); h.cl.mustBeIgnored(t, a, nil, "unsigned") }()
	}
	wg.Wait()
	if d := h.ns.MD5Counters(t).Sub(before); d.NotFound == 0 {
		t.Errorf("TCPMD5NotFound did not grow in the container's netns (%+v)", d)
	}

	t.Run("remove", func(t *testing.T) {
		listed := strings.Fields(c.must(t, "dpkg", "-L", "sshmd5"))
		out := c.must(t, "dpkg", "-r", "sshmd5")
		t.Logf("dpkg -r:\n%s", strings.TrimSpace(out))
		if !strings.Contains(out, "sshmd5: stopping") || !strings.Contains(out, "systemctl unmask ssh.service ssh.socket && systemctl enable --now ssh.service") {
			t.Errorf("dpkg -r: prerm did not say it stops the running units and how to bring ssh.service back:\n%s", out)
		}
		// postrm is kept for the purge: dpkg leaves the package in
		// config-files state.
		if out, _ := c.exec(10*time.Second, "dpkg-query", "-W", "-f=${db:Status-Status}", "sshmd5"); strings.TrimSpace(out) != "config-files" {
			t.Errorf("after dpkg -r, sshmd5 is %q, want config-files", out)
		}
		var left []string
		for _, l := range listed {
			if !strings.Contains(l, "md5") {
				continue // shared directories
			}
			if _, err := c.exec(10*time.Second, "test", "-e", l); err == nil {
				left = append(left, l)
			}
		}
		if len(left) > 0 {
			t.Errorf("after dpkg -r these files of the package remain: %s", strings.Join(left, " "))
		}
		h.wantState(t, "is-active", "inactive", units...)
		if out, _ := c.exec(10*time.Second, "systemctl", "list-unit-files", "--no-legend", "sshd-md5*"); strings.TrimSpace(out) != "" {
			t.Errorf("systemd still knows unit files after dpkg -r:\n%s", out)
		}
		// The "systemctl enable" links are the administrator's
		// configuration: they stay (dangling, ignored) until the purge.
		links := func() string {
			out, _ := c.exec(10*time.Second, "sh", "-c", "ls /etc/systemd/system/*.wants/ | grep sshd-md5")
			return strings.TrimSpace(out)
		}
		if links() == "" {
			t.Errorf("the enable link of sshd-md5.service is gone after dpkg -r; it belongs to the purge")
		}
		out = c.must(t, "dpkg", "-P", "sshmd5")
		t.Logf("dpkg -P:\n%s", strings.TrimSpace(out))
		if l := links(); l != "" {
			t.Errorf("enable links left after dpkg -P:\n%s", l)
		}
		if out, err := c.exec(10*time.Second, "dpkg-query", "-W", "-f=${db:Status-Status}", "sshmd5"); err == nil && strings.TrimSpace(out) != "not-installed" {
			t.Errorf("after dpkg -P, sshmd5 is %q", out)
		}
		// The administrator's keyring and key stay.
		c.must(t, "test", "-f", "/etc/ssh/md5-keyring.toml")
		c.must(t, "test", "-f", "/etc/ssh/md5/default.key")
	})
	t.Logf("timing: TestPackage before shutdown %v", time.Since(t0).Round(time.Millisecond))
}

// TestDebVersion: the programs in the .deb report the package's version,
// as scripts/version computes it for make too. It unpacks the package
// (dpkg-deb -x) and needs no container.
func TestDebVersion(t *testing.T) {
	deb := buildDeb(t)
	if _, err := exec.LookPath("dpkg-deb"); err != nil {
		t.Fatalf("dpkg-deb not found (dpkg): %v", err)
	}
	ver, err := exec.Command("dpkg-deb", "-f", deb, "Version").Output()
	if err != nil {
		t.Fatalf("dpkg-deb -f %s Version: %v", deb, err)
	}
	want, err := exec.Command("../../scripts/version").Output()
	if err != nil {
		t.Fatalf("scripts/version: %v", err)
	}
	if strings.TrimSpace(string(ver)) != strings.TrimSpace(string(want)) {
		t.Errorf("the package's version is %q, scripts/version says %q", ver, want)
	}
	dir := t.TempDir()
	if out, err := exec.Command("dpkg-deb", "-x", deb, dir).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb -x: %v\n%s", err, out)
	}
	for _, p := range []string{"usr/bin/ssh-md5-proxy", "usr/sbin/sshd-md5-socket"} {
		out, err := exec.Command(filepath.Join(dir, p), "--version").Output()
		if err != nil {
			t.Fatalf("%s --version: %v", p, err)
		}
		if w := filepath.Base(p) + " " + strings.TrimSpace(string(ver)) + " ("; !strings.HasPrefix(string(out), w) {
			t.Errorf("%s --version printed %q, want it to start with %q", p, out, w)
		}
	}
}
