package keyring

import (
	"fmt"
	"strings"
	"testing"

	"github.com/sshmd5/sshmd5/internal/tcpsig"
)

var aoFiles = map[string]string{
	"/etc/ssh/ao/alice.key":     "SECRETalice\n",
	"/etc/ssh/ao/alice-new.key": "SECRETalice2\n",
	"/etc/ssh/ao/bob.key":       "SECRETbob",
	"/etc/ssh/ao/bastion.key":   "SECRETbastion\n",
	"/etc/ssh/ao/empty.key":     "\n",
}

const aoGood = `[peers."0.0.0.0/0"]
ao = [
  { name = "alice", send_id = 101, recv_id = 1, key_file = "/etc/ssh/ao/alice.key" },
  # a rollover: alice's new key beside the old one
  { name = "alice", send_id = 103, recv_id = 3, key_file = "ao/alice-new.key" },

  { name = "bob",   send_id = 102, recv_id = 2, key_file = "/etc/ssh/ao/bob.key", algorithm = "cmac(aes128)" },
]
[peers."::/0"]
ao = [{ name = "alice", send_id = 101, recv_id = 1, key_file = "/etc/ssh/ao/alice.key" }]
[peers."10.0.0.0/8"]
interface = "vrf-mgmt"
ao = [{ name = "carol@ops", send_id = 104, recv_id = 4, key = "SECRETcarol", algorithm = "hmac(sha1)" }]

[[peers."2001:db8::/32".ao]]
name = "dave.x_y-z"
send_id = 0
recv_id = 255
key = "SECRETdave"

[[peers."2001:db8::/32".ao]]
name = "erin"
send_id = 255
recv_id = 0
key = "SECRETerin"

[hosts.bastion]
hostname = "bastion.example.net"
ao = [{ send_id = 1, recv_id = 101, key_file = "ao/bastion.key" }]
[hosts.db]
ao = [
  { name = "new", send_id = 3, recv_id = 103, key_file = "ao/alice-new.key" },
  { send_id = 1, recv_id = 101, key_file = "ao/alice.key", algorithm = "hmac(sha256)" },
]
[hosts.md5]
key = "SECRETmd5"
`

