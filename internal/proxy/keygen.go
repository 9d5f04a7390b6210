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
	"slices"
	"strconv"
	"strings"

	"github.com/sshmd5/sshmd5/internal/fingerprint"
	"github.com/sshmd5/sshmd5/internal/keyring"
	"github.com/sshmd5/sshmd5/internal/tcpsig"
)

// KeyBytes is how many random bytes a generated key holds: 256 bits,
// written as 43 characters of unpadded base64url, well under the kernel's
// 80-byte limit and safe to paste anywhere.
const KeyBytes = 32

// Keygen writes a new random key to path, which must not exist yet (mode
// 0600), and returns the keyring snippets that use it, with alias as the
// client's [hosts] entry. The key itself is never returned.
func Keygen(path, alias string) (string, error) {
	abs, fp, err := writeNewKey(path, fingerprint.Of)
	if err != nil {
		return "", err
	}
	return Snippets(abs, alias, fp), nil
}

// KeygenAO is Keygen for a TCP-AO key: ao holds the user's name, the IDs
// as the client uses them and the algorithm ("" for the default).
func KeygenAO(path, alias string, ao tcpsig.AO) (string, error) {
	// Checked before a file is made: a key nobody can use is litter.
	if err := keyring.CheckAOName(ao.Name); err != nil {
		return "", fmt.Errorf("keygen: --name: %w", err)
	}
	if ao.Algorithm != "" && !slices.Contains(tcpsig.AOAlgorithms, ao.Algorithm) {
		return "", fmt.Errorf("keygen: --algorithm %q: not one the kernel offers; use %s", ao.Algorithm, strings.Join(tcpsig.AOAlgorithms, ", "))
	}
	abs, fp, err := writeNewKey(path, fingerprint.OfAO)
	if err != nil {
		return "", err
	}
	return SnippetsAO(abs, alias, fp, ao), nil
}

// writeNewKey writes a new random key to path, which must not exist yet,
// and returns path made absolute and the key's fingerprint by fp.
func writeNewKey(path string, fp func([]byte) string) (abs, fingerprint string, err error) {
	raw := make([]byte, KeyBytes)
	if _, err := rand.Read(raw); err != nil {
		return "", "", fmt.Errorf("keygen: reading random bytes: %w", err)
	}
	key := make([]byte, base64.RawURLEncoding.EncodedLen(len(raw))+1)
	base64.RawURLEncoding.Encode(key, raw)
	key[len(key)-1] = '\n'
	clear(raw)
	defer clear(key)
	// What the keyring reads: the file less its trailing newline.
	fingerprint = fp(key[:len(key)-1])

	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		if errors.Is(err, fs.ErrExist) {
			return "", "", fmt.Errorf("keygen: %s already exists; not overwriting a key that may be in use: pass another -o FILE, or remove it first", path)
		}
		if dir := filepath.Dir(path); errors.Is(err, fs.ErrNotExist) && !exists(dir) {
			return "", "", fmt.Errorf("keygen: creating %s: folder %s does not exist; create it with mkdir -m 0700 %s", path, dir, shellQuote(dir))
		}
		return "", "", fmt.Errorf("keygen: creating %s: %w", path, err)
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
		return "", "", fmt.Errorf("keygen: writing %s: %w (the file was removed)", path, err)
	}
	if abs, err = filepath.Abs(path); err != nil {
		abs = path
	}
	return abs, fingerprint, nil
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

// ServerAOKeyDir is where keygen's TCP-AO server snippet says to put the
// key.
const ServerAOKeyDir = "/etc/ssh/ao"

// SnippetsAO are the keyring entries for a TCP-AO key in keyFile: the
// client's [hosts] ao item and the server's [peers] ao item for ao.Name,
// with the IDs mirrored (the client sends ao.SendID, which the server
// receives), and the key's fingerprint.
func SnippetsAO(keyFile, alias, fp string, ao tcpsig.AO) string {
	server := ServerAOKeyDir + "/" + filepath.Base(keyFile)
	alg := ""
	if ao.Algorithm != "" && ao.Algorithm != tcpsig.AODefaultAlgorithm {
		alg = fmt.Sprintf(", algorithm = %q", ao.Algorithm)
	}
	peer := fmt.Sprintf("  { name = %q, send_id = %d, recv_id = %d, key_file = %s%s },", ao.Name, ao.RecvID, ao.SendID, strconv.Quote(server), alg)
	return fmt.Sprintf(`# Wrote a new TCP-AO key for %[8]s to %[1]s (mode 0600).
# Fingerprint: %[6]s
# (sshd-md5-socket check shows the same line for this key: compare them,
# never the key.)

# Client: ~/.ssh/md5-keyring.toml (name the entry after the ssh Host alias)
[hosts.%[2]s]
ao = [{ send_id = %[9]d, recv_id = %[10]d, key_file = %[3]s%[11]s }]

# Server: copy the key over a secure channel to %[4]s, mode 0600,
# in a folder made with: install -d -m 0700 %[5]s
# then add this item to the ao list of each [peers] entry %[8]s may
# connect from (no other key there may have its send_id or recv_id):
[peers."0.0.0.0/0"]
ao = [
%[7]s
]

[peers."::/0"]
ao = [
%[7]s
]
`, keyFile, TOMLKey(alias), strconv.Quote(keyFile), server, ServerAOKeyDir, fp, peer, ao.Name, ao.SendID, ao.RecvID, alg)
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
