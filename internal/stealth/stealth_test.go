//go:build linux

package stealth

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/sshmd5/sshmd5/internal/testnet"
)

func TestParseMode(t *testing.T) {
	for in, want := range map[string]Mode{"": DefaultMode, "filtered": Filtered, "closed": Closed, "auto": Auto} {
		if m, err := ParseMode(in); err != nil || m != want {
			t.Errorf("ParseMode(%q) = %q, %v; want %q", in, m, err, want)
		}
	}
	if _, err := ParseMode("open"); err == nil || !strings.Contains(err.Error(), "filtered, closed or auto") {
		t.Errorf("ParseMode(open) = %v; want an error naming the choices", err)
	}
}

func count(t *testing.T, ns *testnet.NS) int {
	t.Helper()
	var n int
	if err := ns.Do(func() (err error) { n, err = Count(); return }); err != nil {
		t.Fatal(err)
	}
	return n
}

// The table nft itself reads back is the one the package doc describes,
// and installing again replaces rather than adds.
func TestInstallReplaceRemove(t *testing.T) {
	ns := testnet.NewNS(t, "stealth")
	ls := []Listener{
		{Addr: netip.IPv6Unspecified(), Port: 22, IPv4: true, IPv6: true},
		{Addr: netip.MustParseAddr("192.0.2.7"), Port: 22, IPv4: true},
	}
	for i := 0; i < 3; i++ {
		if err := ns.Do(func() error { _, err := Install(ls, Options{}); return err }); err != nil {
			t.Fatal(err)
		}
		if n := count(t, ns); n != 1 {
			t.Fatalf("after install %d: %d tables named %s, want 1", i+1, n, TableName)
		}
	}
	got := ns.Run(t, "nft", "list", "table", "inet", TableName)
	t.Logf("nft list table inet %s:\n%s", TableName, got)
	for _, want := range []string{
		"type filter hook prerouting priority raw - 5",
		"type filter hook output priority raw - 5",
		"meta nfproto ipv4 tcp dport 22 fib daddr type local tcp option md5sig missing tcp option 29 missing tcp flags ! rst jump to_closed_port",
		"meta nfproto ipv6 tcp dport 22 fib daddr type local tcp option md5sig missing tcp option 29 missing tcp flags ! rst jump to_closed_port",
		"ip daddr 192.0.2.7 tcp dport 22 fib daddr type local",
		"notrack limit rate 1000/second burst 200 packets th dport set 0 accept",
		"meta nfproto ipv6 tcp dport 0 drop",
		"ip daddr 192.0.2.7 tcp dport 0 drop",
		"tcp sport 0 tcp flags rst notrack tcp sport set 22",
		`comment "sshd-md5-socket pid `,
		"ip saddr 192.0.2.7 tcp sport 0 tcp flags rst notrack tcp sport set 22",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("table lacks %q", want)
		}
	}
	var tb *Table
	if err := ns.Do(func() (err error) { tb, err = Install(ls[:1], Options{Rate: 50, Burst: 7}); return }); err != nil {
		t.Fatal(err)
	}
	if got := ns.Run(t, "nft", "list", "table", "inet", TableName); strings.Contains(got, "192.0.2.7") || !strings.Contains(got, "limit rate 50/second burst 7 packets") {
		t.Errorf("reinstall did not replace the old rules:\n%s", got)
	}
	if err := ns.Do(tb.Remove); err != nil {
		t.Fatal(err)
	}
	if n := count(t, ns); n != 0 {
		t.Fatalf("after Remove: %d tables", n)
	}
	// Removing what is not there is no error: a stop after a crash.
	if err := ns.Do(func() error { _, err := RemoveStale(); return err }); err != nil {
		t.Fatalf("RemoveStale with no table: %v", err)
	}
	if err := ns.Do(tb.Remove); err != nil {
		t.Fatalf("Remove with no table: %v", err)
	}
}

func TestInstallRefuses(t *testing.T) {
	ns := testnet.NewNS(t, "stealth")
	err := ns.Do(func() error {
		_, err := Install([]Listener{{Port: 22, IPv4: true}, {Port: 2222, IPv6: true}}, Options{})
		return err
	})
	if err == nil || !strings.Contains(err.Error(), "one port") {
		t.Fatalf("two ports: %v; want a refusal naming the fix", err)
	}
	if n := count(t, ns); n != 0 {
		t.Fatalf("a refused install left %d tables", n)
	}
}
