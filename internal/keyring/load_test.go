//go:build unix

package keyring

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
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
	k, err := Load(kr, Both)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(k.Hosts[0].Keys[0].Secret, []byte(secret)) || k.Hosts[0].Keys[0].Source != "key_file "+keyPath {
		t.Errorf("host: secret differs or source %q", k.Hosts[0].Keys[0].Source)
	}

	// A symlink is judged by its target.
	link := filepath.Join(dir, "link.toml")
	if err := os.Symlink(kr, link); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(link, Both); err != nil {
		t.Errorf("symlink to a good keyring: %v", err)
	}

	// The key file's permissions are checked too.
	for _, mode := range []os.FileMode{0o640, 0o604} {
		if err := os.Chmod(keyPath, mode); err != nil {
			t.Fatal(err)
		}
		_, err := Load(kr, Both)
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
		_, err := Load(p, Both)
		noLeak(t, err)
		want := "keyring " + p + ": permissions " + octal(mode) + " are too open: the file holds secrets; run chmod 600 " + p
		if err == nil || err.Error() != want {
			t.Errorf("mode %s: err = %v, want %q", octal(mode), err, want)
		}
	}
	for _, mode := range []os.FileMode{0o600, 0o400} {
		p := filepath.Join(dir, "ok"+octal(mode)+".toml")
		writeFile(t, p, text, mode)
		if _, err := Load(p, Both); err != nil {
			t.Errorf("mode %s: %v", octal(mode), err)
		}
	}

	_, err := Load(dir, Both)
	if err == nil || !strings.Contains(err.Error(), "keyring "+dir+": is a directory") {
		t.Errorf("directory: err = %v", err)
	}

	_, err = Load(filepath.Join(dir, "missing.toml"), Both)
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
	_, err := Load(p, Both)
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
	_, err := Load(p, Both)
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

// TestLoadFolders: a key file or keyring reached through a folder that
// someone else can write is refused, as ssh's StrictModes does, for the
// path given and, through a symlink, for the real file's path.
func TestLoadFolders(t *testing.T) {
	root := t.TempDir()
	mkdir := func(rel string, mode os.FileMode, uid int) string {
		t.Helper()
		p := filepath.Join(root, rel)
		if err := os.Mkdir(p, 0o700); err != nil {
			t.Fatal(err)
		}
		// syscall's, for the raw mode: os.Chmod wants os.ModeSticky.
		if err := syscall.Chmod(p, uint32(mode)); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(p, uid, -1); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := mkdir("good", 0o755, 0)
	open := mkdir("open", 0o777, 0)
	group := mkdir("group", 0o775, 0)
	sticky := mkdir("sticky", 0o1777, 0)
	userSticky := mkdir("usersticky", 0o1777, 4242)
	other := mkdir("other", 0o755, 4242)
	nested := mkdir("open/inner", 0o700, 0)

	for _, d := range []string{good, open, group, sticky, userSticky, other, nested} {
		writeFile(t, filepath.Join(d, "k.key"), secret, 0o600)
		writeFile(t, filepath.Join(d, "k.toml"), "[peers.\"::/0\"]\nkey_file = \"k.key\"\n", 0o600)
	}
	// Symlinks in a good folder to files in bad ones, and the reverse.
	if err := os.Symlink(filepath.Join(open, "k.key"), filepath.Join(good, "to-open.key")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(good, "k.key"), filepath.Join(open, "to-good.key")); err != nil {
		t.Fatal(err)
	}
	ring := func(dir, keyFile string) string {
		p := filepath.Join(good, "ring-"+filepath.Base(dir)+"-"+filepath.Base(keyFile)+".toml")
		writeFile(t, p, "[peers.\"::/0\"]\nkey_file = "+strconv.Quote(filepath.Join(dir, keyFile))+"\n", 0o600)
		return p
	}
	tests := []struct {
		name, keyring string
		want          string // "" = loads
	}{
		{"good folder", filepath.Join(good, "k.toml"), ""},
		{"root's sticky folder", filepath.Join(sticky, "k.toml"), ""},
		{"keyring in a world-writable folder", filepath.Join(open, "k.toml"), "folder " + open + " is writable by group or others (mode 0777), who could replace the file; run chmod go-w " + open},
		{"keyring in a group-writable folder", filepath.Join(group, "k.toml"), "folder " + group + " is writable by group or others (mode 0775)"},
		{"keyring below a world-writable folder", filepath.Join(nested, "k.toml"), "folder " + open + " is writable"},
		{"keyring in someone else's folder", filepath.Join(other, "k.toml"), "folder " + other + " is owned by uid 4242"},
		{"someone else's sticky folder", filepath.Join(userSticky, "k.toml"), "folder " + userSticky + " is owned by uid 4242"},
		{"key file in a world-writable folder", ring(open, "k.key"), "key_file " + filepath.Join(open, "k.key") + ": folder " + open + " is writable"},
		{"symlink to a key in a world-writable folder", ring(good, "to-open.key"), "(a symbolic link to " + filepath.Join(open, "k.key") + ") folder " + open + " is writable"},
		{"symlink in a world-writable folder", ring(open, "to-good.key"), "folder " + open + " is writable"},
		{"key file in root's sticky folder", ring(sticky, "k.key"), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(tt.keyring, Both)
			noLeak(t, err)
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("refused: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("err = %v, want %q", err, tt.want)
			}
		})
	}
}
