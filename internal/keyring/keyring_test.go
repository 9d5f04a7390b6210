package keyring

import (
	"bytes"
	"errors"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sshmd5/sshmd5/internal/tcpsig"
)

// secret is distinctive so that a leak into any message is easy to catch.
const secret = "SECRETxyzzy"

const kpath = "/etc/ssh/k.toml"

// fakeKeys serves key files from memory, as Load's reader would from disk.
func fakeKeys(files map[string]string) func(string) ([]byte, error) {
	return func(p string) ([]byte, error) {
		b, ok := files[p]
		if !ok {
			return nil, fs.ErrNotExist
		}
		return []byte(b), nil
	}
}

func noLeak(t *testing.T, err error) {
	t.Helper()
	if err != nil && strings.Contains(err.Error(), "SECRET") {
		t.Errorf("error leaks the secret (message withheld)")
	}
}

func TestParseErrors(t *testing.T) {
	files := map[string]string{
		"/etc/ssh/md5/empty.key": "\n",
		"/etc/ssh/md5/long.key":  strings.Repeat("S", 81),
		"/etc/ssh/md5/ok.key":    secret + "\n",
	}
	tests := []struct {
		name, text string
		want       []string // substrings of the error
	}{
		{"syntax", "[hosts.a\n", []string{kpath + ":2:", "syntax error at column 9", "table header is malformed"}},
		{"syntax on key line", "[hosts.a]\nkey = " + secret + "\n", []string{kpath + ":2:", "not a quoted string"}},
		{"syntax after key value", "[hosts.a]\nkey = 1" + secret + "\n", []string{kpath + ":2:", "more text follows a value"}},
		{"bad escape in multiline key", "[hosts.a]\nkey = \"\"\"x\n" + secret + "\\x\"\"\"\n", []string{kpath + ":3:", "bad escape"}},
		{"inline table key", "hosts = { a = { key = " + secret + " } }\n", []string{kpath + ":1:", "not a quoted string"}},
		{"escaped key name", "[hosts.a]\n\"k\\u0065y\" = 1" + secret + "\n", []string{kpath + ":2:", "more text follows"}},
		{"newline in key", "[hosts.a]\nkey = \"" + secret + "\n\"\n", []string{kpath + ":2:", "on one line"}},
		{"wrong type", "[hosts.a]\nkey = 5\n", []string{kpath + ":2:", "hosts.a.key: not a string or a list of strings", `write key = "..." or, during a rotation, key = ["NEW", "OLD"]`}},
		{"peers wrong type", "[peers.\"::/0\"]\nkey = 5\n", []string{kpath + ":2:", `peers."::/0".key: not a string`, `e.g. key_file = "md5/bastion.key"`}},
		{"too many keys", "[hosts.a]\nhostname = \"a.example\"\nkey_file = [\"ok.key\", \"b\", \"c\", \"d\", \"e\"]\n", []string{kpath + ":3:", "hosts.a: key_file lists 5 keys, more than 4, the limit", "the new one and the old one"}},
		{"empty key list", "[hosts.a]\nkey = []\n", []string{kpath + ":2:", "hosts.a: key is an empty list", `key = ["NEW", "OLD"]`}},
		{"key list item", "[hosts.a]\nkey_file = [\"ok.key\", 5]\n", []string{kpath + ":2:", "hosts.a: key_file: item 2 is not a string"}},
		{"same key twice", "[hosts.a]\nkey_file = [\"md5/ok.key\", \"/etc/ssh/md5/ok.key\"]\n", []string{kpath + ":2:", "hosts.a: key_file: keys 1 and 2 are the same key; list each key once"}},
		{"missing file in a list", "[hosts.a]\nkey_file = [\"md5/ok.key\", \"nope.key\"]\n", []string{kpath + ":2:", "hosts.a: key_file /etc/ssh/nope.key:"}},
		{"bad key in a list", "[hosts.a]\nkey_file = [\"md5/ok.key\", \"md5/empty.key\"]\n", []string{kpath + ":2:", "key_file /etc/ssh/md5/empty.key: key is 0 bytes"}},
		{"peers key list", "[peers.\"0.0.0.0/0\"]\nkey_file = [\"ok.key\"]\n", []string{kpath + ":2:", `peers."0.0.0.0/0".key_file: a list; a [peers] entry has one key`, "Rotating a key"}},
		{"wrong type dotted name", "[hosts.\"a.b\"]\nkey = 5\n", []string{kpath + ":2:", `hosts."a.b".key: not a string`}},
		{"entry not a table", "[hosts]\na = \"" + secret + "\"\n", []string{kpath + ":2:", "hosts.a: not a table", "[hosts.bastion]"}},
		{"hosts not a table", "# top\nhosts = 5\n", []string{kpath + ":2:", "hosts: not a table", "[hosts.bastion]"}},
		{"peers not a table", "peers = \"x\"\n", []string{kpath + ":1:", "peers: not a table", `[peers."0.0.0.0/0"]`}},
		{"unknown field", "[hosts.a]\nkey = \"" + secret + "\"\nkeyfile = \"x\"\n", []string{kpath + ":3:", "hosts.a", `unknown field "keyfile"`, "the fields are hostname, key_file, key and ao"}},
		{"unknown peer field", "[peers.\"10.0.0.0/8\"]\nkey = \"" + secret + "\"\niface = \"x\"\n", []string{kpath + ":3:", `peers."10.0.0.0/8"`, `unknown field "iface"`, "interface"}},
		{"unknown table", "[host.a]\nkey = \"" + secret + "\"\n", []string{kpath + ":1:", "unknown table host", "[hosts] and [peers]"}},
		{"unknown top-level key", "foo = 1\n", []string{kpath + ":1:", "unknown table foo"}},
		{"bad cidr", "[peers.\"10.0.0.0/33\"]\nkey = \"" + secret + "\"\n", []string{kpath + ":1:", `peers."10.0.0.0/33"`, "bad prefix: prefix length out of range; write a CIDR such as 10.0.0.0/8 or a single address"}},
		{"bad address", "[peers.bastion]\nkey = \"" + secret + "\"\n", []string{kpath + ":1:", "peers.bastion: bad prefix: unable to parse IP; write a CIDR"}},
		{"host bits", "\n[peers.\"10.0.0.1/8\"]\nkey = \"" + secret + "\"\n", []string{kpath + ":2:", `peers."10.0.0.1/8"`, "host bits", `write "10.0.0.0/8"`}},
		{"host bits v6", "[peers.\"2001:db8::1/32\"]\nkey = \"" + secret + "\"\n", []string{kpath + ":1:", `write "2001:db8::/32"`}},
		{"v4-mapped", "[peers.\"::ffff:1.2.3.4\"]\nkey = \"" + secret + "\"\n", []string{kpath + ":1:", `peers."::ffff:1.2.3.4"`, "v4-mapped", "write IPv4 as 1.2.3.4"}},
		{"v4-mapped prefix", "[peers.\"::ffff:1.2.3.0/120\"]\nkey = \"" + secret + "\"\n", []string{"write IPv4 as 1.2.3.0/24"}},
		{"zone", "[peers.\"fe80::1%eth0\"]\nkey = \"" + secret + "\"\n", []string{kpath + ":1:", `peers."fe80::1%eth0": bad prefix: addresses with a zone`, "interface ="}},
		{"duplicate peer", "[peers.\"10.0.0.1\"]\nkey = \"" + secret + "\"\n[peers.\"10.0.0.1/32\"]\nkey = \"" + secret + "\"\n", []string{kpath + ":3:", `peers."10.0.0.1/32"`, `same prefix 10.0.0.1/32`, `peers."10.0.0.1"`, "keep one"}},
		{"duplicate peer v6 spelling", "[peers.\"2001:db8::/32\"]\nkey = \"" + secret + "\"\n[peers.\"2001:DB8:0::/32\"]\nkey = \"" + secret + "\"\n", []string{kpath + ":3:", "same prefix"}},
		{"duplicate host prefix", "[hosts.\"192.0.2.7\"]\nkey = \"" + secret + "\"\n[hosts.\"192.0.2.7/32\"]\nkey = \"" + secret + "\"\n", []string{kpath + ":3:", "same prefix"}},
		{"host bad cidr", "[hosts.\"10.0.0.0/33\"]\nkey = \"" + secret + "\"\n", []string{kpath + ":1:", "bad prefix"}},
		{"host bad glob", "[hosts.\"web[1\"]\nkey = \"" + secret + "\"\n", []string{kpath + ":1:", `hosts."web[1"`, "bad glob"}},
		{"empty name", "[hosts.\"\"]\nkey = \"" + secret + "\"\n", []string{kpath + ":1:", `hosts."": empty name`}},
		{"empty hostname", "[hosts.a]\nhostname = \"\"\nkey = \"" + secret + "\"\n", []string{kpath + ":1:", "hosts.a", "hostname is empty"}},
		{"both keys", "[hosts.a]\nkey = \"" + secret + "\"\nkey_file = \"md5/ok.key\"\n", []string{kpath + ":1:", "hosts.a", "both key and key_file", "keep one"}},
		{"no key", "[hosts.a]\nhostname = \"a.example\"\n", []string{kpath + ":1:", "hosts.a", "no key", "key_file ="}},
		{"no key inline table", "[hosts]\nb = {}\n", []string{kpath + ":2:", "hosts.b", "no key"}},
		{"empty key", "[peers.\"10.0.0.0/8\"]\nkey = \"\"\n", []string{kpath + ":1:", "key is 0 bytes", "1 to 80"}},
		{"long key", "[peers.\"10.0.0.0/8\"]\nkey = \"" + secret + strings.Repeat("x", 70) + "\"\n", []string{kpath + ":1:", "key is 81 bytes", "1 to 80"}},
		{"empty key_file name", "[hosts.a]\nkey_file = \"\"\n", []string{kpath + ":1:", "key_file is empty"}},
		{"missing key_file", "[hosts.a]\nkey_file = \"md5/nope.key\"\n", []string{kpath + ":1:", "hosts.a", "key_file /etc/ssh/md5/nope.key: file does not exist; create it or fix key_file (a relative key_file is taken from the keyring's folder)"}},
		{"missing absolute key_file", "[hosts.a]\nkey_file = \"/etc/ssh/md5/nope.key\"\n", []string{"key_file /etc/ssh/md5/nope.key: file does not exist; create it or fix key_file"}},
		{"empty key_file", "[hosts.a]\nkey_file = \"md5/empty.key\"\n", []string{kpath + ":1:", "key_file /etc/ssh/md5/empty.key", "key is 0 bytes", "1 to 80"}},
		{"long key_file", "[hosts.a]\nkey_file = \"/etc/ssh/md5/long.key\"\n", []string{kpath + ":1:", "key is 81 bytes"}},
		{"bad interface", "[peers.\"10.0.0.0/8\"]\nkey = \"" + secret + "\"\ninterface = \"a/b\"\n", []string{kpath + ":1:", `peers."10.0.0.0/8"`, `interface "a/b"`, "ip link"}},
		{"long interface", "[peers.\"10.0.0.0/8\"]\nkey = \"" + secret + "\"\ninterface = \"abcdefghijklmnop\"\n", []string{"longer than 15"}},
		{"space interface", "[peers.\"10.0.0.0/8\"]\nkey = \"" + secret + "\"\ninterface = \"a b\"\n", []string{"whitespace"}},
		{"empty interface", "[peers.\"10.0.0.0/8\"]\nkey = \"" + secret + "\"\ninterface = \"\"\n", []string{"interface is empty"}},
		// Never the parser's quote of a value, whatever the field.
		{"unquoted value of a mistyped field", "[hosts.a]\nkye = " + secret + "abcdef\n", []string{kpath + ":2:", "syntax error at column 7", "not a quoted string"}},
		{"unquoted hostname", "[hosts.a]\nhostname = " + secret + "\n", []string{kpath + ":2:", "not a quoted string"}},
		{"unquoted peer field", "[peers.\"::/0\"]\ninterface = " + secret + "x\n", []string{kpath + ":2:", "not a quoted string"}},
		{"bad integer", "[hosts.a]\nkey = 0" + secret + "\n", []string{kpath + ":2:"}},
		{"bad escape", "[hosts.a]\nhostname = \"" + secret + "\\q\"\n", []string{kpath + ":2:", "bad escape"}},
		{"dotted field", "[hosts.a]\nkey.a = \"" + secret + "\"\n", []string{kpath + ":2:", "hosts.a.key: not a string"}},
		{"dotted field inline", "[hosts]\na = { key.b = \"" + secret + "\" }\n", []string{kpath + ":2:", "hosts.a.key: not a string"}},
		{"duplicate field", "[hosts.a]\nkey = \"" + secret + "\"\nkey = \"" + secret + "2\"\n", []string{kpath + ":3:", "hosts.a.key: set twice (first on line 2); keep one"}},
		{"duplicate table", "[hosts.a]\nkey = \"" + secret + "\"\n\n[hosts.a]\nkey = \"" + secret + "\"\n", []string{kpath + ":4:", "hosts.a: set twice (first on line 1); keep one"}},
		{"array of tables", "[[hosts]]\nkey = \"" + secret + "\"\n", []string{kpath + ":1:", "[[hosts]] is an array of tables", "entries are tables such as [hosts.bastion]"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(kpath, []byte(tt.text), Both, fakeKeys(files))
			if err == nil {
				t.Fatal("Parse succeeded, want an error")
			}
			noLeak(t, err)
			for _, jargon := range []string{"netip", "ParseAddr", "keyring.file", "int64", "map["} {
				if strings.Contains(err.Error(), jargon) {
					t.Errorf("error %q speaks Go (%q)", err, jargon)
				}
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestParse(t *testing.T) {
	text := `# a keyring
[hosts.bastion]
hostname = "bastion.example.net"
key_file = "md5/bastion.key"

[hosts."*.corp.example"]
key = "inline-corp"

[peers."0.0.0.0/0"]
key_file = "/etc/ssh/md5/default.key"

[peers."2001:db8::/32"]
key = "v6"
interface = "vrf-mgmt"

[peers."192.0.2.7"]
key = "single4"

[peers."2001:db8::7"]
key = "single6"

[peers."10.0.0.0/8"]
key = "ten"

[peers."10.0.0.0/8 "]
key = "x"
`
	// The last entry has a trailing space in its name: a bad prefix.
	if _, err := Parse(kpath, []byte(text), Both, nil); err == nil {
		t.Fatal("name with a trailing space accepted")
	}
	text = strings.TrimSuffix(text, "[peers.\"10.0.0.0/8 \"]\nkey = \"x\"\n")
	files := map[string]string{
		"/etc/ssh/md5/bastion.key": "bastion\n",
		"/etc/ssh/md5/default.key": "default",
	}
	k, err := Parse(kpath, []byte(text), Both, fakeKeys(files))
	if err != nil {
		t.Fatal(err)
	}
	if k.Path != kpath {
		t.Errorf("Path = %q", k.Path)
	}
	wantHosts := []Host{
		{Name: "bastion", Hostname: "bastion.example.net", Keys: []HostKey{{Secret: tcpsig.Secret("bastion"), Source: "key_file /etc/ssh/md5/bastion.key"}}, Line: 2},
		{Name: "*.corp.example", Keys: []HostKey{{Secret: tcpsig.Secret("inline-corp"), Source: "inline key"}}, Line: 6},
	}
	if len(k.Hosts) != len(wantHosts) {
		t.Fatalf("got %d hosts, want %d", len(k.Hosts), len(wantHosts))
	}
	for i, w := range wantHosts {
		g := k.Hosts[i]
		if g.Name != w.Name || g.Hostname != w.Hostname || len(g.Keys) != 1 || g.Keys[0].Source != w.Keys[0].Source || g.Line != w.Line {
			t.Errorf("host %d = %+v, want %+v", i, g, w)
		}
		if len(g.Keys) == 1 && !bytes.Equal(g.Keys[0].Secret, w.Keys[0].Secret) {
			t.Errorf("host %d: secret differs", i)
		}
	}
	wantPeers := []struct {
		prefix, iface, secret string
		line                  int
	}{
		{"2001:db8::7/128", "", "single6", 19},
		{"192.0.2.7/32", "", "single4", 16},
		{"2001:db8::/32", "vrf-mgmt", "v6", 12},
		{"10.0.0.0/8", "", "ten", 22},
		{"0.0.0.0/0", "", "default", 9},
	}
	if len(k.Peers) != len(wantPeers) {
		t.Fatalf("got %d peers, want %d", len(k.Peers), len(wantPeers))
	}
	for i, w := range wantPeers {
		g := k.Peers[i]
		if g.Prefix != netip.MustParsePrefix(w.prefix) || g.Interface != w.iface || g.Line != w.line {
			t.Errorf("peer %d = %v %q line %d, want %s %q line %d", i, g.Prefix, g.Interface, g.Line, w.prefix, w.iface, w.line)
		}
		if !bytes.Equal(g.Secret, []byte(w.secret)) {
			t.Errorf("peer %d: secret differs", i)
		}
	}
	key := k.Peers[2].Key(7)
	if key.Prefix != k.Peers[2].Prefix || key.Ifindex != 7 || !key.Secret.Equal(k.Peers[2].Secret) {
		t.Errorf("Key(7) = %v", key)
	}
	if err := key.Validate(); err != nil {
		t.Error(err)
	}
}

// A [hosts] entry may list keys newest first; they come out in that order,
// each with its source, and the old single-key form still reads as one.
func TestHostKeyList(t *testing.T) {
	files := map[string]string{"/etc/ssh/new.key": "NEW\n", "/etc/ssh/old.key": "OLD"}
	text := "[hosts.a]\nkey_file = [\"new.key\", \"old.key\"]\n[hosts.b]\nkey = [\"only\"]\n[hosts.c]\nkey = \"single\"\n" +
		"[hosts.d]\nkey_file = [\n  \"new.key\",  # the one the server will switch to\n  \"old.key\",\n]\n"
	k, err := Parse(kpath, []byte(text), Client, fakeKeys(files))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]HostKey{
		"a": {{Secret: tcpsig.Secret("NEW"), Source: "key_file /etc/ssh/new.key (key 1 of 2)"}, {Secret: tcpsig.Secret("OLD"), Source: "key_file /etc/ssh/old.key (key 2 of 2)"}},
		"b": {{Secret: tcpsig.Secret("only"), Source: "inline key"}},
		"c": {{Secret: tcpsig.Secret("single"), Source: "inline key"}},
		"d": {{Secret: tcpsig.Secret("NEW"), Source: "key_file /etc/ssh/new.key (key 1 of 2)"}, {Secret: tcpsig.Secret("OLD"), Source: "key_file /etc/ssh/old.key (key 2 of 2)"}},
	}
	if len(k.Hosts) != len(want) {
		t.Fatalf("got %d hosts", len(k.Hosts))
	}
	for _, h := range k.Hosts {
		w := want[h.Name]
		if len(h.Keys) != len(w) {
			t.Errorf("%s: %d keys, want %d", h.Name, len(h.Keys), len(w))
			continue
		}
		for i := range w {
			if !h.Keys[i].Secret.Equal(w[i].Secret) || h.Keys[i].Source != w[i].Source {
				t.Errorf("%s key %d: source %q, want %q (or the secret differs)", h.Name, i+1, h.Keys[i].Source, w[i].Source)
			}
		}
		if s := h.Secrets(); len(s) != len(w) || !s[0].Equal(w[0].Secret) {
			t.Errorf("%s: Secrets() out of order", h.Name)
		}
	}
	// MaxHostKeys itself is fine.
	text = "[hosts.a]\nkey = [\"1\", \"2\", \"3\", \"4\"]\n"
	if k, err := Parse(kpath, []byte(text), Client, nil); err != nil || len(k.Hosts[0].Keys) != MaxHostKeys {
		t.Errorf("%d keys: %v", MaxHostKeys, err)
	}
}

func TestParseEmpty(t *testing.T) {
	for _, text := range []string{"", "# nothing\n", "[hosts]\n[peers]\n"} {
		k, err := Parse(kpath, []byte(text), Both, nil)
		if err != nil {
			t.Errorf("%q: %v", text, err)
			continue
		}
		if len(k.Hosts) != 0 || len(k.Peers) != 0 {
			t.Errorf("%q: got entries", text)
		}
	}
}

func TestPeersOrder(t *testing.T) {
	// The same prefix on an interface and on any is allowed: the kernel
	// keys them apart.
	text := `[peers]
"10.0.0.0/8" = { key = "a", interface = "vrf-b" }
"10.0.0.0" = { key = "c" }
"::/0" = { key = "d" }
"0.0.0.0/0" = { key = "e" }
"10.1.0.0/16" = { key = "f" }
"10.0.0.0/8" = { key = "g" }
`
	if _, err := Parse(kpath, []byte(text), Both, nil); err == nil {
		t.Fatal("duplicate key accepted")
	}
	text = strings.Replace(text, `"10.0.0.0/8" = { key = "g" }`, `"10.0.0.0/08" = { key = "g" }`, 1)
	if _, err := Parse(kpath, []byte(text), Both, nil); err == nil {
		t.Fatal("leading zero in the prefix length accepted")
	}
	text = strings.Replace(text, `"10.0.0.0/08" = { key = "g" }`, "", 1)
	k, err := Parse(kpath, []byte(text), Both, nil)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range k.Peers {
		got = append(got, p.Prefix.String()+"%"+p.Interface)
	}
	want := "10.0.0.0/32% 10.1.0.0/16% 10.0.0.0/8%vrf-b 0.0.0.0/0% ::/0%"
	if strings.Join(got, " ") != want {
		t.Errorf("order = %s, want %s", strings.Join(got, " "), want)
	}
	if k.Peers[0].Line != 3 || k.Peers[2].Line != 2 {
		t.Errorf("lines of inline-table entries: %d, %d", k.Peers[0].Line, k.Peers[2].Line)
	}
}

func TestPeerSameInterfaceDuplicate(t *testing.T) {
	text := `[peers]
"10.0.0.0/8" = { key = "a", interface = "vrf" }
"10.0.0.0/8 " = { key = "b" }
"10.0.0.1/32" = { key = "d", interface = "vrf" }
"10.0.0.1" = { key = "e", interface = "vrf" }
`
	_, err := Parse(kpath, []byte(text), Both, nil)
	if err == nil || !strings.Contains(err.Error(), kpath+`:3: peers."10.0.0.0/8 ": bad prefix`) {
		t.Errorf("err = %v", err)
	}
	text = strings.Replace(text, `"10.0.0.0/8 "`, `"10.0.0.0/8"`, 1)
	if _, err := Parse(kpath, []byte(text), Both, nil); err == nil {
		t.Error("duplicate key accepted")
	}
	text = strings.Replace(text, `"10.0.0.0/8" = { key = "b" }`, `"10.0.0.0/9" = { key = "b" }`, 1)
	_, err = Parse(kpath, []byte(text), Both, nil)
	if err == nil || !strings.Contains(err.Error(), kpath+`:5: peers."10.0.0.1": same prefix 10.0.0.1/32 and interface as peers."10.0.0.1/32"`) {
		t.Errorf("err = %v", err)
	}
}

func TestKeyFileNewline(t *testing.T) {
	tests := []struct {
		content string
		want    string // "" = error
	}{
		{"abc\n", "abc"},
		{"abc", "abc"},
		{"abc\n\n", "abc\n"},
		{"abc\r\n", "abc\r"},
		{" abc \n", " abc "},
		{strings.Repeat("k", 80) + "\n", strings.Repeat("k", 80)},
		{strings.Repeat("k", 80), strings.Repeat("k", 80)},
		{strings.Repeat("k", 81), ""},
		{strings.Repeat("k", 81) + "\n", ""},
		{"", ""},
		{"\n", ""},
	}
	for i, tt := range tests {
		files := map[string]string{"/etc/ssh/x.key": tt.content}
		k, err := Parse(kpath, []byte("[hosts.a]\nkey_file = \"x.key\"\n"), Both, fakeKeys(files))
		if tt.want == "" {
			if err == nil {
				t.Errorf("case %d: accepted a %d-byte key file", i, len(tt.content))
			}
			continue
		}
		if err != nil {
			t.Errorf("case %d: %v", i, err)
			continue
		}
		if !bytes.Equal(k.Hosts[0].Keys[0].Secret, []byte(tt.want)) {
			t.Errorf("case %d: secret differs", i)
		}
	}
}

func TestInlineKeyLength(t *testing.T) {
	for _, n := range []int{1, 80} {
		text := "[hosts.a]\nkey = \"" + strings.Repeat("k", n) + "\"\n"
		if _, err := Parse(kpath, []byte(text), Both, nil); err != nil {
			t.Errorf("%d bytes: %v", n, err)
		}
	}
	// Bytes, not runes: 27 three-byte runes are 81 bytes.
	text := "[hosts.a]\nkey = \"" + strings.Repeat("€", 27) + "\"\n"
	if _, err := Parse(kpath, []byte(text), Both, nil); err == nil {
		t.Error("81-byte key accepted")
	}
}

func TestSyntaxErrorNeverQuotes(t *testing.T) {
	// Off key lines too: the parser's message would quote "bare".
	_, err := Parse(kpath, []byte("[hosts.a]\nhostname = bare\n"), Both, nil)
	if err == nil || strings.Contains(err.Error(), "bare") || !strings.Contains(err.Error(), kpath+":2:") {
		t.Errorf("err = %v", err)
	}
}

func TestRelativeKeyFile(t *testing.T) {
	var got string
	read := func(p string) ([]byte, error) { got = p; return []byte("k"), nil }
	if _, err := Parse("rel/k.toml", []byte("[hosts.a]\nkey_file = \"a.key\"\n"), Both, read); err != nil {
		t.Fatal(err)
	}
	wd, _ := os.Getwd()
	if got != filepath.Join(wd, "rel", "a.key") {
		t.Errorf("read %q", got)
	}
	if _, err := Parse(kpath, []byte("[hosts.a]\nkey_file = \"/abs/a.key\"\n"), Both, read); err != nil || got != "/abs/a.key" {
		t.Errorf("read %q, err %v", got, err)
	}
	failing := func(string) ([]byte, error) { return nil, errors.New("boom") }
	_, err := Parse(kpath, []byte("[hosts.a]\nkey_file = \"a.key\"\n"), Both, failing)
	if err == nil || !strings.Contains(err.Error(), "key_file /etc/ssh/a.key: boom") {
		t.Errorf("err = %v", err)
	}
}

func TestDefaultPaths(t *testing.T) {
	t.Setenv("SSH_MD5_KEYRING", "/x/k.toml")
	if p, err := DefaultClientPath(); err != nil || p != "/x/k.toml" {
		t.Errorf("DefaultClientPath = %q, %v", p, err)
	}
	t.Setenv("SSH_MD5_KEYRING", "")
	t.Setenv("HOME", "/home/u")
	if p, err := DefaultClientPath(); err != nil || p != "/home/u/.ssh/md5-keyring.toml" {
		t.Errorf("DefaultClientPath = %q, %v", p, err)
	}
	t.Setenv("CREDENTIALS_DIRECTORY", "/run/credentials/sshd.service")
	if p := DefaultServerPath(); p != "/run/credentials/sshd.service/md5-keyring.toml" {
		t.Errorf("DefaultServerPath = %q", p)
	}
	t.Setenv("CREDENTIALS_DIRECTORY", "")
	if p := DefaultServerPath(); p != "/etc/ssh/md5-keyring.toml" {
		t.Errorf("DefaultServerPath = %q", p)
	}
}

// TestSideWarnings: the half of a keyring a side does not use cannot stop
// it. Its problems are warnings, its entries are left out, and the half
// it uses stays strict.
func TestSideWarnings(t *testing.T) {
	files := map[string]string{"/etc/ssh/md5/ok.key": secret}
	const mixed = "[hosts.bastion]\nkey_file = \"md5/missing.key\"\n" +
		"[hosts.web]\nkye = \"x\"\n" +
		"[hosts]\nother = 5\n" +
		"[peers.\"0.0.0.0/0\"]\nkey_file = \"md5/ok.key\"\n"
	k, err := Parse(kpath, []byte(mixed), Server, fakeKeys(files))
	if err != nil {
		t.Fatalf("Server: %v", err)
	}
	if len(k.Peers) != 1 || len(k.Hosts) != 0 {
		t.Errorf("Server: %d peers, %d hosts; want 1 and 0", len(k.Peers), len(k.Hosts))
	}
	want := []string{
		kpath + ":1: hosts.bastion: key_file /etc/ssh/md5/missing.key: file does not exist",
		kpath + ":4: hosts.web: unknown field \"kye\"",
		kpath + ":6: hosts.other: not a table",
	}
	if len(k.Warnings) != len(want) {
		t.Fatalf("Server: warnings %q, want %d", k.Warnings, len(want))
	}
	for i, w := range want {
		if !strings.Contains(k.Warnings[i].Error(), w) {
			t.Errorf("warning %d = %q, want %q", i, k.Warnings[i], w)
		}
	}
	for _, side := range []Side{Client, Both} {
		if _, err := Parse(kpath, []byte(mixed), side, fakeKeys(files)); err == nil || !strings.Contains(err.Error(), want[0]) {
			t.Errorf("side %d: err = %v, want %q", side, err, want[0])
		}
	}

	// The reverse: the client ignores a broken [peers].
	const client = "[peers.\"0.0.0.0/0\"]\nkey_file = \"md5/missing.key\"\n[peers.\"10.0.0.1/8\"]\nkey = \"x\"\n[hosts.bastion]\nkey_file = \"md5/ok.key\"\n"
	k, err = Parse(kpath, []byte(client), Client, fakeKeys(files))
	if err != nil {
		t.Fatalf("Client: %v", err)
	}
	if len(k.Hosts) != 1 || len(k.Peers) != 0 || len(k.Warnings) != 2 {
		t.Errorf("Client: %d hosts, %d peers, warnings %q", len(k.Hosts), len(k.Peers), k.Warnings)
	}
	if _, err := Parse(kpath, []byte(client), Server, fakeKeys(files)); err == nil {
		t.Error("Server accepted a missing [peers] key file")
	}

	// A syntax error, or a table that is neither, stops every side.
	for _, text := range []string{"[hosts.a]\nkey = x\n[peers.\"::/0\"]\nkey = \"k\"\n", "[host.a]\nkey = \"k\"\n"} {
		for _, side := range []Side{Client, Server} {
			if _, err := Parse(kpath, []byte(text), side, nil); err == nil {
				t.Errorf("side %d accepted %q", side, text)
			}
		}
	}
}

// TestDottedEntries: entries written as dotted keys, which name their
// tables only implicitly, are entries like any other (they used to be
// dropped without a word).
func TestDottedEntries(t *testing.T) {
	text := "peers.\"::/0\".key = \"a\"\n" +
		"hosts.bastion.key = \"b\"\nhosts.bastion.hostname = \"b.example\"\n" +
		"[peers]\n\"10.0.0.0/8\".key = \"c\"\n"
	k, err := Parse(kpath, []byte(text), Both, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(k.Peers) != 2 || len(k.Hosts) != 1 || k.Hosts[0].Hostname != "b.example" || k.Hosts[0].Line != 2 {
		t.Fatalf("peers %v, hosts %+v", k.Peers, k.Hosts)
	}
	if k.Peers[0].Line != 5 || k.Peers[1].Line != 1 {
		t.Errorf("lines %d, %d; want 5, 1", k.Peers[0].Line, k.Peers[1].Line)
	}
	_, err = Parse(kpath, []byte("peers.\"::/0\".kye = \"a\"\n"), Both, nil)
	if err == nil || !strings.Contains(err.Error(), kpath+`:1: peers."::/0": unknown field "kye"`) {
		t.Errorf("err = %v", err)
	}
}
