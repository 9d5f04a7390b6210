//go:build linux

package testnet

import (
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// Module is the import path of this module.
const Module = "github.com/sshmd5/sshmd5"

type build struct {
	once sync.Once
	path string
	err  string
}

var (
	buildsMu sync.Mutex
	builds   = map[string]*build{}
	binDir   string
)

// BuildBinary builds the module's package pkg ("cmd/ssh-md5-proxy", or the
// full import path) once per test binary and returns the executable's path.
//
// The binaries are shared by all tests of the test binary, so they cannot
// live in one test's TempDir. They go into a directory named after this
// process's pid; since no hook runs when a test binary exits, each test
// binary removes the directories of earlier, no longer running, ones.
func BuildBinary(t testing.TB, pkg string) string {
	t.Helper()
	pkg = strings.TrimPrefix(strings.TrimPrefix(pkg, Module), "/")
	buildsMu.Lock()
	b := builds[pkg]
	if b == nil {
		b = &build{}
		builds[pkg] = b
	}
	buildsMu.Unlock()
	b.once.Do(func() { b.path, b.err = doBuild(pkg) })
	if b.err != "" {
		t.Fatalf("testnet: build %s: %s", pkg, b.err)
	}
	return b.path
}

func doBuild(pkg string) (string, string) {
	if InGuest() {
		// GuestMain built them on the host.
		out := filepath.Join(os.Getenv(guestBinEnv), path.Base(pkg))
		if _, err := os.Stat(out); err != nil {
			return "", "not built for the guest: name " + pkg + " in the package's testnet.GuestMain call"
		}
		return out, ""
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		return "", "go tool not found: " + err.Error()
	}
	dir, err := buildDir()
	if err != nil {
		return "", err.Error()
	}
	out := filepath.Join(dir, path.Base(pkg))
	cmd := exec.Command(goBin, "build", "-o", out, path.Join(Module, pkg))
	// The test runs in its package's directory, which is inside the module.
	if o, err := cmd.CombinedOutput(); err != nil {
		return "", err.Error() + "\n" + string(o)
	}
	return out, ""
}

const binDirPrefix = "smd-testnet-bin-"

// buildDir returns this process's binary directory, creating it and
// removing those of exited processes on first use. Called under the build's
// sync.Once, but several packages may build at once, hence the lock.
func buildDir() (string, error) {
	buildsMu.Lock()
	defer buildsMu.Unlock()
	if binDir != "" {
		return binDir, nil
	}
	tmp := os.TempDir()
	old, _ := filepath.Glob(filepath.Join(tmp, binDirPrefix+"*"))
	for _, d := range old {
		pid, err := strconv.Atoi(strings.TrimPrefix(filepath.Base(d), binDirPrefix))
		if err != nil {
			continue
		}
		if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); os.IsNotExist(err) {
			os.RemoveAll(d)
		}
	}
	d := filepath.Join(tmp, binDirPrefix+strconv.Itoa(os.Getpid()))
	if err := os.MkdirAll(d, 0o755); err != nil {
		return "", err
	}
	binDir = d
	return d, nil
}