func TestParseAO(t *testing.T) {
	k, err := Parse(kpath, []byte(aoGood), Both, fakeKeys(aoFiles))
	if err != nil {
		t.Fatal(err)
	}
	type aoWant struct {
		name         string
		send, recv   uint8
		alg, secret  string
		source       string
		line         int
		prefix, ifce string
	}
	var got []aoWant
	for _, p := range k.Peers {
		if !p.IsAO() || p.Secret != nil || p.Source != "" {
			t.Errorf("%s: IsAO %v, Secret %d bytes, Source %q: want a TCP-AO entry without a TCP-MD5 key", p.Name, p.IsAO(), len(p.Secret), p.Source)
		}
		for _, a := range p.AO {
			if a.MACLen != tcpsig.AODefaultMACLen {
				t.Errorf("%s %s: MACLen %d", p.Name, a.Name, a.MACLen)
			}
			got = append(got, aoWant{a.Name, a.SendID, a.RecvID, a.Algorithm, string(a.Secret), a.Source, a.Line, p.Prefix.String(), p.Interface})
		}
		keys := p.Keys(7)
		if len(keys) != len(p.AO) {
			t.Fatalf("%s: Keys gives %d keys for %d", p.Name, len(keys), len(p.AO))
		}
		for i, key := range keys {
			if err := key.Validate(); err != nil {
				t.Error(err)
			}
			if key.Prefix != p.Prefix || key.Ifindex != 7 || key.AO == nil || *key.AO != p.AO[i].AO || !key.Secret.Equal(p.AO[i].Secret) {
				t.Errorf("%s: key %d = %v", p.Name, i, key)
			}
		}
	}
	// Most specific prefix first, then by address; items in file order.
	want := []aoWant{
		{"dave.x_y-z", 0, 255, "hmac(sha256)", "SECRETdave", "inline key (ao item 1 of 2)", 15, "2001:db8::/32", ""},
		{"erin", 255, 0, "hmac(sha256)", "SECRETerin", "inline key (ao item 2 of 2)", 21, "2001:db8::/32", ""},
		{"carol@ops", 104, 4, "hmac(sha1)", "SECRETcarol", "inline key (ao item 1 of 1)", 13, "10.0.0.0/8", "vrf-mgmt"},
		{"alice", 101, 1, "hmac(sha256)", "SECRETalice", "key_file /etc/ssh/ao/alice.key (ao item 1 of 3)", 3, "0.0.0.0/0", ""},
		{"alice", 103, 3, "hmac(sha256)", "SECRETalice2", "key_file /etc/ssh/ao/alice-new.key (ao item 2 of 3)", 5, "0.0.0.0/0", ""},
		{"bob", 102, 2, "cmac(aes128)", "SECRETbob", "key_file /etc/ssh/ao/bob.key (ao item 3 of 3)", 7, "0.0.0.0/0", ""},
		{"alice", 101, 1, "hmac(sha256)", "SECRETalice", "key_file /etc/ssh/ao/alice.key (ao item 1 of 1)", 10, "::/0", ""},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("peers:\n got %v\nwant %v", got, want)
	}

	type hostWant struct {
		name, secret, source string
		send, recv           uint8
		alg                  string
	}
	var hosts []hostWant
	for _, h := range k.Hosts {
		for i, hk := range h.Keys {
			w := hostWant{name: h.Name, secret: string(hk.Secret), source: hk.Source}
			if hk.AO != nil {
				if hk.AO.MACLen != tcpsig.AODefaultMACLen {
					t.Errorf("%s: MACLen %d", h.Name, hk.AO.MACLen)
				}
				w.send, w.recv, w.alg = hk.AO.SendID, hk.AO.RecvID, hk.AO.Name+" "+hk.AO.Algorithm
			}
			dk := h.DialKeys()[i]
			if !dk.Secret.Equal(hk.Secret) || dk.AO != hk.AO {
				t.Errorf("%s: DialKeys()[%d] differs from Keys[%d]", h.Name, i, i)
			}
			hosts = append(hosts, w)
		}
	}
	wantHosts := []hostWant{
		{"bastion", "SECRETbastion", "key_file /etc/ssh/ao/bastion.key (ao item 1 of 1)", 1, 101, " hmac(sha256)"},
		{"db", "SECRETalice2", "key_file /etc/ssh/ao/alice-new.key (ao item 1 of 2)", 3, 103, "new hmac(sha256)"},
		{"db", "SECRETalice", "key_file /etc/ssh/ao/alice.key (ao item 2 of 2)", 1, 101, " hmac(sha256)"},
		{"md5", "SECRETmd5", "inline key", 0, 0, ""},
	}
	if fmt.Sprint(hosts) != fmt.Sprint(wantHosts) {
		t.Errorf("hosts:\n got %v\nwant %v", hosts, wantHosts)
	}
	if h, ok := k.Lookup("x", "bastion.example.net"); !ok || h.Name != "bastion" || h.Keys[0].AO == nil {
		t.Errorf("Lookup by hostname: %v %v", h.Name, ok)
	}
}

// aoPeers writes one [peers] entry for prefix holding n TCP-AO keys with
// IDs from first on.
func aoPeers(prefix string, first, n int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "[peers.%q]\nao = [\n", prefix)
	for i := range n {
		fmt.Fprintf(&b, "{ name = \"u%d\", send_id = %d, recv_id = %d, key = \"SECRET%d\" },\n", first+i, (first+i)%256, (first+i)%256, first+i)
	}
	b.WriteString("]\n")
	return b.String()
}

