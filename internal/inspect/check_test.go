//go:build linux

package inspect

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sshmd5/sshmd5/internal/fingerprint"
	"github.com/sshmd5/sshmd5/internal/listenaddr"
	"github.com/sshmd5/sshmd5/internal/plan"
	"github.com/sshmd5/sshmd5/internal/tcpsig/md5"
	"github.com/sshmd5/sshmd5/internal/testnet"
)

// TestCheckLimits: too little option memory fails with the fix, more keys
// than sock_diag reports gets a note; no secret is printed.
func TestCheckLimits(t *testing.T) {
	dir := t.TempDir()
	ring := testnet.Keyring{Peers: []testnet.Entry{{Name: "0.0.0.0/0", Key: []byte("SECRET-all")}}}
	n := md5.MaxReadableKeys + 10
	for i := range n {
		ring.Peers = append(ring.Peers, testnet.Entry{Name: fmt.Sprintf("10.%d.%d.0/24", i/256, i%256), Key: fmt.Appendf(nil, "SECRET-%d", i)})
	}
	kr := filepath.Join(dir, "kr.toml")
	ring.Write(t, kr)
	optmem := filepath.Join(dir, "optmem_max")
	if err := os.WriteFile(optmem, []byte("20480\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	old := OptmemMaxPath
	OptmemMaxPath = optmem
	defer func() { OptmemMaxPath = old }()

	var out bytes.Buffer
	err := Check(&out, kr, []string{"0.0.0.0:22"})
	if err == nil {
		t.Fatalf("Check passed with %d keys and optmem_max 20480:\n%s", n+1, out.String())
	}
	keys := n + 1
	for _, want := range []string{
		fmt.Sprintf("listener 0.0.0.0:22 (IPv4 peers): %d keys (IPv4 %d)", keys, keys),
		fmt.Sprintf("key memory: about %d bytes > net.core.optmem_max 20480: TOO SMALL", keys*KeyMemEstimate),
		fmt.Sprintf("read-back: %d keys > %d that sock_diag can report: reloads compare with what the shim installed", keys, md5.MaxReadableKeys),
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	for _, want := range []string{"sysctl -w net.core.optmem_max=196608"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
	if strings.Contains(out.String()+err.Error(), "SECRET") {
		t.Errorf("a secret was printed")
	}
	if strings.Contains(out.String(), "ok: sshd-md5-socket would start") {
		t.Errorf("says ok despite the errors")
	}
}

func TestProcNetAddr(t *testing.T) {
	for in, want := range map[string]string{
		"0100007F:0016":                         "127.0.0.1:22",
		"00000000:08AE":                         "0.0.0.0:2222",
		"00000000000000000000000000000000:0016": "[::]:22",
		"00000000000000000000000001000000:08AF": "[::1]:2223",
		"0000000000000000FFFF00000100007F:0016": "[::ffff:127.0.0.1]:22",
	} {
		if got := procNetAddr(in).String(); got != want {
			t.Errorf("procNetAddr(%q) = %s, want %s", in, got, want)
		}
	}
	if procNetAddr("zz:1").IsValid() {
		t.Error("procNetAddr accepted garbage")
	}
}

// Only a mask (a link to /dev/null in /etc or /run) keeps Debian's units
// from putting plain sshd back; disabled is not enough.
func TestUnmaskedSSH(t *testing.T) {
	root := t.TempDir()
	if w := UnmaskedSSH(root); len(w) != 0 {
		t.Errorf("no ssh units at all: %q", w)
	}
	for _, d := range []string{"lib/systemd/system", "etc/systemd/system", "run/systemd/system"} {
		os.MkdirAll(filepath.Join(root, d), 0o755)
	}
	os.WriteFile(filepath.Join(root, "lib/systemd/system/ssh.service"), nil, 0o644)
	os.WriteFile(filepath.Join(root, "lib/systemd/system/ssh.socket"), nil, 0o644)
	if w := UnmaskedSSH(root); len(w) != 2 || !strings.Contains(w[0], "ssh.service is not masked") || !strings.Contains(w[0], "systemctl mask ssh.service ssh.socket") {
		t.Errorf("installed, not masked: %q", w)
	}
	os.Symlink("/dev/null", filepath.Join(root, "etc/systemd/system/ssh.service"))
	os.Symlink("/dev/null", filepath.Join(root, "run/systemd/system/ssh.socket"))
	if w := UnmaskedSSH(root); len(w) != 0 {
		t.Errorf("both masked: %q", w)
	}
}

// TestCheckAO: TCP-AO keys are listed one a line without their secret,
// and check never says ok for a listener of a TCP-AO family that the plan
// gives another backend.
func TestCheckAO(t *testing.T) {
	dir := t.TempDir()
	kr := filepath.Join(dir, "kr.toml")
	testnet.WriteFile(t, kr, `[peers."0.0.0.0/0"]
ao = [
  { name = "alice", send_id = 101, recv_id = 1, key = "SECRET-alice" },
  { name = "bob", send_id = 102, recv_id = 2, key = "SECRET-bob", algorithm = "hmac(sha1)" },
]
`)
	var out bytes.Buffer
	err := Check(&out, kr, []string{"0.0.0.0:22"})
	for _, want := range []string{
		"keyring " + kr + ": 1 [peers] entries, 2 TCP-AO keys\n",
		"  IPv4  0.0.0.0/0             any interface         " + fingerprint.OfAO([]byte("SECRET-alice")) + "  alice: send_id 101, recv_id 1, hmac(sha256), 12-byte MAC  inline key (ao item 1 of 2)\n",
		"  IPv4  0.0.0.0/0             any interface         " + fingerprint.OfAO([]byte("SECRET-bob")) + "  bob: send_id 102, recv_id 2, hmac(sha1), 12-byte MAC  inline key (ao item 2 of 2)\n",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "SECRET") || err != nil && strings.Contains(err.Error(), "SECRET") {
		t.Error("a secret was printed")
	}
	pl, perr := plan.Load(kr)
	if perr != nil {
		t.Fatal(perr)
	}
	s, _ := listenaddr.Parse([]string{"0.0.0.0:22"})
	if b := pl.For(s[0].Socket).Backend; b == nil || b.Name() != "TCP-AO" {
		want := "listener 0.0.0.0:22: its IPv4 peers have TCP-AO keys (keyring " + kr + ":1: peers.\"0.0.0.0/0\") but it would get"
		if err == nil || !strings.Contains(err.Error(), want) || strings.Contains(out.String(), "ok: sshd-md5-socket would start") {
			t.Errorf("plan gives %v to a TCP-AO family; err = %v, want %q and no ok:\n%s", b, err, want, out.String())
		}
	}
}
