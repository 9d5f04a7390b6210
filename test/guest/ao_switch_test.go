//go:build linux

package guest

import (
	"regexp"
	"strings"
	"testing"

	"github.com/sshmd5/sshmd5/internal/tcpsig"
	"github.com/sshmd5/sshmd5/internal/testnet"
)

// TestAOE2EBackendSwitchRefused: a reload that would move a listener from
// TCP-MD5 to TCP-AO is refused with the old keys in force (one socket
// cannot be both, and a new one would close the port), and status -k on
// a TCP-AO listener names its keys, says it is sealed and shows the AO
// fingerprints, never a key.
func TestAOE2EBackendSwitchRefused(t *testing.T) {
	l := newE2ELab(t)
	md5Key := testnet.NewSecret()
	l.secrets = append(l.secrets, md5Key)
	testnet.Keyring{Peers: []testnet.Entry{{Name: "0.0.0.0/0", Key: md5Key}}}.Write(t, l.skr)
	l.shim = startShim(t, l.server, nil, append([]string{"-k", l.skr, "-l", l.addr4(), "--"}, l.sshd.InetdArgs()...)...)
	l.shim.Secrets = func() [][]byte { return l.secrets }
	l.shim.waitLog(`serving`)
	signed := &tcpsig.Key{Secret: md5Key}
	if err := l.banner(signed); err != nil {
		t.Fatalf("TCP-MD5 before the reload: %v\n%s", err, l.log())
	}

	alice := l.user("alice", 101, 1)
	l.writeServer(false, alice)
	l.hup()
	l.shim.waitLog(`moves this listener from TCP-MD5 to TCP-AO, which needs a new socket; keeping the previous keys`)
	if err := l.banner(signed); err != nil {
		t.Fatalf("TCP-MD5 after the refused reload: %v\n%s", err, l.log())
	}
	if err := l.banner(alice.dialKey()); err == nil {
		t.Fatalf("alice's TCP-AO key got in through a listener that kept its TCP-MD5 keys")
	}
	t.Logf("reload to TCP-AO refused; TCP-MD5 still served, alice's TCP-AO SYN unanswered")

	// A restart takes the new backend (no fd store here: a fresh socket).
	l.shim.stop()
	l.start([]string{l.addr4()}, false, alice)
	if err := l.banner(alice.dialKey()); err != nil {
		t.Fatalf("TCP-AO after the restart: %v\n%s", err, l.log())
	}
	out, err := l.server.Cmd(testnet.BuildBinary(t, "cmd/sshd-md5-socket"), "status", "-k", l.skr).CombinedOutput()
	if err != nil {
		t.Fatalf("status: %v\n%s", err, out)
	}
	for _, want := range []string{
		`(?m)^` + regexp.QuoteMeta(l.addr4()) + `  pid \d+ \(sshd-md5-socket\)  1 TCP-AO keys: alice 0\.0\.0\.0/0 \(send_id 101, recv_id 1\)$`,
		`AOKEY:SHA256:`,
		`(?m)^TCP-AO drops in this network namespace: `,
	} {
		if !regexp.MustCompile(want).Match(out) {
			t.Errorf("status: no match for %s in:\n%s", want, out)
		}
	}
	if strings.Contains(string(out), string(alice.secret)) {
		t.Errorf("status printed a key")
	}
	t.Logf("status:\n%s", out)
}
