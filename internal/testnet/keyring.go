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

// Entry is one table. Exactly one of Key, KeyFiles and AO is set; two or
// more key files are written as a list (the proxy tries each, for
// rotation).
type Entry struct {
	Name      string
	Hostname  string // hosts only: the address to dial for Name
	Key       []byte
	KeyFiles  []string
	Interface string
	// AO makes the entry a TCP-AO one: its ao list, in this order (in
	// [hosts], newest first).
	AO []AOItem
}

// AOItem is one TCP-AO key of an entry's ao list. Exactly one of Key and
// KeyFile is set. Name is required in [peers], optional in [hosts];
// Algorithm "" leaves the keyring's default.
type AOItem struct {
	Name           string
	SendID, RecvID uint8
	KeyFile        string
	Key            []byte
	Algorithm      string
}

// AOPeer returns the [peers] entry for prefix holding the TCP-AO keys
// items.
func AOPeer(prefix string, items ...AOItem) Entry { return Entry{Name: prefix, AO: items} }

// AOHost returns the [hosts] entry for host dialling with the TCP-AO keys
// items, newest first.
func AOHost(host string, items ...AOItem) Entry { return Entry{Name: host, AO: items} }

// Mirror is the item as the other side of the connection holds it: the
// same key with SendID and RecvID swapped (a server's [peers] item
// becomes the client's [hosts] one), the name kept.
func (a AOItem) Mirror() AOItem {
	a.SendID, a.RecvID = a.RecvID, a.SendID
	return a
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
	case e.AO != nil:
		b.WriteString("ao = [\n")
		for _, a := range e.AO {
			a.write(b)
		}
		b.WriteString("]\n")
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

func (a AOItem) write(b *strings.Builder) {
	b.WriteString("  {")
	if a.Name != "" {
		fmt.Fprintf(b, " name = %q,", a.Name)
	}
	fmt.Fprintf(b, " send_id = %d, recv_id = %d, ", a.SendID, a.RecvID)
	if a.Key != nil {
		fmt.Fprintf(b, "key = %q", a.Key)
	} else {
		fmt.Fprintf(b, "key_file = %q", a.KeyFile)
	}
	if a.Algorithm != "" {
		fmt.Fprintf(b, ", algorithm = %q", a.Algorithm)
	}
	b.WriteString(" },\n")
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
