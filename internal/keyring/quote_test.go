package keyring

import (
	"strings"
	"testing"
)

// TestUnquotedAddressHeader: an address written bare in a table name is
// a parse error (slashes, colons) or a too-deep key (dots) to TOML; the
// error says to quote it, and quotes back the name only.
func TestUnquotedAddressHeader(t *testing.T) {
	for _, c := range []struct{ header, want string }{
		{"[peers.10.0.0.0/8]", `:1: a table name holds an address or dotted name without quotes, which TOML reads as nested tables; quote it: [peers."10.0.0.0/8"]`},
		{"[peers.10.0.0.1]", `quote it: [peers."10.0.0.1"]`},
		{"[peers.fd00::/8]", `:1: syntax error at column 12: a table name holds an address or dotted name without quotes; quote it: [peers."fd00::/8"]`},
		{"[peers.::/0]  # every IPv6 peer", `quote it: [peers."::/0"]`},
		{"[hosts.192.0.2.7]", `quote it: [hosts."192.0.2.7"]`},
	} {
		_, err := Parse(kpath, []byte(c.header+"\nkey = \"SECRET-"+secret+"\"\n"), Server, fakeKeys(nil))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error with %q", c.header, err, c.want)
		}
		noLeak(t, err)
	}
	// Not an address: the general hint, nothing quoted back.
	_, err := Parse(kpath, []byte("[peers.a/b]\nkey = \"x\"\n"), Server, fakeKeys(nil))
	if err == nil || strings.Contains(err.Error(), "quote it") || strings.Contains(err.Error(), "a/b") {
		t.Errorf("[peers.a/b]: %v, want the general syntax hint", err)
	}
}
