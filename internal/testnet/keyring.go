package testnet

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

// Keyring is a keyring file as a test writes it: [peers."…"] tables for
// sshd-md5-socket, [hosts."…"] tables for ssh-md5-proxy. Tests that feed
// the parser bad input write their text by hand; this is for good ones.
type Keyring struct {
	Peers, Hosts []Entry
}

// Entry is one table. Exactly one of Key and KeyFiles is set; two or more
// key files are written as a list (the proxy tries each, for rotation).
type Entry struct {
	Name      string
	Hostname  string // hosts only: the address to dial for Name
	Key       []byte
	KeyFiles  []string
	Interface string
}

// Peer returns the entry for prefix signed with the key in files.
func Peer(prefix string, files ...string) Entry { return Entry{Name: prefix, KeyFiles: files} }

// Host returns the entry for host signed with the key in files.
func Host(host string, files ...string) Entry { return Entry{Name: host, KeyFiles: files} }

// Both returns the peers entries for every IPv4 and every IPv6 address.
func Both(files ...string) []Entry {
	return []Entry{Peer("0.0.0.0/0", files...), Peer("::/0", files...)}
}

// String returns the TOML text, names and values quoted.
func (k Keyring) String() string {
	var b strings.Builder
	for _, e := range k.Peers {
		e.write(&b, "peers")
	}
	for _, e := range k.Hosts {
		e.write(&b, "hosts")
	}
	return b.String()
}

func (e Entry) write(b *strings.Builder, table string) {
	fmt.Fprintf(b, "[%s.%q]\n", table, e.Name)
	if e.Hostname != "" {
		fmt.Fprintf(b, "hostname = %q\n", e.Hostname)
	}
	switch {
	case e.Key != nil:
		fmt.Fprintf(b, "key = %q\n", e.Key)
	case len(e.KeyFiles) == 1:
		fmt.Fprintf(b, "key_file = %q\n", e.KeyFiles[0])
	default:
		q := make([]string, len(e.KeyFiles))
		for i, f := range e.KeyFiles {
			q[i] = fmt.Sprintf("%q", f)
		}
		fmt.Fprintf(b, "key_file = [%s]\n", strings.Join(q, ", "))
	}
	if e.Interface != "" {
		fmt.Fprintf(b, "interface = %q\n", e.Interface)
	}
}

// Write (re)writes the keyring at path, mode 0600, atomically as an
// operator's editor or config management would: a server reloading it
// never reads half a file.
func (k Keyring) Write(t testing.TB, path string) {
	t.Helper()
	WriteFile(t, path, k.String())
}

// WriteFile writes text to path with mode 0600 by renaming a temporary
// file over it.
func WriteFile(t testing.TB, path, text string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}
