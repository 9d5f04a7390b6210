//go:build linux

package shim_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sshmd5/sshmd5/internal/testnet"
)

// TestCheckAgreesWithShim: `sshd-md5-socket check` says "ok" exactly when
// the shim, given the same keyring and -l, goes on to serve, and when
// either refuses both give the same reason. A table of keyrings, good and
// bad, each run through both binaries for real.
func TestCheckAgreesWithShim(t *testing.T) {
	e := newEnv(t)
	v4 := e.link.AddrA4
	v6 := e.link.AddrA6
	key := "SECRET-agree-" + strings.Repeat("k", 8)
	dir := e.dir
	keyFile := filepath.Join(dir, "good.key")
	loose := filepath.Join(dir, "loose.key")
	e.writeFile(keyFile, key)
	e.writeFile(loose, key)
	os.Chmod(loose, 0o644)
	both := testnet.Keyring{Peers: testnet.Both(keyFile)}.String()
	only4 := testnet.Keyring{Peers: []testnet.Entry{testnet.Peer("0.0.0.0/0", keyFile)}}.String()
	only6 := testnet.Keyring{Peers: []testnet.Entry{testnet.Peer("::/0", keyFile)}}.String()
	dual := fmt.Sprintf("[::]:%d", port)
	for _, c := range []struct {
		name, keyring, listen string
		ok                    bool
		reason                string // in both outputs when they refuse
	}{
		{"both families, dual-stack", both, dual, true, ""},
		{"both families, IPv4 only", both, hostPort(v4, port), true, ""},
		{"both families, one IPv6 address", both, hostPort(v6, port), true, ""},
		{"IPv4 key, IPv4 listener", only4, hostPort(v4, port), true, ""},
		{"IPv6 key, IPv6 listener", only6, hostPort(v6, port), true, ""},
		{"IPv4 key, dual-stack", only4, dual, false, "no key covers ::/0"},
		{"IPv6 key, dual-stack", only6, dual, false, "no key covers 0.0.0.0/0"},
		{"IPv6 key, IPv4 listener", only6, hostPort(v4, port), false, "no key covers 0.0.0.0/0"},
		{"specific prefix only", "[peers.\"10.0.0.0/8\"]\nkey = \"abc\"\n", hostPort(v4, port), false, "no key covers 0.0.0.0/0"},
		{"client entry with a missing key file", both + "[hosts.elsewhere]\nkey_file = \"/nonexistent/x.key\"\n", dual, true, ""},
		{"no [peers]", "[hosts.elsewhere]\nkey = \"abc\"\n", dual, false, "has no [peers]"},
		{"syntax error", "[peers.\"0.0.0.0/0\"\nkey = \"abc\"\n", dual, false, "syntax error"},
		{"missing key file", testnet.Keyring{Peers: []testnet.Entry{testnet.Peer("0.0.0.0/0", filepath.Join(dir, "gone.key"))}}.String(), hostPort(v4, port), false, "gone.key: no such file or directory"},
		{"key file others can read", testnet.Keyring{Peers: []testnet.Entry{testnet.Peer("0.0.0.0/0", loose)}}.String(), hostPort(v4, port), false, "permissions 0644 are too open"},
		{"key too long", "[peers.\"0.0.0.0/0\"]\nkey = \"" + strings.Repeat("x", 81) + "\"\n", hostPort(v4, port), false, "81 bytes"},
		{"unknown field", "[peers.\"0.0.0.0/0\"]\nkey = \"abc\"\nkye = \"abc\"\n", hostPort(v4, port), false, `unknown field "kye"`},
		{"both key and key_file", fmt.Sprintf("[peers.\"0.0.0.0/0\"]\nkey = \"abc\"\nkey_file = %q\n", keyFile), hostPort(v4, port), false, "key_file"},
		{"interface that is not a VRF", "[peers.\"0.0.0.0/0\"]\nkey = \"abc\"\n[peers.\"10.0.0.0/8\"]\nkey = \"abd\"\ninterface = \"lo\"\n", hostPort(v4, port), false, "is not an L3 master device (VRF)"},
		{"interface that does not exist", "[peers.\"0.0.0.0/0\"]\nkey = \"abc\"\n[peers.\"10.0.0.0/8\"]\nkey = \"abd\"\ninterface = \"nosuch0\"\n", hostPort(v4, port), false, "nosuch0"},
		{"nested too deep", "[peers.\"0.0.0.0/0\"]\nkey = \"abc\"\nx = [[[[[[1]]]]]]\n", hostPort(v4, port), false, "nested"},
	} {
		t.Run(c.name, func(t *testing.T) {
			kr := filepath.Join(dir, strings.ReplaceAll(c.name, " ", "_")+".toml")
			e.writeFile(kr, c.keyring)
			chk := e.server.Cmd(e.shim, "check", "-k", kr, "-l", c.listen)
			out, err := chk.CombinedOutput()
			checkOK := err == nil
			p := e.start(nil, e.shim, "-k", kr, "-l", c.listen, "--", "/bin/cat")
			shimOK := false
			for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
				if strings.Contains(p.Log(), "serving") {
					shimOK = true
					break
				}
				select {
				case <-p.Done:
				default:
					if time.Now().Before(deadline) {
						continue
					}
					t.Fatalf("the shim neither served nor exited within 10s:\n%s", p.Log())
				}
				break
			}
			p.Cmd.Process.Kill()
			<-p.Done
			if checkOK != shimOK || checkOK != c.ok {
				t.Fatalf("check ok %v, shim served %v, want both %v\ncheck:\n%s\nshim:\n%s", checkOK, shimOK, c.ok, out, p.Log())
			}
			if c.ok {
				return
			}
			if co, so := string(out), p.Log(); !strings.Contains(co, c.reason) || !strings.Contains(so, c.reason) {
				t.Errorf("want %q from both\ncheck:\n%s\nshim:\n%s", c.reason, co, so)
			}
			if strings.Contains(string(out), key) || strings.Contains(p.Log(), key) {
				t.Errorf("a key appears in the output")
			}
		})
	}
}
