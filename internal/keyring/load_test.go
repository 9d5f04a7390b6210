package keyring

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func writeFile(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	// Explicitly, because WriteFile's mode is filtered by the umask.
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	kr := filepath.Join(dir, "k.toml")
	writeFile(t, kr, "[hosts.a]\nkey_file = \"md5/a.key\"\n[peers.\"10.0.0.0/8\"]\nkey = \"SECRETxyzzy\"\n", 0o600)
	if err := os.Mkdir(filepath.Join(dir, "md5"), 0o700); err != nil {
		t.Fatal(err)
	}
	keyPath := filepath.Join(dir, "md5", "a.key")
	writeFile(t, keyPath, secret+"\n", 0o400)
	k, err := Load(kr)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(k.Hosts[0].Secret, []byte(secret)) || k.Hosts[0].Source != "key_file "+keyPath {
		t.Errorf("host: secret differs or source %q", k.Hosts[0].Source)
	}

	// A symlink is judged by its target.
	link := filepath.Join(dir, "link.toml")
	if err := os.Symlink(kr, link); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(link); err != nil {
		t.Errorf("symlink to a good keyring: %v", err)
	}

	// The key file's permissions are checked too.
	for _, mode := range []os.FileMode{0o640, 0o604} {
		if err := os.Chmod(keyPath, mode); err != nil {
			t.Fatal(err)
		}
		_, err := Load(kr)
		noLeak(t, err)
		want := kr + ":1: hosts.a: key_file " + keyPath + ": permissions " + octal(mode) + " are too open: the file holds secrets; run chmod 600 " + keyPath
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("key file %s: err = %v, want %q", octal(mode), err, want)
		}
	}
}

func octal(m os.FileMode) string {
	const digits = "01234567"
	p := m.Perm()
	return "0" + string([]byte{digits[p>>6&7], digits[p>>3&7], digits[p&7]})
}

func TestLoadPermissions(t *testing.T) {
	dir := t.TempDir()
	const text = "[peers.\"10.0.0.0/8\"]\nkey = \"SECRETxyzzy\"\n"
	for _, mode := range []os.FileMode{0o644, 0o640, 0o604, 0o620, 0o602, 0o660, 0o700 | 0o007} {
		p := filepath.Join(dir, "k"+octal(mode)+".toml")
		writeFile(t, p, text, mode)
		_, err := Load(p)
		noLeak(t, err)
		want := "keyring " + p + ": permissions " + octal(mode) + " are too open: the file holds secrets; run chmod 600 " + p
		if err == nil || err.Error() != want {
			t.Errorf("mode %s: err = %v, want %q", octal(mode), err, want)
		}
	}
	for _, mode := range []os.FileMode{0o600, 0o400} {
		p := filepath.Join(dir, "ok"+octal(mode)+".toml")
		writeFile(t, p, text, mode)
		if _, err := Load(p); err != nil {
			t.Errorf("mode %s: %v", octal(mode), err)
		}
	}

	_, err := Load(dir)
	if err == nil || !strings.Contains(err.Error(), "keyring "+dir+": is a directory") {
		t.Errorf("directory: err = %v", err)
	}

	_, err = Load(filepath.Join(dir, "missing.toml"))
	if err == nil || !strings.Contains(err.Error(), "missing.toml: no such file or directory; create it (chmod 600) or name another file with -k") {
		t.Errorf("missing: err = %v", err)
	}
}

func TestLoadOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to chown")
	}
	p := filepath.Join(t.TempDir(), "k.toml")
	writeFile(t, p, "", 0o600)
	if err := os.Chown(p, 12345, 12345); err != nil {
		t.Fatal(err)
	}
	_, err := Load(p)
	want := "keyring " + p + ": is owned by uid 12345, not you (uid 0) or root; run chown 0 " + p
	if err == nil || err.Error() != want {
		t.Errorf("err = %v, want %q", err, want)
	}
}

func TestLoadFIFO(t *testing.T) {
	p := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(p, 0o600); err != nil {
		t.Skip(err)
	}
	_, err := Load(p)
	if err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("err = %v", err)
	}
}

// A keyring that cannot be opened gets the fix with the reason: root never
// meets EACCES, so the hint is checked on its own.
func TestOpenHint(t *testing.T) {
	for _, tt := range []struct {
		err  error
		want string
	}{
		{fs.ErrNotExist, "; create it"},
		{fs.ErrPermission, "; run as the file's owner or root"},
		{errors.New("other"), ""},
	} {
		if got := openHint(tt.err, "create it"); got != tt.want {
			t.Errorf("openHint(%v) = %q, want %q", tt.err, got, tt.want)
		}
	}
}