// TestParseAOErrors: every rule of a TCP-AO entry, with the exact message.
func TestParseAOErrors(t *testing.T) {
	const k4 = "[peers.\"0.0.0.0/0\"]\n"
	item := func(fields string) string { return k4 + "ao = [{ " + fields + " }]\n" }
	const ok = `name = "alice", send_id = 1, recv_id = 2, key = "SECRETa"`
	tests := []struct{ name, text, want string }{
		// One kind per entry.
		{"key and ao", k4 + "key = \"SECRETx\"\nao = [{ " + ok + " }]\n",
			`keyring /etc/ssh/k.toml:1: peers."0.0.0.0/0": both key and ao are set; an entry is TCP-MD5 (key or key_file) or TCP-AO (ao), not both: keep one`},
		{"key_file and ao", "[hosts.a]\nkey_file = \"ao/bob.key\"\nao = [{ send_id = 1, recv_id = 2, key = \"SECRETa\" }]\n",
			`keyring /etc/ssh/k.toml:1: hosts.a: both key_file and ao are set; an entry is TCP-MD5 (key or key_file) or TCP-AO (ao), not both: keep one`},
		{"no key at all", k4 + "interface = \"vrf-a\"\n",
			`keyring /etc/ssh/k.toml:1: peers."0.0.0.0/0": no key; add key_file = "path" or key = "..." for TCP-MD5, or ao = [{ ... }] for TCP-AO`},
		// The list.
		{"ao not a list", k4 + "ao = \"SECRETx\"\n",
			`keyring /etc/ssh/k.toml:2: peers."0.0.0.0/0".ao: not a list of tables; write the TCP-AO keys as ao = [{ name = "alice", send_id = 1, recv_id = 101, key_file = "ao/alice.key" }], one { ... } per key`},
		{"ao a table", k4 + "ao = { name = \"a\" }\n",
			`keyring /etc/ssh/k.toml:2: peers."0.0.0.0/0".ao: not a list of tables`},
		{"ao item not a table", k4 + "ao = [\n  \"SECRETx\",\n]\n",
			`keyring /etc/ssh/k.toml:3: peers."0.0.0.0/0": ao item 1: not a table; write each key as { name = "alice", send_id = 1, recv_id = 101, key_file = "..." }`},
		{"empty ao", k4 + "ao = []\n",
			`keyring /etc/ssh/k.toml:2: peers."0.0.0.0/0": ao is an empty list; list the TCP-AO keys, e.g. ao = [{ name = "alice", send_id = 1, recv_id = 101, key_file = "ao/alice.key" }]`},
		{"too many peer keys", strings.TrimSuffix(aoPeers("0.0.0.0/0", 0, 256), "]\n") + "{ name = \"x\", send_id = 1, recv_id = 1, key = \"SECRETx\" }\n]\n",
			`keyring /etc/ssh/k.toml:2: peers."0.0.0.0/0": ao lists 257 keys, more than 256, the most one prefix can hold: each key needs its own send_id and recv_id, and a KeyID is 8 bits`},
		{"too many host keys", "[hosts.a]\nao = [\n" + strings.Repeat("{ send_id = 1, recv_id = 2, key = \"SECRETx\" },\n", 5) + "]\n",
			`keyring /etc/ssh/k.toml:2: hosts.a: ao lists 5 keys, more than 4, the limit (each is a SYN on every connection); a rotation needs two, the new one and the old one`},
		// Item fields.
		{"unknown item field", item(ok + `, sendid = 3, zz = 1`),
			`keyring /etc/ssh/k.toml:2: peers."0.0.0.0/0": ao item 1: unknown field "sendid"; the fields of an ao item are name, send_id, recv_id, key_file, key and algorithm`},
		{"no name in peers", item(`send_id = 1, recv_id = 2, key = "SECRETa"`),
			`keyring /etc/ssh/k.toml:2: peers."0.0.0.0/0": ao item 1: no name; say whose key it is, e.g. name = "alice": logs name the key by it, and revoking a user removes the items of that name`},
		{"name not a string", item(`name = 5, send_id = 1, recv_id = 2, key = "SECRETa"`),
			`keyring /etc/ssh/k.toml:2: peers."0.0.0.0/0": ao item 1: name is not a string; write name = "alice"`},
		{"bad name", item(`name = "SECRET alice", send_id = 1, recv_id = 2, key = "SECRETa"`),
			`keyring /etc/ssh/k.toml:2: peers."0.0.0.0/0": ao item 1: name is not a short token; write 1 to 64 letters, digits, '.', '_', '@' or '-', e.g. name = "alice"`},
		{"empty name", item(`name = "", send_id = 1, recv_id = 2, key = "SECRETa"`),
			`ao item 1: name is not a short token`},
		{"long name", item(`name = "` + strings.Repeat("a", 65) + `", send_id = 1, recv_id = 2, key = "SECRETa"`),
			`ao item 1: name is not a short token`},
		{"bad host name", "[hosts.a]\nao = [{ name = \"a/b\", send_id = 1, recv_id = 2, key = \"SECRETa\" }]\n",
			`keyring /etc/ssh/k.toml:2: hosts.a: ao item 1: name is not a short token`},
		{"no send_id", item(`name = "alice", recv_id = 2, key = "SECRETa"`),
			`keyring /etc/ssh/k.toml:2: peers."0.0.0.0/0": ao item 1 ("alice"): no send_id; add send_id = N, a KeyID from 0 to 255 (the client's send_id is the server's recv_id and the other way round)`},
		{"no recv_id", "[hosts.a]\nao = [{ send_id = 1, key = \"SECRETa\" }]\n",
			`keyring /etc/ssh/k.toml:2: hosts.a: ao item 1: no recv_id; add recv_id = N`},
		{"send_id a string", item(`name = "alice", send_id = "1", recv_id = 2, key = "SECRETa"`),
			`keyring /etc/ssh/k.toml:2: peers."0.0.0.0/0": ao item 1 ("alice"): send_id is not an integer; write send_id = N without quotes, N from 0 to 255`},
		{"recv_id a float", item(`name = "alice", send_id = 1, recv_id = 2.0, key = "SECRETa"`),
			`ao item 1 ("alice"): recv_id is not an integer`},
		{"send_id too big", item(`name = "alice", send_id = 256, recv_id = 2, key = "SECRETa"`),
			`keyring /etc/ssh/k.toml:2: peers."0.0.0.0/0": ao item 1 ("alice"): send_id is 256; a KeyID is 0 to 255`},
		{"recv_id negative", item(`name = "alice", send_id = 1, recv_id = -1, key = "SECRETa"`),
			`ao item 1 ("alice"): recv_id is -1; a KeyID is 0 to 255`},
		{"unknown algorithm", item(ok + `, algorithm = "hmac(md5)"`),
			`keyring /etc/ssh/k.toml:2: peers."0.0.0.0/0": ao item 1 ("alice"): algorithm is not one the kernel offers; write one of "hmac(sha1)", "hmac(sha256)" or "cmac(aes128)", or drop it for hmac(sha256)`},
		{"algorithm not a string", item(ok + `, algorithm = 1`),
			`ao item 1 ("alice"): algorithm is not one the kernel offers`},
		{"item key and key_file", item(ok + `, key_file = "ao/bob.key"`),
			`keyring /etc/ssh/k.toml:2: peers."0.0.0.0/0": ao item 1 ("alice"): both key and key_file are set; keep one`},
		{"item no key", item(`name = "alice", send_id = 1, recv_id = 2`),
			`keyring /etc/ssh/k.toml:2: peers."0.0.0.0/0": ao item 1 ("alice"): no key; add key_file = "path" or key = "..."`},
		{"item key a list", item(`name = "alice", send_id = 1, recv_id = 2, key_file = ["ao/bob.key"]`),
			`keyring /etc/ssh/k.toml:2: peers."0.0.0.0/0": ao item 1 ("alice"): key_file is not a string; write key_file = "..." (one key per item; a rotation is a second item)`},
		{"item key too long", item(`name = "alice", send_id = 1, recv_id = 2, key = "SECRET` + strings.Repeat("x", 75) + `"`),
			`keyring /etc/ssh/k.toml:2: peers."0.0.0.0/0": ao item 1 ("alice"): key is 81 bytes; a key is 1 to 80 bytes`},
		{"item key_file missing", item(`name = "alice", send_id = 1, recv_id = 2, key_file = "ao/nope.key"`),
			`keyring /etc/ssh/k.toml:2: peers."0.0.0.0/0": ao item 1 ("alice"): key_file /etc/ssh/ao/nope.key: file does not exist; create it or fix key_file (a relative key_file is taken from the keyring's folder)`},
		{"item key_file empty", item(`name = "alice", send_id = 1, recv_id = 2, key_file = "/etc/ssh/ao/empty.key"`),
			`keyring /etc/ssh/k.toml:2: peers."0.0.0.0/0": ao item 1 ("alice"): key_file /etc/ssh/ao/empty.key: key is 0 bytes after dropping one trailing newline; a key is 1 to 80 bytes`},
		// The item's own line, in either form.
		{"line of a later item", k4 + "ao = [\n  { " + ok + " },\n\n  # bob\n  { name = \"bob\", send_id = 300, recv_id = 3, key = \"SECRETb\" },\n]\n",
			`keyring /etc/ssh/k.toml:6: peers."0.0.0.0/0": ao item 2 ("bob"): send_id is 300`},
		{"line of an array-of-tables item", "[[peers.\"::/0\".ao]]\nname = \"a\"\nsend_id = 1\nrecv_id = 1\nkey = \"SECRETa\"\n\n[[peers.\"::/0\".ao]]\nname = \"b\"\nsend_id = 1\nrecv_id = 2\nkey = \"SECRETb\"\n",
			`keyring /etc/ssh/k.toml:7: peers."::/0": ao item 1 ("a") and ao item 2 ("b") both have send_id 1; the kernel refuses two keys with one send_id for one prefix (EEXIST): give each key its own`},
		// Within an entry.
		{"send_id twice", k4 + "ao = [\n{ " + ok + " },\n{ name = \"bob\", send_id = 1, recv_id = 3, key = \"SECRETb\" },\n]\n",
			`keyring /etc/ssh/k.toml:4: peers."0.0.0.0/0": ao item 1 ("alice") and ao item 2 ("bob") both have send_id 1; the kernel refuses two keys with one send_id for one prefix (EEXIST): give each key its own`},
		{"recv_id twice", k4 + "ao = [\n{ " + ok + " },\n{ name = \"bob\", send_id = 3, recv_id = 2, key = \"SECRETb\" },\n]\n",
			`keyring /etc/ssh/k.toml:4: peers."0.0.0.0/0": ao item 1 ("alice") and ao item 2 ("bob") both have recv_id 2; the kernel refuses two keys with one recv_id for one prefix (EEXIST): give each key its own`},
		{"same name same key", k4 + "ao = [\n{ " + ok + " },\n{ name = \"alice\", send_id = 3, recv_id = 4, key_file = \"ao/alice.key\" },\n{ name = \"alice\", send_id = 5, recv_id = 6, key = \"SECRETa\" },\n]\n",
			`keyring /etc/ssh/k.toml:5: peers."0.0.0.0/0": ao item 1 ("alice") and ao item 3 ("alice") are the same key; a rollover lists a new key beside the old one: make one with ssh-md5-proxy keygen --ao`},
		{"host send_id twice", "[hosts.a]\nao = [\n{ send_id = 1, recv_id = 2, key = \"SECRETa\" },\n{ send_id = 1, recv_id = 3, key = \"SECRETb\" },\n]\n",
			`keyring /etc/ssh/k.toml:4: hosts.a: ao item 1 and ao item 2 both have send_id 1; the server tells keys apart by it: give the new key the IDs the server lists for it`},
		{"host recv_id twice", "[hosts.a]\nao = [\n{ name = \"new\", send_id = 1, recv_id = 2, key = \"SECRETa\" },\n{ send_id = 3, recv_id = 2, key = \"SECRETb\" },\n]\n",
			`keyring /etc/ssh/k.toml:4: hosts.a: ao item 1 ("new") and ao item 2 both have recv_id 2`},
		{"host same key", "[hosts.a]\nao = [\n{ send_id = 1, recv_id = 2, key = \"SECRETa\" },\n{ send_id = 3, recv_id = 4, key = \"SECRETa\" },\n]\n",
			`keyring /etc/ssh/k.toml:4: hosts.a: ao item 1 and ao item 2 are the same key; list each key once`},
		// Between [peers] entries.
		{"send_id of an overlapping prefix", item(ok) + "[peers.\"10.0.0.0/8\"]\nao = [{ name = \"bob\", send_id = 1, recv_id = 3, key = \"SECRETb\" }]\n",
			`keyring /etc/ssh/k.toml:4: peers."10.0.0.0/8": ao item 1 ("bob"): send_id 1 is also that of ao item 1 ("alice") of peers."0.0.0.0/0" (line 1), whose prefix overlaps; the kernel refuses two keys with one send_id where prefixes overlap (EEXIST): give one of them another`},
		{"recv_id of an overlapping prefix, later in the file", "[peers.\"10.1.0.0/16\"]\nao = [{ name = \"bob\", send_id = 3, recv_id = 2, key = \"SECRETb\" }]\n" + item(ok),
			`keyring /etc/ssh/k.toml:4: peers."0.0.0.0/0": ao item 1 ("alice"): recv_id 2 is also that of ao item 1 ("bob") of peers."10.1.0.0/16" (line 1), whose prefix overlaps; the kernel refuses two keys with one recv_id where prefixes overlap (EEXIST): give one of them another`},
		{"an interface meets any interface", item(ok) + "[peers.\"10.0.0.0/8\"]\ninterface = \"vrf-a\"\nao = [{ name = \"bob\", send_id = 3, recv_id = 2, key = \"SECRETb\" }]\n",
			`keyring /etc/ssh/k.toml:5: peers."10.0.0.0/8": ao item 1 ("bob"): recv_id 2 is also that of ao item 1 ("alice") of peers."0.0.0.0/0" (line 1), whose prefix overlaps on the same interface; the kernel refuses`},
		{"same user, same key, overlapping", item(ok) + "[peers.\"192.0.2.0/24\"]\nao = [{ name = \"alice\", send_id = 3, recv_id = 4, key = \"SECRETa\" }]\n",
			`keyring /etc/ssh/k.toml:4: peers."192.0.2.0/24": ao item 1 ("alice"): the same key as ao item 1 ("alice") of peers."0.0.0.0/0" (line 1), whose prefix overlaps; a rollover lists a new key beside the old one: make one with ssh-md5-proxy keygen --ao`},
		{"more than 256 keys overlap", aoPeers("0.0.0.0/0", 0, 200) + aoPeers("10.0.0.0/8", 200, 57),
			`keyring /etc/ssh/k.toml:204: peers."10.0.0.0/8": 257 TCP-AO keys overlap here (its own 57 and those of peers."0.0.0.0/0"), more than 256, the most overlapping prefixes can hold: each needs its own send_id and recv_id, and a KeyID is 8 bits; move some users to narrower prefixes that do not overlap`},
		// One backend per family.
		{"MD5 then AO in IPv4", "[peers.\"10.0.0.0/8\"]\nkey = \"SECRETm\"\n" + item(ok),
			`keyring /etc/ssh/k.toml:3: peers."0.0.0.0/0": TCP-AO (ao), but peers."10.0.0.0/8" (line 1) is TCP-MD5 (key or key_file); all IPv4 [peers] entries must be of one kind, as a socket that requires TCP-AO takes no TCP-MD5 key: give every IPv4 entry an ao list, or none`},
		{"AO then MD5 in IPv6", "[peers.\"::/0\"]\nao = [{ " + ok + " }]\n[peers.\"2001:db8::/32\"]\ninterface = \"vrf-a\"\nkey = \"SECRETm\"\n",
			`keyring /etc/ssh/k.toml:3: peers."2001:db8::/32": TCP-MD5 (key or key_file), but peers."::/0" (line 1) is TCP-AO (ao); all IPv6 [peers] entries must be of one kind, as a socket that requires TCP-AO takes no TCP-MD5 key: give every IPv6 entry an ao list, or none`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(kpath, []byte(tt.text), Both, fakeKeys(aoFiles))
			if err == nil {
				t.Fatal("Parse succeeded, want an error")
			}
			noLeak(t, err)
			if !strings.HasPrefix(err.Error(), tt.want) && !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error\n %s\nwant\n %s", err, tt.want)
			}
			if strings.HasPrefix(tt.want, "keyring ") && !strings.HasPrefix(err.Error(), tt.want) {
				t.Errorf("error does not start with the want")
			}
		})
	}
}

