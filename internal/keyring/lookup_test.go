package keyring

import "testing"

func TestLookup(t *testing.T) {
	const text = `
[hosts.bastion]
hostname = "bastion.example.net"
key = "k-bastion"

[hosts."*.corp.example"]
key = "k-corp"

[hosts."db*.corp.example"]
key = "k-db"

[hosts."d?1.corp.example"]
key = "k-tie"

[hosts."*"]
key = "k-any"

[hosts."10.0.0.0/8"]
key = "k-ten"

[hosts."10.1.0.0/16"]
key = "k-ten-one"

[hosts."192.0.2.7"]
key = "k-single"

[hosts."2001:db8::/32"]
hostname = "Six.Example"
key = "k-six"

[hosts."2001:db8::/48"]
key = "k-six48"
`
	k, err := Parse(kpath, []byte(text), Both, nil)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		alias, host string
		want        string // Name of the entry, "" = no match
	}{
		// 1: exact alias, beating everything else.
		{"bastion", "10.1.2.3", "bastion"},
		{"", "bastion", "bastion"},
		{"10.0.0.0/8", "db1.corp.example", "10.0.0.0/8"},
		// Exact is exact: case matters.
		{"Bastion", "x.example", "*"},
		// 2: hostname, case-insensitive, beating globs and CIDRs.
		{"b", "BASTION.example.net", "bastion"},
		{"b", "six.example", "2001:db8::/32"},
		// 3: globs, most specific first, alias before host.
		{"web.corp.example", "10.1.2.3", "*.corp.example"},
		{"db1.corp.example", "x", "db*.corp.example"},
		{"DB1.Corp.Example", "x", "db*.corp.example"},
		{"da1.corp.example", "x", "d?1.corp.example"},
		{"nomatch", "db2.corp.example", "*"},
		{"", "db2.corp.example", "db*.corp.example"},
		// 4: literal addresses, longest prefix.
		{"", "10.1.2.3", "*"},
	}
	for _, tt := range tests {
		h, ok := k.Lookup(tt.alias, tt.host)
		if got := map[bool]string{true: h.Name}[ok]; got != tt.want {
			t.Errorf("Lookup(%q, %q) = %q, want %q", tt.alias, tt.host, got, tt.want)
		}
	}

	// Without the catch-all glob, addresses fall through to step 4.
	var hosts []Host
	for _, h := range k.Hosts {
		if h.Name != "*" {
			hosts = append(hosts, h)
		}
	}
	k.Hosts = hosts
	for _, tt := range []struct{ alias, host, want string }{
		{"", "10.1.2.3", "10.1.0.0/16"},
		{"x", "10.2.2.3", "10.0.0.0/8"},
		{"", "192.0.2.7", "192.0.2.7"},
		{"", "::ffff:192.0.2.7", "192.0.2.7"},
		{"", "192.0.2.8", ""},
		{"", "2001:db8::1", "2001:db8::/48"},
		{"", "2001:db8:1::1", "2001:db8::/32"},
		{"", "2001:DB8:1::1", "2001:db8::/32"},
		{"", "fe80::1%eth0", ""},
		{"", "2001:db9::1", ""},
		{"nomatch", "unknown.example", ""},
		{"", "", ""},
	} {
		h, ok := k.Lookup(tt.alias, tt.host)
		if got := map[bool]string{true: h.Name}[ok]; got != tt.want {
			t.Errorf("Lookup(%q, %q) = %q, want %q", tt.alias, tt.host, got, tt.want)
		}
	}
}

func TestLookupGlobTie(t *testing.T) {
	// Same specificity: the earlier entry wins.
	k, err := Parse(kpath, []byte("[hosts.\"a*\"]\nkey = \"1\"\n[hosts.\"*a\"]\nkey = \"2\"\n"), Both, nil)
	if err != nil {
		t.Fatal(err)
	}
	if h, ok := k.Lookup("aa", ""); !ok || h.Name != "a*" {
		t.Errorf("got %q, %v", h.Name, ok)
	}
}

func TestLiteralChars(t *testing.T) {
	for p, want := range map[string]int{"*": 0, "*.corp.example": 13, "d?1.x": 4, "web[0-9].x": 5, `a\*`: 2, "[": 0} {
		if got := literalChars(p); got != want {
			t.Errorf("literalChars(%q) = %d, want %d", p, got, want)
		}
	}
}
