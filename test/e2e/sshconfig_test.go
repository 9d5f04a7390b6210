package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestSSHConfig runs the ssh_config of the README ("Client:
// ssh-md5-proxy") with real ssh: one Match exec block turns the proxy on
// for exactly the hosts the keyring has a key for, by alias and by glob;
// a host behind a protected bastion is reached with ProxyJump; a host
// without a key is dialled directly, unsigned, and gets no answer. Once
// with the proxy copying, once with ProxyUseFdpass.
func TestSSHConfig(t *testing.T) {
	l := newLab(t)
	l.startShim()
	l.startPlain() // the "inner" host: reachable only from the bastion
	kf := filepath.Join(l.dir, "client.key")
	keyring := filepath.Join(l.dir, "alias-keyring.toml")
	writeAtomic(t, keyring, []byte(fmt.Sprintf("[hosts.bastion]\nkey_file = %q\n[hosts.\"*.corp.test\"]\nkey_file = %q\n", kf, kf)))

	for _, mode := range []struct{ name, proxyArgs, fdpass string }{
		{"copy", "", "no"},
		{"fdpass", "--fdpass ", "yes"},
	} {
		t.Run(mode.name, func(t *testing.T) {
			cfg := filepath.Join(l.dir, "ssh_config-"+mode.name)
			port := strconv.Itoa(protectedPort)
			// Host blocks first: ssh takes the first value of each
			// option, and Match exec is evaluated in order too.
			conf := strings.Join([]string{
				"Host bastion",
				"    HostName " + l.server.a4.String(),
				"    Port " + port,
				"Host *.corp.test",
				"    HostName " + l.server.a4.String(),
				"    Port " + port,
				"Host inner",
				"    HostName 127.0.0.1",
				"    Port " + strconv.Itoa(plainPort),
				"    ProxyJump bastion",
				"Host nokey",
				"    HostName " + l.server.a4.String(),
				"    Port " + port,
				"    ConnectTimeout 3",
				fmt.Sprintf("Match exec \"%s --has-key -k %s %%n\"", l.proxy, keyring),
				fmt.Sprintf("    ProxyCommand %s %s-k %s -n %%n %%h %%p", l.proxy, mode.proxyArgs, keyring),
				"    ProxyUseFdpass " + mode.fdpass,
				"Host *",
				"    User root",
				"    IdentityFile " + l.sshd.ClientKey,
				"    IdentitiesOnly yes",
				"    IdentityAgent none",
				"    BatchMode yes",
				"    StrictHostKeyChecking yes",
				"    UserKnownHostsFile " + l.sshd.KnownHosts,
				"    GlobalKnownHostsFile /dev/null",
				"    UpdateHostKeys no",
				"    ConnectTimeout 10",
				"    LogLevel ERROR",
			}, "\n") + "\n"
			if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
				t.Fatal(err)
			}
			ssh := func(alias string, limit time.Duration) (string, string, error) {
				return l.runSSH(l.client.ns, []string{"-F", cfg, alias, "echo $SSH_CONNECTION"}, limit)
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
				// The jump's own ssh reads the same file (-F is passed
				// on), signs the hop to the bastion, and the bastion's
				// sshd opens the inner connection from its loopback.
				{"inner", "127.0.0.1", "ProxyJump through the protected bastion"},
			} {
				out, errOut, err := ssh(c.alias, 60*time.Second)
				if err != nil {
					t.Errorf("ssh %s (%s): %v\n%s", c.alias, c.why, err, errOut)
					continue
				}
				if got := peer(out); got != c.wantPeer {
					t.Errorf("ssh %s (%s): sshd saw the peer as %s, want %s", c.alias, c.why, got, c.wantPeer)
				} else {
					t.Logf("ssh %s (%s): logged in, sshd saw %s", c.alias, c.why, got)
				}
			}

			// No key: Match exec does not match, ssh dials the
			// protected port itself, unsigned, and the kernel drops
			// the SYN.
			before := l.server.ns.MD5Counters(t)
			_, errOut, err := ssh("nokey", 30*time.Second)
			d := l.server.ns.MD5Counters(t).Sub(before)
			switch {
			case err == nil:
				t.Errorf("ssh nokey logged in, unsigned, to the protected port")
			case !strings.Contains(errOut, "timed out"):
				t.Errorf("ssh nokey: %v: %q; want a connect timeout (no answer at all)", err, strings.TrimSpace(errOut))
			case d.NotFound == 0:
				t.Errorf("ssh nokey timed out but the server's TCPMD5NotFound did not grow (%+v): was the SYN dropped for another reason?", d)
			default:
				t.Logf("ssh nokey: %q; server TCPMD5NotFound +%d", strings.TrimSpace(errOut), d.NotFound)
			}
			if strings.Contains(l.shim.log(), "closed unsigned connection") {
				t.Errorf("sshd-md5-socket logged an unsigned connection:\n%s", l.shim.log())
			}
		})
	}
}
