//go:build linux

package testnet

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/sshmd5/sshmd5/internal/keyring"
)

// TestKeyringParses: what Keyring writes is a keyring the real parser
// takes, names quoted (a glob, a prefix, an IPv6 address), keys inline or
// from one or more files, the file mode 0600.
func TestKeyringParses(t *testing.T) {
	dir := t.TempDir()
	kf1, kf2 := filepath.Join(dir, "a key"), filepath.Join(dir, "b.key")
	WriteFile(t, kf1, "SECRET-one")
	WriteFile(t, kf2, "SECRET-two")
	kr := Keyring{
		Peers: append(Both(kf1), Entry{Name: "10.0.0.1/32", Key: []byte(`SECRET-"quoted"`), Interface: "veth0"}),
		Hosts: []Entry{Host("*.corp.test", kf1, kf2), {Name: "six", Hostname: "fd00::1", KeyFiles: []string{kf2}}, Host("fd00::2", kf1)},
	}
	path := filepath.Join(dir, "keyring.toml")
	kr.Write(t, path)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}
	got, err := keyring.Load(path, keyring.Both)
	if err != nil {
		t.Fatalf("the parser refuses what Keyring wrote: %v\n%s", err, kr)
	}
	if len(got.Peers) != 3 || len(got.Hosts) != 3 {
		t.Fatalf("parsed %d peers and %d hosts, want 3 and 3:\n%s", len(got.Peers), len(got.Hosts), kr)
	}
}

func TestListening(t *testing.T) {
	text := `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:08AE 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000 100 0 0 10 0
   1: 0100007F:1F90 0100007F:08AF 01 00000000:00000000 00:00000000 00000000     0        0 2 1 0000000000000000 20 4 30 10 -1
`
	for port, want := range map[int]bool{2222: true, 8080: false, 2223: false, 174: false} {
		if got := listening(text, fmt.Sprintf(":%04X ", port)); got != want {
			t.Errorf("listening on %d = %v, want %v", port, got, want)
		}
	}
}
