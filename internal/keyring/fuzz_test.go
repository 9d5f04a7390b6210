package keyring

import (
	"strings"
	"testing"

	"github.com/sshmd5/sshmd5/internal/tcpsig"
)

// FuzzParse appends `key = "<secret>"` to arbitrary text. When the secret
// is alphanumeric and appears nowhere else, no error may contain it: the
// appended line is either a key or swallowed by something left open above
// it, which is then a syntax error on a line that holds a key.
func FuzzParse(f *testing.F) {
	seeds := []string{
		"",
		"[hosts.bastion]\nhostname = \"bastion.example.net\"\nkey_file = \"md5/bastion.key\"\n",
		"[hosts.\"*.corp.example\"]\n",
		"[peers.\"0.0.0.0/0\"]\nkey_file = \"/etc/ssh/md5/default.key\"\n[peers.\"2001:db8::/32\"]\ninterface = \"vrf-mgmt\"\n",
		"[peers.\"10.0.0.1/8\"]\n",
		"[peers.\"::ffff:1.2.3.4\"]\n",
		"[peers.\"10.0.0.0/33\"]\n",
		"[peers]\n\"10.0.0.1\" = { key = \"a\" }\n\"10.0.0.1/32\" = { key = \"b\" }\n[peers.\"10.0.0.0/8\"]\n",
		"[hosts.a]\nkey = 1",
		"[hosts.a]\nkey = \"\"\"",
		"[hosts.a]\nhostname = '''",
		"[hosts.a]\nkeyfile = \"x\"\n",
		"[[hosts]]\n",
		"hosts = { a = { key_file = \"x\"",
		"[peers.\"fe80::1%eth0\"]\n",
		"[hosts.\"web[1\"]\n",
		"[hosts.a]\nkey_file = [\"x\", \"y\"]\n",
		"[hosts.a]\nkey = [\"a\", \"b\", \"c\", \"d\", \"e\"]\n",
		"[hosts.a]\nkey = [\"a\", [\"b\"]]\n",
		"[peers.\"::/0\"]\nkey = [\"a\"]\n",
	}
	for _, s := range seeds {
		f.Add(s, "SECRETxyzzy")
	}
	read := func(string) ([]byte, error) { return []byte("FILEsecret\n"), nil }
	f.Fuzz(func(t *testing.T, doc, secret string) {
		// Unquoted too, where a field name is mistyped: the decoder's own
		// message would quote it.
		for _, tail := range []string{"\nkye = " + secret + "\n", "\nhostname = " + secret + "\n"} {
			text := doc + tail
			if _, err := Parse(kpath, []byte(text), Both, read); err != nil && len(secret) >= 6 && isAlnum(secret) &&
				strings.Count(text, secret) == 1 && strings.Contains(err.Error(), secret) {
				t.Error("error quotes an unquoted value")
			}
		}
		text := doc + "\nkey = \"" + secret + "\"\n"
		k, err := Parse(kpath, []byte(text), Both, read)
		if err != nil {
			if strings.Contains(err.Error(), "FILEsecret") {
				t.Error("error leaks the key_file secret")
			}
			if len(secret) >= 6 && isAlnum(secret) && strings.Count(text, secret) == 1 && strings.Contains(err.Error(), secret) {
				t.Error("error leaks the inline secret")
			}
			return
		}
		check := func(s tcpsig.Secret) {
			if len(s) < 1 || len(s) > tcpsig.MaxKeyLen {
				t.Errorf("secret of %d bytes accepted", len(s))
			}
		}
		for _, h := range k.Hosts {
			if len(h.Keys) < 1 || len(h.Keys) > MaxHostKeys {
				t.Errorf("entry with %d keys accepted", len(h.Keys))
			}
			for _, hk := range h.Keys {
				check(hk.Secret)
			}
			k.Lookup(h.Name, h.Hostname)
		}
		k.Lookup(doc, secret)
		for i, p := range k.Peers {
			check(p.Secret)
			if !p.Prefix.IsValid() || p.Prefix.Masked() != p.Prefix || p.Prefix.Addr().Is4In6() || p.Prefix.Addr().Zone() != "" {
				t.Errorf("bad prefix %v accepted", p.Prefix)
			}
			if err := p.Key(0).Validate(); err != nil {
				t.Error(err)
			}
			if i > 0 && k.Peers[i-1].Prefix.Bits() < p.Prefix.Bits() {
				t.Errorf("peers not sorted: %v before %v", k.Peers[i-1].Prefix, p.Prefix)
			}
		}
	})
}

func isAlnum(s string) bool {
	for _, r := range s {
		if !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9') {
			return false
		}
	}
	return true
}
