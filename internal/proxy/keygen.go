//go:build linux

package proxy

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/sshmd5/sshmd5/internal/fingerprint"
)

// KeyBytes is how many random bytes a generated key holds: 256 bits,
// written as 43 characters of unpadded base64url, well under the kernel's
// 80-byte limit and safe to paste anywhere.
const KeyBytes = 32

// Keygen writes a new random key to path, which must not exist yet (mode
// 0600), and returns the keyring snippets that use it, with alias as the
// client's [hosts] entry. The key itself is never returned.
func Keygen(path, alias string) (string, error) {
	raw := make([]byte, KeyBytes)
	if _, err := rand.Read(raw); err != nil {
		return "", fmt.Errorf("keygen: reading random bytes: %w", err)
	}
	key := make([]byte, base64.RawURLEncoding.EncodedLen(len(raw))+1)
	base64.RawURLEncoding.Encode(key, raw)
	key[len(key)-1] = '\n'
	clear(raw)
	defer clear(key)
	// What the keyring reads: the file less its trailing newline.
	fp := fingerprint.Of(key[:len(key)-1])

	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		if errors.Is(err, fs.ErrExist) {
			return "", fmt.Errorf("keygen: %s already exists; not overwriting a key that may be in use: pass another -o FILE, or remove it first", path)
		}
		if dir := filepath.Dir(path); errors.Is(err, fs.ErrNotExist) && !exists(dir) {
			return "", fmt.Errorf("keygen: creating %s: folder %s does not exist; create it with mkdir -m 0700 %s", path, dir, shellQuote(dir))
		}
		return "", fmt.Errorf("keygen: creating %s: %w", path, err)
	}
	// umask may have taken bits away, never added them; make sure anyway.
	err = f.Chmod(0o600)
	if err == nil {
		_, err = f.Write(key)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return "", fmt.Errorf("keygen: writing %s: %w (the file was removed)", path, err)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		abs = path
	}
	return Snippets(abs, alias, fp), nil
}

// ServerKeyDir is where keygen's server snippet says to put the key: a
// path of the server's, not the client's.
const ServerKeyDir = "/etc/ssh/md5"

// Snippets are the keyring entries for a key in keyFile, for the client
// (alias) and for the server (every peer), which reads its copy from
// ServerKeyDir, with the key's fingerprint.
func Snippets(keyFile, alias, fp string) string {
	server := ServerKeyDir + "/" + filepath.Base(keyFile)
	return fmt.Sprintf(`# Wrote a new key to %[1]s (mode 0600).
# Fingerprint: %[7]s
# (sshd-md5-socket check and status and ssh-md5-proxy probe show the same
# line where this key is in use: compare them, never the key.)

# Client: ~/.ssh/md5-keyring.toml (name the entry after the ssh Host alias)
[hosts.%[2]s]
key_file = %[3]s

# Server: copy the key over a secure channel to %[4]s, mode 0600,
# in a folder made with: install -d -m 0700 %[5]s
# then add to /etc/ssh/md5-keyring.toml:
[peers."0.0.0.0/0"]
key_file = %[6]s

[peers."::/0"]
key_file = %[6]s
`, keyFile, TOMLKey(alias), strconv.Quote(keyFile), server, ServerKeyDir, strconv.Quote(server), fp)
}

// DefaultAlias is keygen's [hosts] entry name when -n is not given: the
// key file's name without its extension (myserver for md5/myserver.key),
// or NAME, to be edited, when that is empty.
func DefaultAlias(keyFile string) string {
	base := filepath.Base(keyFile)
	if ext := filepath.Ext(base); ext != base {
		base = strings.TrimSuffix(base, ext)
	}
	if base == "" || base == "." || base == "/" {
		return "NAME"
	}
	return base
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// shellQuote quotes p for a shell command line when it needs it.
func shellQuote(p string) string {
	if p != "" && strings.Trim(p, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/._-+~") == "" {
		return p
	}
	return "'" + strings.ReplaceAll(p, "'", `'\''`) + "'"
}

// TOMLKey writes a table name the way the keyring needs it: bare if it
// can be, quoted otherwise (addresses, globs, dotted names).
func TOMLKey(name string) string {
	bare := name != ""
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			bare = false
			break
		}
	}
	if bare {
		return name
	}
	return strconv.Quote(name)
}
