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

// TestKeyringAO: ao lists as the parser takes them, server and client
// side, the IDs mirrored, keys from a file or inline.
func TestKeyringAO(t *testing.T) {
	dir := t.TempDir()
	kf := filepath.Join(dir, "alice.key")
	WriteFile(t, kf, "SECRET-alice")
	alice := AOItem{Name: "alice", SendID: 101, RecvID: 1, KeyFile: kf}
	bob := AOItem{Name: "bob", SendID: 102, RecvID: 2, Key: []byte("SECRET-bob"), Algorithm: "cmac(aes128)"}
	kr := Keyring{
		Peers: []Entry{AOPeer("0.0.0.0/0", alice, bob)},
		Hosts: []Entry{AOHost("*", bob.Mirror(), alice.Mirror())},
	}
	want := `[peers."0.0.0.0/0"]
ao = [
  { name = "alice", send_id = 101, recv_id = 1, key_file = "` + kf + `" },
  { name = "bob", send_id = 102, recv_id = 2, key = "SECRET-bob", algorithm = "cmac(aes128)" },
]
[hosts."*"]
ao = [
  { name = "bob", send_id = 2, recv_id = 102, key = "SECRET-bob", algorithm = "cmac(aes128)" },
  { name = "alice", send_id = 1, recv_id = 101, key_file = "` + kf + `" },
]
`
	if got := kr.String(); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	path := filepath.Join(dir, "keyring.toml")
	kr.Write(t, path)
	got, err := keyring.Load(path, keyring.Both)
	if err != nil {
		t.Fatalf("the parser refuses what Keyring wrote: %v\n%s", err, kr)
	}
	if len(got.Peers) != 1 || len(got.Peers[0].AO) != 2 || len(got.Hosts) != 1 || len(got.Hosts[0].Keys) != 2 {
		t.Fatalf("parsed %+v, want one peers entry with 2 TCP-AO keys and one hosts entry with 2", got)
	}
	if p := got.Peers[0].AO[0]; p.Name != "alice" || p.SendID != 101 || p.RecvID != 1 {
		t.Errorf("peers: first key %+v, want alice (send_id 101, recv_id 1)", p.AO)
	}
	if h := got.Hosts[0].Keys[1]; h.AO == nil || h.AO.SendID != 1 || h.AO.RecvID != 101 || string(h.Secret) != "SECRET-alice" {
		t.Errorf("hosts: second key %+v, want alice's mirrored (send_id 1, recv_id 101) from %s", h.AO, kf)
	}
}
