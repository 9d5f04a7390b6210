//go:build linux

package nodump_test

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sshmd5/sshmd5/internal/nodump"
	"github.com/sshmd5/sshmd5/internal/testnet"
)

// The test binary doubles as a control process that holds a key and
// waits: NODUMP_HELPER=plain stays dumpable, =nodump calls Set first.
func TestMain(m *testing.M) {
	switch os.Getenv("NODUMP_HELPER") {
	case "":
		os.Exit(m.Run())
	case "nodump":
		nodump.Set()
	}
	key, err := os.ReadFile(os.Getenv("NODUMP_KEY"))
	if err != nil {
		panic(err)
	}
	held := bytes.Clone(key)
	fmt.Println("ready")
	time.Sleep(time.Minute)
	fmt.Println(len(held))
}

// TestNoCore crashes each process that holds a key the way that writes a
// core (RLIMIT_CORE unlimited, GOTRACEBACK=crash, SIGQUIT) and looks for
// the core in its working directory, where this kernel's core_pattern
// "core" puts it. The plain control must leave a core with the key in
// it, proving that the rig can see one; Set, the proxy and the shim must
// leave none.
func TestNoCore(t *testing.T) {
	testnet.RequireRoot(t)
	pattern, err := os.ReadFile("/proc/sys/kernel/core_pattern")
	if err != nil {
		t.Fatal(err)
	}
	if p := strings.TrimSpace(string(pattern)); p != "core" && p != "core.%p" {
		// Changing it would change it for the whole machine.
		t.Fatalf("kernel.core_pattern is %q; this test needs the default \"core\" (cores in the working directory) to find them", p)
	}
	var old unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_CORE, &old); err != nil {
		t.Fatal(err)
	}
	if err := unix.Setrlimit(unix.RLIMIT_CORE, &unix.Rlimit{Cur: unix.RLIM_INFINITY, Max: unix.RLIM_INFINITY}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Setrlimit(unix.RLIMIT_CORE, &old) })

	proxy := testnet.BuildBinary(t, "cmd/ssh-md5-proxy")
	shim := testnet.BuildBinary(t, "cmd/sshd-md5-socket")
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ns := testnet.NewNS(t, "core")

	for _, tc := range []struct {
		name     string
		argv     func(keyring, keyFile string) []string
		env      string // NODUMP_HELPER
		ready    string // in stdout or stderr once it holds the key
		wantCore bool
	}{
		{"plain control", func(_, kf string) []string { return []string{self} }, "plain", "ready", true},
		{"nodump.Set", func(_, kf string) []string { return []string{self} }, "nodump", "ready", false},
		// A signed SYN to a listener without a key is dropped: the proxy
		// keeps retrying with the key on its socket.
		{"ssh-md5-proxy", func(kr, _ string) []string {
			return []string{proxy, "-k", kr, "-t", "50s", "-n", "dut", "127.0.0.1", "2022"}
		}, "", "", false},
		{"sshd-md5-socket", func(kr, _ string) []string {
			return []string{shim, "-k", kr, "-l", "127.0.0.1:2222", "-l", "[::1]:2222", "--", "/bin/true"}
		}, "", "serving", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			b := make([]byte, 16)
			rand.Read(b)
			secret := "COREKEY-" + hex.EncodeToString(b)
			kf := filepath.Join(dir, "k.key")
			kr := filepath.Join(dir, "k.toml")
			if err := os.WriteFile(kf, []byte(secret), 0o600); err != nil {
				t.Fatal(err)
			}
			testnet.Keyring{Peers: testnet.Both(kf), Hosts: []testnet.Entry{testnet.Host("dut", kf)}}.Write(t, kr)
			cwd := filepath.Join(dir, "cwd")
			if err := os.Mkdir(cwd, 0o700); err != nil {
				t.Fatal(err)
			}
			if tc.name == "ssh-md5-proxy" {
				// Something listening, unkeyed, so that the signed SYN is
				// dropped rather than reset.
				var ln net.Listener
				if err := ns.Do(func() (err error) { ln, err = net.Listen("tcp4", "127.0.0.1:2022"); return err }); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { ln.Close() })
			}
			argv := tc.argv(kr, kf)
			cmd := ns.Cmd(argv[0], argv[1:]...)
			cmd.Dir = cwd
			cmd.Env = append(os.Environ(), "GOTRACEBACK=crash", "NODUMP_HELPER="+tc.env, "NODUMP_KEY="+kf)
			out := &testnet.LockedBuffer{}
			cmd.Stdout, cmd.Stderr = out, out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			t.Cleanup(func() {
				cmd.Process.Kill()
				<-done
			})
			deadline := time.Now().Add(10 * time.Second)
			for tc.ready != "" && !strings.Contains(out.String(), tc.ready) {
				if time.Now().After(deadline) {
					t.Fatalf("%s not ready after 10s:\n%s", tc.name, out)
				}
				time.Sleep(20 * time.Millisecond)
			}
			if tc.ready == "" {
				time.Sleep(500 * time.Millisecond) // the proxy is in connect(), key set
			}
			select {
			case err := <-done:
				done <- err
				t.Fatalf("%s exited before the crash: %v\n%s", tc.name, err, out)
			default:
			}
			if err := cmd.Process.Signal(syscall.SIGQUIT); err != nil {
				t.Fatal(err)
			}
			var werr error
			select {
			case werr = <-done:
				done <- werr
			case <-time.After(20 * time.Second):
				t.Fatalf("%s still running 20s after SIGQUIT", tc.name)
			}
			ws, _ := cmd.ProcessState.Sys().(syscall.WaitStatus)
			if !ws.Signaled() || ws.Signal() != syscall.SIGABRT {
				t.Fatalf("%s: %v, want death by SIGABRT (GOTRACEBACK=crash)\n%s", tc.name, werr, out)
			}
			if strings.Contains(out.String(), secret) {
				t.Errorf("%s: the traceback shows the key", tc.name)
			}
			ents, err := os.ReadDir(cwd)
			if err != nil {
				t.Fatal(err)
			}
			var cores []string
			withKey := false
			for _, e := range ents {
				cores = append(cores, e.Name())
				b, err := os.ReadFile(filepath.Join(cwd, e.Name()))
				if err == nil && bytes.Contains(b, []byte(secret)) {
					withKey = true
				}
			}
			switch {
			case tc.wantCore && (!ws.CoreDump() || len(cores) == 0 || !withKey):
				t.Fatalf("control: core dumped %v, files %q, key in a core %v: the rig cannot see a core, so it proves nothing", ws.CoreDump(), cores, withKey)
			case tc.wantCore:
				t.Logf("control: core %q with the key in it, as expected of a dumpable process", cores)
			case ws.CoreDump() || len(cores) > 0:
				t.Errorf("%s: core dumped %v, files %q (key in one: %v)", tc.name, ws.CoreDump(), cores, withKey)
			default:
				t.Logf("%s: killed by SIGABRT, no core", tc.name)
			}
		})
	}
}
