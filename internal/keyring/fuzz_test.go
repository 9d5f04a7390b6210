package keyring

import (
	"slices"
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
		"[peers.\"0.0.0.0/0\"]\nao = [\n  { name = \"alice\", send_id = 101, recv_id = 1, key_file = \"ao/alice.key\" },\n  { name = \"bob\", send_id = 102, recv_id = 2, key = \"b\", algorithm = \"cmac(aes128)\" },\n]\n",
		"[peers.\"10.0.0.0/8\"]\ninterface = \"vrf-a\"\nao = [{ name = \"a\", send_id = 1, recv_id = 1, key = \"x\" }]\n[peers.\"0.0.0.0/0\"]\nao = [{ name = \"b\", send_id = 1, recv_id = 2, key = \"y\" }]\n",
		"[[peers.\"::/0\".ao]]\nname = \"a\"\nsend_id = 1\nrecv_id = 256\nkey = \"x\"\n[[peers.\"::/0\".ao]]\nname = \"a\"\n",
		"[peers.\"::/0\"]\nkey = \"m\"\n[peers.\"2001:db8::/32\"]\nao = [{ name = \"a\", send_id = 1, recv_id = 1, key = \"x\" }]\n",
		"[hosts.a]\nao = [{ send_id = 1, recv_id = 101, key_file = \"ao/a.key\" }, { send_id = 1, recv_id = 2 }]\n",
		"[hosts.a]\nao = [{ name = \"SECRET\" }]\n",
		"peers = { \"::/0\" = { ao = [{ name = \"a\", send_id = 1, recv_id = 1, key = \"x\" }] } }\n",
		"[peers.\"0.0.0.0/0\"]\nao = [\n",
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
			for i, hk := range h.Keys {
				check(hk.Secret)
				if hk.AO != nil {
					checkAO(t, *hk.AO, false)
					for _, o := range h.Keys[:i] {
						if o.AO == nil || o.AO.SendID == hk.AO.SendID || o.AO.RecvID == hk.AO.RecvID {
							t.Errorf("%s: keys of two kinds or with one ID accepted", h.Name)
						}
					}
				}
			}
			k.Lookup(h.Name, h.Hostname)
		}
		k.Lookup(doc, secret)
		kinds := map[bool]map[bool]bool{} // is4 -> IsAO
		for i, p := range k.Peers {
			if kinds[p.Prefix.Addr().Is4()] == nil {
				kinds[p.Prefix.Addr().Is4()] = map[bool]bool{}
			}
			if kinds[p.Prefix.Addr().Is4()][p.IsAO()] = true; len(kinds[p.Prefix.Addr().Is4()]) > 1 {
				t.Error("TCP-MD5 and TCP-AO entries in one family accepted")
			}
			if !p.IsAO() {
				check(p.Secret)
			} else if p.Secret != nil || len(p.AO) > MaxAOKeys {
				t.Errorf("TCP-AO entry with a TCP-MD5 key or %d keys accepted", len(p.AO))
			}
			for _, a := range p.AO {
				checkAO(t, a.AO, true)
			}
			if !p.Prefix.IsValid() || p.Prefix.Masked() != p.Prefix || p.Prefix.Addr().Is4In6() || p.Prefix.Addr().Zone() != "" {
				t.Errorf("bad prefix %v accepted", p.Prefix)
			}
			for _, key := range p.Keys(0) {
				if err := key.Validate(); err != nil {
					t.Error(err)
				}
			}
			// The kernel's rule: no ID twice where prefixes overlap and
			// interfaces meet.
			for _, o := range k.Peers[:i] {
				if !o.Prefix.Overlaps(p.Prefix) || o.Interface != p.Interface && o.Interface != "" && p.Interface != "" {
					continue
				}
				for _, a := range p.AO {
					for _, b := range o.AO {
						if a.SendID == b.SendID || a.RecvID == b.RecvID {
							t.Errorf("%s and %s: one ID twice accepted", p.Name, o.Name)
						}
					}
				}
			}
			if i > 0 && k.Peers[i-1].Prefix.Bits() < p.Prefix.Bits() {
				t.Errorf("peers not sorted: %v before %v", k.Peers[i-1].Prefix, p.Prefix)
			}
		}
	})
}

// checkAO checks a TCP-AO key the parser accepted.
func checkAO(t *testing.T, a tcpsig.AO, peers bool) {
	t.Helper()
	if peers && a.Name == "" || a.Name != "" && CheckAOName(a.Name) != nil {
		t.Errorf("bad name %q accepted", a.Name)
	}
	if !slices.Contains(tcpsig.AOAlgorithms, a.Algorithm) || a.MACLen != tcpsig.AODefaultMACLen {
		t.Errorf("algorithm %q, MAC %d accepted", a.Algorithm, a.MACLen)
	}
}

func isAlnum(s string) bool {
	for _, r := range s {
		if !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9') {
			return false
		}
	}
	return true
}
