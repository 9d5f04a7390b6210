//go:build linux

package e2e

import (
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sshmd5/sshmd5/internal/testnet"
)

// readmeMatchBlock returns the Match exec stanza of the README's ssh_config
// ("Client: ssh-md5-proxy"), verbatim, so that the test runs what users
// copy.
func readmeMatchBlock(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var block []string
	for _, line := range strings.Split(string(b), "\n") {
		switch {
		case strings.HasPrefix(line, `Match exec "ssh-md5-proxy --has-key`):
			block = append(block, line)
		case len(block) > 0 && strings.HasPrefix(line, "    "):
			block = append(block, line)
		case len(block) > 0:
			return block
		}
	}
	t.Fatal("README.md has no `Match exec \"ssh-md5-proxy --has-key` block")
	return nil
}

// TestSSHConfig runs the ssh_config of the README ("Client:
// ssh-md5-proxy") with real ssh, its Match block copied from the README
// and ssh-md5-proxy found on $PATH as there. The block must turn the proxy
// on for every host the keyring covers, whichever way the proxy finds the
// key (alias, glob, hostname, address, CIDR, and ProxyJump through a
// covered bastion), and for every keyring error, where the proxy then
// refuses to connect. A capture on the client proves that not one
// unsigned SYN leaves for any of them. A host without a key is dialled
// directly, unsigned, and gets no answer (the capture's control). Once
// with the proxy copying, once with ProxyUseFdpass.
func TestSSHConfig(t *testing.T) {
	l := newLab(t)
	l.startShim()
	l.startPlain() // the "inner" host: reachable only from the bastion
	match := readmeMatchBlock(t)

	// Extra server addresses for the address and CIDR entries, outside
	// what any other entry covers.
	v4 := l.server.a4.As4()
	byAddr := netip.AddrFrom4([4]byte{v4[0], v4[1], v4[2], 201})
	byCIDR := netip.AddrFrom4([4]byte{v4[0], v4[1], v4[2], 210})
	cidr := netip.PrefixFrom(byCIDR, 28).Masked()
	for _, a := range []netip.Addr{byAddr, byCIDR} {
		l.server.ns.Run(t, "ip", "addr", "add", a.String()+"/24", "dev", l.server.ifc)
	}

	kf := filepath.Join(l.dir, "client.key")
	good := filepath.Join(l.dir, "alias-keyring.toml")
	testnet.Keyring{
		Hosts: []testnet.Entry{
			testnet.Host("bastion", kf),
			testnet.Host("*.corp.test", kf),
			{Name: "six", Hostname: l.server.a6.String(), KeyFiles: []string{kf}},
			testnet.Host(byAddr.String(), kf),
			testnet.Host(cidr.String(), kf),
		},
		Peers: []testnet.Entry{testnet.Peer("0.0.0.0/0", "/nonexistent/server.key")}, // the server's: ignored
	}.Write(t, good)

	// One keyring per error. Each must make the Match match, so that the
	// proxy runs, says what is wrong, and sends nothing.
	bad := func(name, text string, mode os.FileMode) string {
		p := filepath.Join(l.dir, name+".toml")
		writeAtomic(t, p, []byte(text))
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	openDir := filepath.Join(l.dir, "open")
	if err := os.Mkdir(openDir, 0o700); err != nil {
		t.Fatal(err)
	}
	inOpen := bad("open/keyring", testnet.Keyring{Hosts: []testnet.Entry{testnet.Host("bastion", kf)}}.String(), 0o600)
	if err := os.Chmod(openDir, 0o777); err != nil {
		t.Fatal(err)
	}
	looseKey := filepath.Join(l.dir, "loose.key")
	writeAtomic(t, looseKey, l.secret)
	if err := os.Chmod(looseKey, 0o644); err != nil {
		t.Fatal(err)
	}
	keyringErrors := []struct{ name, keyring, want string }{
		{"missing keyring", filepath.Join(l.dir, "missing.toml"), "missing.toml does not exist"},
		{"too open", bad("open-mode", testnet.Keyring{Hosts: []testnet.Entry{testnet.Host("bastion", kf)}}.String(), 0o644), "permissions 0644 are too open"},
		{"parse error", bad("syntax", "[hosts.bastion]\nkye = "+string(l.secret)+"\n", 0o600), "syntax error"},
		{"missing key file", bad("nokeyfile", "[hosts.bastion]\nkey_file = \"/nonexistent/bastion.key\"\n", 0o600), "no such file or directory"},
		{"key file too open", bad("loosekey", testnet.Keyring{Hosts: []testnet.Entry{testnet.Host("bastion", looseKey)}}.String(), 0o600), "permissions 0644 are too open"},
		{"folder others can write", inOpen, "is writable by group or others"},
		{"too deep", bad("deep", "hosts = [[[[[{ bastion = { key = \"x\" } }]]]]]\n", 0o600), "nested more than 4 deep"},
	}

	for _, mode := range []struct{ name, fdpass string }{
		{"copy", "no"},
		{"fdpass", "yes"},
	} {
		t.Run(mode.name, func(t *testing.T) {
			var block []string
			for _, line := range match {
				if mode.fdpass == "no" {
					// The README: drop --fdpass and ProxyUseFdpass yes to
					// have the proxy copy instead.
					if strings.Contains(line, "ProxyUseFdpass") {
						continue
					}
					line = strings.Replace(line, "--fdpass ", "", 1)
				}
				block = append(block, line)
			}
			cfg := filepath.Join(l.dir, "ssh_config-"+mode.name)
			port := strconv.Itoa(protectedPort)
			// Host blocks first, as in the README: ssh takes the first
			// value of each option, and Match exec is evaluated in order.
			conf := strings.Join(append(append([]string{
				"Host bastion",
				"    HostName " + l.server.a4.String(),
				"Host *.corp.test",
				"    HostName " + l.server.a4.String(),
				"Host byhostname",
				"    HostName " + l.server.a6.String(),
				"Host byaddr",
				"    HostName " + byAddr.String(),
				"Host bycidr",
				"    HostName " + byCIDR.String(),
				"Host inner",
				"    HostName 127.0.0.1",
				"    Port " + strconv.Itoa(plainPort),
				"    ProxyJump bastion",
				"Host nokey",
				"    HostName " + l.server.a4.String(),
				"    ConnectTimeout 3",
			}, block...),
				"Host *",
				"    Port "+port,
				"    User root",
				"    IdentityFile "+l.sshd.ClientKey,
				"    IdentitiesOnly yes",
				"    IdentityAgent none",
				"    BatchMode yes",
				"    StrictHostKeyChecking yes",
				"    UserKnownHostsFile "+l.sshd.KnownHosts,
				"    GlobalKnownHostsFile /dev/null",
				"    UpdateHostKeys no",
				"    ConnectTimeout 10",
				"    LogLevel ERROR",
			), "\n") + "\n"
			if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
				t.Fatal(err)
			}
			// As the README has it: ssh-md5-proxy on $PATH, the keyring
			// from $SSH_MD5_KEYRING (the default place works the same).
			ssh := func(keyring, alias string, limit time.Duration) (string, string, error) {
				env := []string{"PATH=" + filepath.Dir(l.proxy) + ":" + os.Getenv("PATH"), "SSH_MD5_KEYRING=" + keyring}
				return l.runSSHEnv(l.client.ns, env, []string{"-F", cfg, alias, "echo $SSH_CONNECTION"}, nil, limit)
			}
			// Field 1 of $SSH_CONNECTION is the peer address sshd saw.
			peer := func(out string) string {
				if f := strings.Fields(out); len(f) == 4 {
					return f[0]
				}
				return "(no SSH_CONNECTION in " + strconv.Quote(out) + ")"
			}

			for _, c := range []struct{ alias, wantPeer, why string }{
				{"bastion", l.client.a4.String(), "key by alias"},
				{"web1.corp.test", l.client.a4.String(), "key by glob *.corp.test"},
				{"byhostname", l.client.a6.String(), "key by hostname = (the %h)"},
				{"byaddr", l.client.a4.String(), "key by [hosts.\"ADDR\"]"},
				{"bycidr", l.client.a4.String(), "key by [hosts.\"CIDR\"]"},
				// The jump's own ssh reads the same file (-F is passed
				// on), signs the hop to the bastion, and the bastion's
				// sshd opens the inner connection from its loopback.
				{"inner", "127.0.0.1", "ProxyJump through the protected bastion"},
			} {
				capture := l.client.ns.StartCapture(t, l.client.ifc, protectedPort)
				out, errOut, err := ssh(good, c.alias, 60*time.Second)
				st := capture.Stop(t, l.secret)
				switch {
				case err != nil:
					t.Errorf("ssh %s (%s): %v\n%s", c.alias, c.why, err, errOut)
				case peer(out) != c.wantPeer:
					t.Errorf("ssh %s (%s): sshd saw the peer as %s, want %s", c.alias, c.why, peer(out), c.wantPeer)
				case st.UnsignedSYNs != 0 || st.Unsigned != 0 || st.Valid == 0:
					t.Errorf("ssh %s (%s): capture %v; want every segment signed", c.alias, c.why, st)
				default:
					t.Logf("ssh %s (%s): logged in, sshd saw %s; capture: %v", c.alias, c.why, peer(out), st)
				}
			}

			for _, e := range keyringErrors {
				capture := l.client.ns.StartCapture(t, l.client.ifc, protectedPort)
				_, errOut, err := ssh(e.keyring, "bastion", 30*time.Second)
				st := capture.Stop(t, nil)
				switch {
				case err == nil:
					t.Errorf("keyring error %q: ssh bastion logged in", e.name)
				case !strings.Contains(errOut, "ssh-md5-proxy: ") || !strings.Contains(errOut, e.want):
					t.Errorf("keyring error %q: ssh: %v: %q; want the proxy's message with %q", e.name, err, strings.TrimSpace(errOut), e.want)
				case st.SYNs != 0 || st.Segments != 0:
					t.Errorf("keyring error %q: capture %v; want nothing sent", e.name, st)
				default:
					t.Logf("keyring error %q: Match matched, the proxy refused, nothing sent: %q", e.name, firstLine(errOut))
				}
				if strings.Contains(errOut, string(l.secret)) {
					t.Errorf("keyring error %q: ssh's output shows the key", e.name)
				}
			}

			// No key: Match exec does not match, ssh dials the
			// protected port itself, unsigned, and the kernel drops
			// the SYN. The capture sees it: it would see one above.
			capture := l.client.ns.StartCapture(t, l.client.ifc, protectedPort)
			before := l.server.ns.MD5Counters(t)
			_, errOut, err := ssh(good, "nokey", 30*time.Second)
			d := l.server.ns.MD5Counters(t).Sub(before)
			st := capture.Stop(t, nil)
			switch {
			case err == nil:
				t.Errorf("ssh nokey logged in, unsigned, to the protected port")
			case !strings.Contains(errOut, "timed out"):
				t.Errorf("ssh nokey: %v: %q; want a connect timeout (no answer at all)", err, strings.TrimSpace(errOut))
			case d.NotFound == 0 || st.UnsignedSYNs == 0:
				t.Errorf("ssh nokey timed out but the server's TCPMD5NotFound grew by %d and the capture has %d unsigned SYNs: was the SYN dropped for another reason?", d.NotFound, st.UnsignedSYNs)
			default:
				t.Logf("ssh nokey: %q; server TCPMD5NotFound +%d; capture: %v", strings.TrimSpace(errOut), d.NotFound, st)
			}
			if strings.Contains(l.shim.Log(), "closed unsigned connection") {
				t.Errorf("sshd-md5-socket logged an unsigned connection:\n%s", l.shim.Log())
			}
		})
	}
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return l
}
