//go:build linux

package testnet

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// GuestEnv is set to "1" in the test guest by scripts/testkernel/run.
const GuestEnv = "SSHMD5_GUEST"

// guestBinEnv names the directory of the binaries built for the guest.
const guestBinEnv = "SMD_GUEST_BIN"

// InGuest reports whether this process runs inside the test guest.
func InGuest() bool { return os.Getenv(GuestEnv) == "1" }

// GuestMain is the TestMain of a package whose tests need the project's
// test kernel (TCP-AO, VRF; scripts/testkernel): on the host it runs this
// test binary again inside the guest, with the same flags, streams the
// guest's output as its own and exits with the guest's status; in the
// guest it runs the tests. pkgs are the module's commands the tests get
// from BuildBinary: they are built here, on the host, because the guest
// has no writable Go build cache and compiles slowly under TCG.
//
// When the guest cannot run (not root, no qemu, the kernel does not
// build), the package FAILS with the reason; it never passes unrun.
// Flags naming output files (-test.coverprofile, ...) are not supported:
// the guest sees the host's files read-only.
func GuestMain(m *testing.M, pkgs ...string) {
	if InGuest() {
		os.Exit(m.Run())
	}
	code, err := runInGuest(pkgs)
	if err != nil {
		fmt.Fprintf(os.Stderr, "--- FAIL: the test guest did not run this package's tests: %v\nFAIL\n", err)
		os.Exit(1)
	}
	os.Exit(code)
}

func runInGuest(pkgs []string) (int, error) {
	if os.Geteuid() != 0 {
		return 0, errors.New("not root: the guest runs under qemu with the host's root shared, which needs root (sudo)")
	}
	flag.Parse() // the generated main has registered the test flags
	cwd, err := os.Getwd()
	if err != nil {
		return 0, err
	}
	root, err := moduleRoot(cwd)
	if err != nil {
		return 0, err
	}
	// The guest mounts its own /tmp over the host's, where go test keeps
	// the test binary; /var/tmp it sees as the host has it. A killed run
	// leaves its folder behind: remove those of exited processes.
	old, _ := filepath.Glob("/var/tmp/smd-guest-*")
	for _, d := range old {
		pid, err := strconv.Atoi(strings.SplitN(strings.TrimPrefix(filepath.Base(d), "smd-guest-"), "-", 2)[0])
		if _, serr := os.Stat("/proc/" + strconv.Itoa(pid)); err == nil && os.IsNotExist(serr) {
			os.RemoveAll(d)
		}
	}
	dir, err := os.MkdirTemp("/var/tmp", "smd-guest-"+strconv.Itoa(os.Getpid())+"-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o755); err != nil {
		return 0, err
	}
	self, err := os.Executable()
	if err != nil {
		return 0, err
	}
	bin := filepath.Join(dir, filepath.Base(self))
	if err := copyFile(self, bin); err != nil {
		return 0, fmt.Errorf("copying the test binary for the guest: %w", err)
	}
	for _, p := range pkgs {
		p = strings.TrimPrefix(strings.TrimPrefix(p, Module), "/")
		out, err := exec.Command("go", "build", "-o", filepath.Join(dir, path.Base(p)), path.Join(Module, p)).CombinedOutput()
		if err != nil {
			return 0, fmt.Errorf("go build %s for the guest: %v\n%s", p, err, out)
		}
	}
	// The guest's run gets the test's own timeout plus time to boot; a
	// guest that hangs is killed by the runner.
	limit := 30 * time.Minute
	if f := flag.Lookup("test.timeout"); f != nil {
		if d, err := time.ParseDuration(f.Value.String()); err == nil && d > 0 {
			limit = d + 2*time.Minute
		}
	}
	args := []string{"-t", strconv.Itoa(int(limit.Seconds())), "-C", cwd, "-e", guestBinEnv + "=" + dir}
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "SMD_") && !strings.HasPrefix(kv, guestBinEnv+"=") {
			args = append(args, "-e", kv)
		}
	}
	args = append(args, "--", bin)
	args = append(args, os.Args[1:]...)
	cmd := exec.Command(filepath.Join(root, "scripts/testkernel/run"), args...)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return 0, err
	}
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	copyConsole(os.Stdout, stdout)
	err = cmd.Wait()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, nil
	case errors.As(err, &ee) && ee.ExitCode() == 124:
		return 0, fmt.Errorf("the guest ran out of time (%v); see its console above", limit)
	case errors.As(err, &ee) && ee.ExitCode() == 125:
		return 0, errors.New("scripts/testkernel/run could not run it; the reason is above")
	case errors.As(err, &ee):
		return ee.ExitCode(), nil
	default:
		return 0, err
	}
}

// copyConsole copies the guest's serial console, dropping the carriage
// returns a serial line adds, so the output reads like a local run's.
func copyConsole(w io.Writer, r io.Reader) {
	br := bufio.NewReader(r)
	for {
		line, err := br.ReadBytes('\n')
		w.Write(bytes.ReplaceAll(line, []byte("\r"), nil))
		if err != nil {
			return
		}
	}
}

func moduleRoot(dir string) (string, error) {
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		if d == filepath.Dir(d) {
			return "", fmt.Errorf("no go.mod above %s: run the test from inside the module", dir)
		}
	}
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