// TestParseAOAllowed: what the rules leave alone.
func TestParseAOAllowed(t *testing.T) {
	for name, text := range map[string]string{
		// IDs are per family: IPv4 and IPv6 keys never meet.
		"same IDs in each family": aoPeers("0.0.0.0/0", 0, 256) + aoPeers("::/0", 0, 256),
		// Prefixes that do not overlap may reuse IDs, under one that
		// covers both, as long as the three stay within 256.
		"disjoint prefixes reuse IDs": aoPeers("0.0.0.0/0", 0, 1) + aoPeers("10.0.0.0/8", 1, 255) + aoPeers("11.0.0.0/8", 1, 255),
		// Keys bound to two VRFs never meet.
		"two interfaces": "[peers.\"0.0.0.0/0\"]\ninterface = \"vrf-a\"\nao = [{ name = \"a\", send_id = 1, recv_id = 1, key = \"SECRETa\" }]\n" +
			"[peers.\"10.0.0.0/8\"]\ninterface = \"vrf-b\"\nao = [{ name = \"b\", send_id = 1, recv_id = 1, key = \"SECRETb\" }]\n",
		// A key in each family for one user, the same key.
		"same user and key in both families": "[peers.\"0.0.0.0/0\"]\nao = [{ name = \"a\", send_id = 1, recv_id = 1, key = \"SECRETa\" }]\n" +
			"[peers.\"::/0\"]\nao = [{ name = \"a\", send_id = 1, recv_id = 1, key = \"SECRETa\" }]\n",
		// One family TCP-MD5, the other TCP-AO.
		"MD5 for IPv4, AO for IPv6": "[peers.\"0.0.0.0/0\"]\nkey = \"SECRETm\"\n[peers.\"::/0\"]\nao = [{ name = \"a\", send_id = 1, recv_id = 1, key = \"SECRETa\" }]\n",
		// A rollover: one user, two keys.
		"rollover": "[peers.\"0.0.0.0/0\"]\nao = [{ name = \"a\", send_id = 1, recv_id = 1, key = \"SECRETa\" }, { name = \"a\", send_id = 2, recv_id = 2, key = \"SECRETb\" }]\n",
		// Up to MaxHostKeys on the client.
		"four host keys": "[hosts.a]\nao = [\n" + func() string {
			var b strings.Builder
			for i := range MaxHostKeys {
				fmt.Fprintf(&b, "{ send_id = %d, recv_id = %d, key = \"SECRET%d\" },\n", i, i, i)
			}
			return b.String()
		}() + "]\n",
		// In inline tables all the way down: at the nesting bound.
		"inline entry": "peers = { \"::/0\" = { ao = [{ name = \"a\", send_id = 1, recv_id = 1, key = \"SECRETa\" }] } }\n",
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := Parse(kpath, []byte(text), Both, fakeKeys(aoFiles)); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestParseAOSide: a broken TCP-AO entry of the side a program does not
// use is a warning; its keys are left out either way.
func TestParseAOSide(t *testing.T) {
	text := "[peers.\"0.0.0.0/0\"]\nao = [{ name = \"a\", send_id = 1, recv_id = 1, key = \"SECRETa\" }]\n" +
		"[peers.\"10.0.0.0/8\"]\nao = [{ name = \"b\", send_id = 1, recv_id = 2, key = \"SECRETb\" }]\n" +
		"[hosts.a]\nao = [{ send_id = 1, recv_id = 1, key = \"SECRETh\" }]\n" +
		"[hosts.b]\nao = [{ send_id = 1, key = \"SECRETh\" }]\n"
	// Both: the first problem in the file; those between entries come
	// after those of single entries.
	if _, err := Parse(kpath, []byte(text), Both, nil); err == nil || !strings.Contains(err.Error(), "hosts.b: ao item 1: no recv_id") {
		t.Fatalf("Both: %v", err)
	}
	client := strings.TrimSuffix(text, "[hosts.b]\nao = [{ send_id = 1, key = \"SECRETh\" }]\n")
	k, err := Parse(kpath, []byte(client), Client, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(k.Peers) != 0 || len(k.Hosts) != 1 || len(k.Warnings) != 1 {
		t.Fatalf("Client: %d peers, %d hosts, warnings %v", len(k.Peers), len(k.Hosts), k.Warnings)
	}
	if !strings.Contains(k.Warnings[0].Error(), `peers."10.0.0.0/8": ao item 1 ("b"): send_id 1 is also that of`) {
		t.Errorf("Client warnings: %v", k.Warnings)
	}
	text = strings.Replace(text, "send_id = 1, recv_id = 2", "send_id = 2, recv_id = 2", 1)
	k, err = Parse(kpath, []byte(text), Server, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(k.Peers) != 2 || len(k.Hosts) != 0 || len(k.Warnings) != 1 || !strings.Contains(k.Warnings[0].Error(), "hosts.b") {
		t.Fatalf("Server: %d peers, %d hosts, warnings %v", len(k.Peers), len(k.Hosts), k.Warnings)
	}
	if k.Peers[0].Prefix.String() != "10.0.0.0/8" || k.Peers[0].AO[0].Name != "b" {
		t.Errorf("Server: peers %v", k.Peers)
	}
}

func TestItemLines(t *testing.T) {
	for _, tt := range []struct {
		text  string
		start int
		want  string
	}{
		{"ao = [{a=1}, {b=2}]\n", 1, "[1 1]"},
		{"x = 1\nao = [ # [ not this\n  {a=\"[,]\"},\n\n  {b=[1,2]}, # ,\n]\n", 2, "[3 5]"},
		{"ao = [\n'''\n,''',\n\"x\"]\n", 1, "[2 4]"},
		{"b = { ao = [ {a=1},\n{b=1} ] }\n", 1, "[1 2]"},
		{"ao = []\n", 1, "[]"},
	} {
		p := &parser{data: []byte(tt.text)}
		if got := fmt.Sprint(inlineItemLines(p.data, tt.start, p.lineStart(tt.start))); got != tt.want {
			t.Errorf("inlineItemLines(%q, %d) = %s, want %s", tt.text, tt.start, got, tt.want)
		}
	}
}
