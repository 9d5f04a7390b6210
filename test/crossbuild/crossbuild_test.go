// Package crossbuild proves that the module builds for systems without
// TCP-MD5 and that the commands built there say so instead of running.
package crossbuild

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sshmd5/sshmd5/internal/tcpsig"
)

func TestOtherSystems(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the cross builds need the go command: %v", err)
	}
	root := moduleRoot(t, goBin)
	for _, goos := range []string{"darwin", "freebsd", "windows"} {
		t.Run(goos, func(t *testing.T) {
			out := t.TempDir()
			// -o DIR writes the commands there and builds every other
			// package too; vet also compiles the tests for that system.
			for _, args := range [][]string{{"build", "-o", out, "./..."}, {"vet", "./..."}} {
				cmd := exec.Command(goBin, args...)
				cmd.Dir = root
				cmd.Env = append(os.Environ(), "GOOS="+goos, "GOARCH=amd64", "CGO_ENABLED=0")
				if o, err := cmd.CombinedOutput(); err != nil {
					t.Fatalf("GOOS=%s go %s: %v\n%s", goos, strings.Join(args, " "), err, o)
				}
			}
			// The binary cannot run here (internal/nolinux tests what it
			// prints); that it carries the message and not the Linux
			// command's usage shows the stub was built.
			for _, name := range []string{"ssh-md5-proxy", "sshd-md5-socket"} {
				file := name
				if goos == "windows" {
					file += ".exe"
				}
				b, err := os.ReadFile(filepath.Join(out, file))
				if err != nil {
					t.Fatalf("GOOS=%s: %v", goos, err)
				}
				if !bytes.Contains(b, []byte(tcpsig.ErrNeedsLinux.Error())) {
					t.Errorf("GOOS=%s %s does not carry %q", goos, file, tcpsig.ErrNeedsLinux)
				}
				if bytes.Contains(bytes.ToLower(b), []byte("usage: "+name)) {
					t.Errorf("GOOS=%s %s carries the Linux command's usage text: not the stub", goos, file)
				}
			}
		})
	}
}

func moduleRoot(t *testing.T, goBin string) string {
	t.Helper()
	o, err := exec.Command(goBin, "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("go env GOMOD: %v", err)
	}
	mod := strings.TrimSpace(string(o))
	if mod == "" || mod == os.DevNull {
		t.Fatalf("go env GOMOD: not inside the module")
	}
	return filepath.Dir(mod)
}
