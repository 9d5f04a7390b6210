//go:build linux

package guest

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sshmd5/sshmd5/internal/keyring"
	"github.com/sshmd5/sshmd5/internal/testnet"
)

// TestAOKeyringKeygen is the TCP-AO keyring from end to end: keys made by
// ssh-md5-proxy keygen --ao, the server items it prints put in a keyring,
// sshd-md5-socket check listing them with keygen's fingerprints and
// saying ok, the shim serving them, and a client holding each user's
// [hosts] item as keygen printed it connecting; a stranger with alice's
// IDs and an unsigned client get no answer.
func TestAOKeyringKeygen(t *testing.T) {
	n := newAONet(t)
	proxy := testnet.BuildBinary(t, "cmd/ssh-md5-proxy")
	shimBin := testnet.BuildBinary(t, "cmd/sshd-md5-socket")
	dir := t.TempDir()
	type user struct {
		name, args   string
		fp           string // printed by keygen
		server, host string // the items it printed
	}
	users := []*user{
		{name: "alice", args: "--send-id 1 --recv-id 101"},
		{name: "bob", args: "--send-id 2 --recv-id 102 --algorithm cmac(aes128)"},
	}
	fpLine := regexp.MustCompile(`(?m)^# Fingerprint: (AOKEY:SHA256:\S+)$`)
	serverItem := regexp.MustCompile(`(?m)^  \{ name = .*\},$`)
	hostItem := regexp.MustCompile(`(?m)^ao = \[\{ send_id = .*\}\]$`)
	for _, u := range users {
		args := append([]string{"keygen", "--ao", "-o", filepath.Join(dir, u.name+".key"), "--name", u.name}, strings.Fields(u.args)...)
		out, err := exec.Command(proxy, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("keygen for %s: %v\n%s", u.name, err, out)
		}
		m := fpLine.FindSubmatch(out)
		u.server, u.host = serverItem.FindString(string(out)), hostItem.FindString(string(out))
		if m == nil || u.server == "" || u.host == "" {
			t.Fatalf("keygen for %s printed no fingerprint or items:\n%s", u.name, out)
		}
		u.fp = string(m[1])
		// The server's copy is the key file itself here.
		u.server = strings.Replace(u.server, "/etc/ssh/ao/", dir+"/", 1)
	}
	skr := filepath.Join(dir, "server.toml")
	testnet.WriteFile(t, skr, "[peers.\"0.0.0.0/0\"]\nao = [\n"+users[0].server+"\n"+users[1].server+"\n]\n")
	listen := netip.AddrPortFrom(n.link.AddrA4, aoPort).String()

	// check on a kernel with TCP-AO: ok, every key with keygen's
	// fingerprint, its name and IDs.
	out, err := n.server.Cmd(shimBin, "check", "-k", skr, "-l", listen).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "ok: sshd-md5-socket would start") {
		t.Fatalf("check: %v\n%s", err, out)
	}
	for _, want := range []string{
		users[0].fp + "  alice: send_id 101, recv_id 1, hmac(sha256), 12-byte MAC",
		users[1].fp + "  bob: send_id 102, recv_id 2, cmac(aes128), 12-byte MAC",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("check does not list %q:\n%s", want, out)
		}
	}

	s := startShim(t, n.server, nil, "-k", skr, "-l", listen, "--", "/bin/cat")
	s.waitLog(`serving`)
	for _, u := range users {
		ckr := filepath.Join(dir, u.name+"-client.toml")
		testnet.WriteFile(t, ckr, "[hosts.srv]\n"+u.host+"\n")
		kr, err := keyring.Load(ckr, keyring.Client)
		if err != nil {
			t.Fatal(err)
		}
		h, ok := kr.Lookup("srv", "srv")
		if !ok || len(h.Keys) != 1 || h.Keys[0].AO == nil {
			t.Fatalf("%s: client keyring from keygen's item: %+v", u.name, h)
		}
		k := h.DialKeys()[0]
		k.Prefix = netip.PrefixFrom(n.link.AddrA4, 32)
		c, err := n.dialTo(listen, &k)
		if err != nil {
			t.Fatalf("%s: dialling with keygen's [hosts] item: %v\nshim log:\n%s", u.name, err, s.Log())
		}
		echo(t, u.name, c)
		if u.name == "alice" {
			stranger := k
			stranger.Secret = testnet.NewSecret()
			n.expectOut(t, "alice's IDs, another key", &stranger, bad, "TCPAOBad")
		}
	}
	n.expectOut(t, "unsigned", nil, required, "TCPAORequired")
}

// echo checks that c reaches /bin/cat behind the shim.
func echo(t *testing.T, who string, c net.Conn) {
	t.Helper()
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	line := fmt.Sprintf("hello from %s\n", who)
	if _, err := c.Write([]byte(line)); err != nil {
		t.Fatalf("%s: write: %v", who, err)
	}
	got, err := bufio.NewReader(c).ReadString('\n')
	var ne net.Error
	if errors.As(err, &ne) || got != line {
		t.Fatalf("%s: echo = %q, %v; want %q", who, got, err, line)
	}
	t.Logf("%s: connected through the shim, echoed %q", who, strings.TrimSpace(got))
}
