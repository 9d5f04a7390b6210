//go:build linux

// Package install tests the Makefile's install and uninstall targets:
// "make install DESTDIR=... PREFIX=..." into a temporary directory, then
// the file list, modes and contents, the units' ExecStart= paths, the man
// pages as man(1) renders them, and "make uninstall". It needs make, not
// root.
package install

import (
	"bufio"
	"bytes"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// root is the repository root, from this package's directory.
const root = "../.."

// makeCmd returns "make -C root args..." with an environment that
// carries none of an outer make's or install's settings.
func makeCmd(t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	mk, err := exec.LookPath("make")
	if err != nil {
		t.Fatalf("this test runs the Makefile and needs make: %v (apt-get install make)", err)
	}
	cmd := exec.Command(mk, append([]string{"--no-print-directory", "-C", root}, args...)...)
	for _, e := range os.Environ() {
		name, _, _ := strings.Cut(e, "=")
		switch name {
		case "MAKEFLAGS", "MFLAGS", "MAKELEVEL", "DESTDIR", "PREFIX":
			continue
		}
		cmd.Env = append(cmd.Env, e)
	}
	return cmd
}

func runMake(t *testing.T, args ...string) {
	t.Helper()
	cmd := makeCmd(t, args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("make %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// goArg makes the Makefile use the go command that runs this test, when
// it is on PATH (go test puts it there).
func goArg() []string {
	if g, err := exec.LookPath("go"); err == nil {
		return []string{"GO=" + g}
	}
	return nil
}

// unitNames are contrib/systemd's units, which install must put in
// UNITDIR.
func unitNames(t *testing.T) []string {
	t.Helper()
	var names []string
	for _, pat := range []string{"*.socket", "*.service"} { // *.socket: none may come back
		m, err := filepath.Glob(filepath.Join(root, "contrib/systemd", pat))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range m {
			names = append(names, filepath.Base(f))
		}
	}
	// No .socket units: the shim opens and keys its sockets itself.
	for _, want := range []string{"sshd-md5.service", "sshd-md5-listener.service", "sshd-md5-2222.service"} {
		if !slices.Contains(names, want) {
			t.Fatalf("contrib/systemd has no %s (found %q)", want, names)
		}
	}
	for _, n := range names {
		if strings.HasSuffix(n, ".socket") {
			t.Fatalf("contrib/systemd has %s: a .socket unit is bound by systemd without keys and answers unsigned peers until the service runs", n)
		}
	}
	return names
}

func TestInstallUninstall(t *testing.T) {
	build := t.TempDir()
	// Build once, outside the source tree; each install below then finds
	// the binaries up to date.
	runMake(t, append([]string{"build", "OUT=" + build}, goArg()...)...)
	for _, f := range []string{"ssh-md5-proxy", "sshd-md5-socket"} {
		if _, err := os.Stat(filepath.Join(build, f)); err != nil {
			t.Fatalf("make build OUT=%s: %v", build, err)
		}
	}
	units := unitNames(t)

	for _, tc := range []struct {
		name string
		args []string // beyond DESTDIR and OUT
		// where things must land
		prefix, unitdir string
	}{
		{"PREFIX=/usr", []string{"PREFIX=/usr"}, "/usr", "/usr/lib/systemd/system"},
		{"PREFIX=/usr/local", []string{"PREFIX=/usr/local"}, "/usr/local", "/usr/local/lib/systemd/system"},
		{"default PREFIX", nil, "/usr/local", "/usr/local/lib/systemd/system"},
		{"UNITDIR=/etc/systemd/system", []string{"PREFIX=/opt/sshmd5", "UNITDIR=/etc/systemd/system"}, "/opt/sshmd5", "/etc/systemd/system"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dest := t.TempDir()
			args := append([]string{"DESTDIR=" + dest, "OUT=" + build}, tc.args...)
			args = append(args, goArg()...)
			runMake(t, append([]string{"install"}, args...)...)

			p := tc.prefix
			bin := path.Join(p, "bin/ssh-md5-proxy")
			sbin := path.Join(p, "sbin/sshd-md5-socket")
			want := map[string]fs.FileMode{
				bin:  0o755,
				sbin: 0o755,
				path.Join(p, "share/man/man1/ssh-md5-proxy.1"):      0o644,
				path.Join(p, "share/man/man8/sshd-md5-socket.8"):    0o644,
				path.Join(p, "share/doc/sshmd5/README.md"):          0o644,
				path.Join(p, "share/doc/sshmd5/sshd-md5-2222.conf"): 0o644,
			}
			for _, u := range units {
				want[path.Join(tc.unitdir, u)] = 0o644
			}
			have := files(t, dest)
			for f, mode := range want {
				got, ok := have[f]
				switch {
				case !ok:
					t.Errorf("make install %s did not install %s", strings.Join(tc.args, " "), f)
				case got != mode:
					t.Errorf("%s: mode %04o, want %04o", f, got, mode)
				}
			}
			for f := range have {
				if _, ok := want[f]; !ok {
					t.Errorf("make install %s installed %s, which it should not", strings.Join(tc.args, " "), f)
				}
			}
			if t.Failed() {
				return
			}

			// Copies of the tree's files.
			same(t, filepath.Join(root, "man/ssh-md5-proxy.1"), filepath.Join(dest, p, "share/man/man1/ssh-md5-proxy.1"))
			same(t, filepath.Join(root, "man/sshd-md5-socket.8"), filepath.Join(dest, p, "share/man/man8/sshd-md5-socket.8"))
			same(t, filepath.Join(root, "README.md"), filepath.Join(dest, p, "share/doc/sshmd5/README.md"))
			same(t, filepath.Join(root, "contrib/systemd/sshd-md5-2222.conf"), filepath.Join(dest, p, "share/doc/sshmd5/sshd-md5-2222.conf"))

			// The installed binaries are the two commands.
			for f, want := range map[string]string{bin: "Usage: ssh-md5-proxy", sbin: "usage: sshd-md5-socket"} {
				out, err := exec.Command(filepath.Join(dest, f), "-h").CombinedOutput()
				if err != nil || !bytes.HasPrefix(out, []byte(want)) {
					t.Errorf("%s -h: %v, output %q; want exit 0 and %q", f, err, firstLine(out), want)
				}
			}

			checkUnits(t, dest, tc.unitdir, sbin, units)
			checkUnitPath(t, tc.unitdir)
			checkManPage(t, filepath.Join(dest, p, "share/man/man1/ssh-md5-proxy.1"), "ssh-md5-proxy", "1")
			checkManPage(t, filepath.Join(dest, p, "share/man/man8/sshd-md5-socket.8"), "sshd-md5-socket", "8")

			runMake(t, append([]string{"uninstall"}, args...)...)
			left := files(t, dest)
			for f := range left {
				t.Errorf("make uninstall %s left %s", strings.Join(tc.args, " "), f)
			}
			if _, err := os.Stat(filepath.Join(dest, p, "share/doc/sshmd5")); err == nil {
				t.Errorf("make uninstall left %s", path.Join(p, "share/doc/sshmd5"))
			}
		})
	}
}

// files returns every non-directory under dest, as an absolute path
// below DESTDIR, with its permission bits.
func files(t *testing.T, dest string) map[string]fs.FileMode {
	t.Helper()
	m := map[string]fs.FileMode{}
	err := filepath.WalkDir(dest, func(f string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dest, f)
		m["/"+filepath.ToSlash(rel)] = fi.Mode() & (fs.ModePerm | fs.ModeType)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func same(t *testing.T, src, dst string) {
	t.Helper()
	a, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(dst)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Errorf("%s is not a copy of %s", dst, src)
	}
}

// checkUnits: each installed unit is its source with every Exec line's
// /usr/sbin/sshd-md5-socket replaced by the installed binary, and every
// unit that runs the shim runs that binary.
func checkUnits(t *testing.T, dest, unitdir, sbin string, units []string) {
	t.Helper()
	runsShim := 0
	for _, u := range units {
		src, err := os.ReadFile(filepath.Join(root, "contrib/systemd", u))
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(dest, unitdir, u))
		if err != nil {
			t.Fatal(err)
		}
		var want bytes.Buffer
		for _, l := range strings.SplitAfter(string(src), "\n") {
			if strings.HasPrefix(l, "Exec") {
				l = strings.ReplaceAll(l, "/usr/sbin/sshd-md5-socket", sbin)
			}
			want.WriteString(l)
		}
		if !bytes.Equal(got, want.Bytes()) {
			t.Errorf("%s: installed unit is not contrib/systemd/%s with its Exec lines naming %s:\n%s", path.Join(unitdir, u), u, sbin, got)
		}
		sc := bufio.NewScanner(bytes.NewReader(got))
		for sc.Scan() {
			l := sc.Text()
			if !strings.HasPrefix(l, "ExecStart=") {
				continue
			}
			exe, _, _ := strings.Cut(strings.TrimPrefix(l, "ExecStart="), " ")
			if path.Base(exe) != "sshd-md5-socket" {
				continue
			}
			runsShim++
			if exe != sbin {
				t.Errorf("%s: %q runs %s, want the installed %s", u, l, exe, sbin)
			} else if fi, err := os.Stat(filepath.Join(dest, exe)); err != nil || fi.Mode()&0o111 == 0 {
				t.Errorf("%s: %q: the installed binary is missing or not executable: %v", u, l, err)
			}
		}
	}
	if runsShim == 0 {
		t.Errorf("no installed unit has ExecStart=%s", sbin)
	}
}

// checkUnitPath checks that systemd reads units from unitdir, when
// systemd-analyze is there to ask.
func checkUnitPath(t *testing.T, unitdir string) {
	t.Helper()
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Logf("no systemd-analyze, so not checked that systemd reads %s: %v", unitdir, err)
		return
	}
	out, err := exec.Command(sa, "unit-paths").Output()
	if err != nil {
		t.Fatalf("systemd-analyze unit-paths: %v", err)
	}
	paths := strings.Fields(string(out))
	if !slices.Contains(paths, unitdir) {
		// /lib may be /usr/lib (merged /usr), listed under either name.
		if !slices.Contains(paths, strings.TrimPrefix(unitdir, "/usr")) {
			t.Errorf("systemd-analyze unit-paths does not list %s, where make install puts the units:\n%s", unitdir, out)
		}
	}
}

// checkManPage renders an installed man page with man(1) when it is
// installed, else with groff, and checks that it has the right title
// and renders without warnings; without either, it checks the .TH line.
func checkManPage(t *testing.T, file, name, section string) {
	t.Helper()
	src, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	th := `.TH ` + strings.ReplaceAll(name, "-", `\-`) + " " + section + " "
	if !bytes.Contains(src, []byte("\n"+th)) {
		t.Errorf("%s: no %q line", file, th)
	}
	var cmd *exec.Cmd
	if m, err := exec.LookPath("man"); err == nil {
		// From stdin: man may drop root privileges and then could not
		// read the test's private directory.
		cmd = exec.Command(m, "--warnings", "-l", "-")
		cmd.Env = append(os.Environ(), "MANWIDTH=80", "MANPAGER=cat", "PAGER=cat", "LC_ALL=C.UTF-8")
	} else if g, err := exec.LookPath("groff"); err == nil {
		cmd = exec.Command(g, "-man", "-Tutf8", "-ww")
	} else {
		t.Logf("neither man nor groff is installed: checked %s's .TH line only", file)
		return
	}
	cmd.Stdin = bytes.NewReader(src)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s: %v\n%s", cmd, err, stderr.Bytes())
	}
	if stderr.Len() > 0 {
		t.Errorf("%s warns about %s:\n%s", cmd, file, stderr.Bytes())
	}
	out := stdout.String()
	for _, want := range []string{name + "(" + section + ")", "NAME", "SYNOPSIS", "EXIT STATUS", "SEE ALSO"} {
		if !strings.Contains(out, want) {
			t.Errorf("%s: the rendered page lacks %q:\n%s", file, want, out)
		}
	}
	// The NAME line, as whatis(1) needs it (justified, hence \s+).
	if re := regexp.MustCompile(`\n\s+` + regexp.QuoteMeta(name) + `\s+-\s+\S`); !re.MatchString(out) {
		t.Errorf("%s: the rendered page has no NAME line %q:\n%s", file, name+" - ...", out)
	}
}

func firstLine(b []byte) string {
	l, _, _ := strings.Cut(string(b), "\n")
	return l
}

// TestVersion: the binaries make builds report scripts/version, the
// version packaging/build-deb puts on the package, and VERSION=...
// overrides it.
func TestVersion(t *testing.T) {
	out, err := exec.Command(filepath.Join(root, "scripts/version")).Output()
	if err != nil {
		t.Fatalf("scripts/version: %v (this test needs git and a git checkout)", err)
	}
	want := strings.TrimSpace(string(out))
	if !regexp.MustCompile(`^[0-9][A-Za-z0-9.+~]*$`).MatchString(want) {
		t.Fatalf("scripts/version printed %q, not a Debian version", want)
	}
	for _, tc := range []struct {
		name, version string
		args          []string
	}{
		{"scripts/version", want, nil},
		{"VERSION=", "1.2.3~test", []string{"VERSION=1.2.3~test"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			build := t.TempDir()
			runMake(t, append(append([]string{"build", "OUT=" + build}, tc.args...), goArg()...)...)
			for _, prog := range []string{"ssh-md5-proxy", "sshd-md5-socket"} {
				got, err := exec.Command(filepath.Join(build, prog), "--version").Output()
				if err != nil {
					t.Fatalf("%s --version: %v", prog, err)
				}
				if w := prog + " " + tc.version + " ("; !strings.HasPrefix(string(got), w) {
					t.Errorf("%s --version printed %q, want it to start with %q", prog, got, w)
				}
			}
		})
	}
}
