//go:build linux

package listenaddr

import (
	"strings"
	"testing"
)

func TestOne(t *testing.T) {
	for _, c := range []struct {
		addr           string
		network        string
		takes4, takes6 bool
	}{
		{"0.0.0.0:22", "tcp4", true, false},
		{"[::]:22", "tcp", true, true},
		{"[::1]:22", "tcp6", false, true},
		{"[::ffff:10.0.0.1]:22", "tcp4", true, false},
		{":2222", "tcp", true, true},
		{"2222", "tcp", true, true},
	} {
		a, err := One(c.addr)
		if err != nil {
			t.Fatalf("%s: %v", c.addr, err)
		}
		if a.Network != c.network || a.Socket.Takes4 != c.takes4 || a.Socket.Takes6 != c.takes6 {
			t.Errorf("%s: %s takes4 %v takes6 %v, want %s %v %v", c.addr, a.Network, a.Socket.Takes4, a.Socket.Takes6, c.network, c.takes4, c.takes6)
		}
	}
}

// 0.0.0.0 beside [::] on one port: one socket per family, the [::] one
// IPv6-only, so that each family can have its own backend.
func TestParseFamiliesApart(t *testing.T) {
	as, err := Parse([]string{"[::]:22", "0.0.0.0:22", "[::]:2222"})
	if err != nil {
		t.Fatal(err)
	}
	if as[0].Network != "tcp6" || as[0].Socket.Takes4 || !as[0].Socket.Takes6 {
		t.Errorf("[::]:22 beside 0.0.0.0:22: %s, takes %s; want tcp6, IPv6 only", as[0].Network, as[0].Socket.Families())
	}
	if as[2].Network != "tcp" || !as[2].Socket.Takes4 {
		t.Errorf("[::]:2222 alone on its port: %s, takes %s; want tcp, both families", as[2].Network, as[2].Socket.Families())
	}
}

func TestParseOverlap(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string // "" = accepted
	}{
		{[]string{"10.0.0.1:22", "10.0.0.2:22", "10.0.0.1:2222"}, ""},
		{[]string{"0.0.0.0:22", "[fd00::1]:22"}, ""},
		{[]string{"0.0.0.0:22", "[::]:2222"}, ""},
		{[]string{"10.0.0.1:22", "10.0.0.1:22"}, `-l "10.0.0.1:22" and -l "10.0.0.1:22": the same address twice`},
		{[]string{"10.0.0.1:22", "[::ffff:10.0.0.1]:22"}, `the same address twice`},
		{[]string{"0.0.0.0:22", "[::]:22"}, ""},
		{[]string{"[::]:22", "0.0.0.0:22", "[fd00::1]:22"}, `-l "[::]:22" and -l "[fd00::1]:22": [::]:22 takes every IPv6 address on port 22 (IPv6 only, as 0.0.0.0:22 is given too), fd00::1 included`},
		{[]string{"[::]:22", "[fd00::1]:22"}, `takes IPv4 and IPv6 peers on port 22, IPv6 fd00::1 included`},
		{[]string{"10.0.0.1:22", "0.0.0.0:22"}, `0.0.0.0:22 takes every IPv4 address on port 22, 10.0.0.1 included`},
		{[]string{"10.0.0.1:22", "localhost:22"}, `-l "localhost:22": not an IP address`},
	} {
		_, err := Parse(c.args)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%q: %v, want accepted", c.args, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%q: %v, want an error with %q", c.args, err, c.want)
		}
	}
}

// TestOneErrors: each malformed form gets an error that says how to
// write it, and none shows netip's wording ("ParseAddr", "unexpected").
func TestOneErrors(t *testing.T) {
	for _, c := range []struct{ arg, want string }{
		{"fd00:200::1", `-l "fd00:200::1": no port; write [fd00:200::1]:22`},
		{"[fd00:200::1]", `no port; write [fd00:200::1]:22`},
		{"127.0.0.1", `-l "127.0.0.1": no port; write 127.0.0.1:22`},
		{"fd00::1:22", `no port; write [fd00::1:22]:22`},
		{"localhost:22", `not an IP address (host names are not resolved); want IP:PORT`},
		{"[10.0.0.1]:22", `brackets hold an IPv6 address`},
		{":0", `port 0 would pick a random port`},
		{"70000", `port 70000 is not a number from 1 to 65535`},
		{":ssh", `port "ssh" is not a number from 1 to 65535`},
		{"", `empty; want IP:PORT`},
		{"[fe80::1%eth0]:22", `zoned addresses are not supported`},
		{"fe80::1%eth0:22", `zoned addresses are not supported`},
		{"[::1]:", `port "" is not a number`},
	} {
		_, err := One(c.arg)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v, want an error with %q", c.arg, err, c.want)
			continue
		}
		if strings.Contains(err.Error(), "ParseAddr") || strings.Contains(err.Error(), "unexpected character") {
			t.Errorf("%q: %v shows netip's internals", c.arg, err)
		}
	}
}
