//go:build linux

package e2e

import (
	"bufio"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/sshmd5/sshmd5/internal/testnet"
)

// TestNAT: a second client sits behind a masquerading router. Plain TCP
// through the NAT works (the control reads sshd's banner from the plain
// port), but the signed ssh login through ssh-md5-proxy fails: the
// signature covers the addresses and ports the NAT rewrites, so the server
// sees a wrong signature (TCPMD5Failure) although its keyring covers
// 0.0.0.0/0 with the very key the client signs with. tcpdump -M with that
// key shows the same SYNs valid on the inside and invalid on the outside.
// The proxy's error names NAT as a likely cause.
func TestNAT(t *testing.T) {
	if _, err := exec.LookPath("nft"); err != nil {
		t.Fatalf("required program nft (Debian package nftables) not found: %v", err)
	}
	l := newLab(t)
	l.startShim()
	l.startPlain()

	// client2 --veth-- nat --bridge-- server
	nat := l.plug(testnet.NewNS(t, "nat"))
	client2 := testnet.NewNS(t, "client2")
	inner := testnet.Connect(t, client2, nat.ns) // client2 is A, nat is B
	client2.Run(t, "ip", "route", "add", "default", "via", inner.AddrB4.String())
	nat.ns.Run(t, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
	rules := "table ip e2enat {\n chain post {\n  type nat hook postrouting priority srcnat; policy accept;\n" +
		"  oifname \"" + nat.ifc + "\" masquerade\n }\n}\n"
	cmd := nat.ns.Cmd("nft", "-f", "-")
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft masquerade in the nat namespace: %v\n%s", err, out)
	}

	// Sanity: the key is right (the client on the segment logs in).
	out, errb, err := l.runSSH(l.client.ns, l.sshArgs(true, l.server.a4, "-k "+l.clientKeyring, "echo", "login-ok"), 60*time.Second)
	if err != nil || out != "login-ok\n" {
		t.Fatalf("signed login without NAT: %v; stdout %q; stderr:\n%s", err, out, errb)
	}

	// Control: unsigned TCP through the NAT reaches the plain sshd, and
	// the server sees the NAT's address.
	var banner string
	err = client2.Do(func() error {
		d := net.Dialer{Timeout: 10 * time.Second}
		c, err := d.Dial("tcp", netip.AddrPortFrom(l.server.a4, plainPort).String())
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(20 * time.Second))
		banner, err = bufio.NewReader(c).ReadString('\n')
		return err
	})
	if err != nil || !strings.HasPrefix(banner, "SSH-2.0-") {
		t.Fatalf("plain TCP through the NAT: %v (banner %q); the NAT path itself is broken", err, banner)
	}
	t.Logf("control: plain TCP from %v through the NAT read banner %q", inner.AddrA4, strings.TrimSpace(banner))

	before := l.server.ns.MD5Counters(t)
	inside := client2.StartCapture(t, inner.IfA, protectedPort)
	outside := l.server.ns.StartCapture(t, l.server.ifc, protectedPort)
	out, errb, err = l.runSSH(client2, l.sshArgs(true, l.server.a4, "-t 3s -k "+l.clientKeyring, "echo", "login-ok"), 90*time.Second)
	stIn := inside.Stop(t, l.secret)
	stOut := outside.Stop(t, l.secret)
	d := l.server.ns.MD5Counters(t).Sub(before)
	if strings.Contains(errb, string(l.secret)) {
		t.Errorf("the secret appears in ssh's stderr")
	}
	t.Logf("signed login from behind the NAT: %v; stdout %q; stderr: %s", err, out, strings.TrimSpace(errb))
	t.Logf("inside the NAT (client2 %v): %v", inner.AddrA4, stIn)
	t.Logf("outside the NAT (server, from %v): %v; server counters +%+v", nat.a4, stOut, d)

	if err == nil {
		t.Fatalf("signed login through the NAT succeeded")
	}
	if !strings.Contains(errb, "a NAT between you and the server rewrites addresses") {
		t.Errorf("proxy's message does not name NAT as a likely cause")
	}
	if stIn.SYNs == 0 || stIn.Valid != stIn.Segments {
		t.Errorf("inside: want only validly signed SYNs, got %v", stIn)
	}
	if stOut.SYNs == 0 || stOut.Invalid != stOut.Segments || stOut.SYNACKs != 0 || stOut.RSTs != 0 {
		t.Errorf("outside: want only SYNs whose signature no longer verifies and no answer, got %v", stOut)
	}
	if d.Failure < uint64(stOut.SYNs) {
		t.Errorf("server TCPMD5Failure +%d, want at least the %d SYNs", d.Failure, stOut.SYNs)
	}
}
