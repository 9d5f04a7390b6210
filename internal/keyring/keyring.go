// Package keyring reads the TOML keyring that ssh-md5-proxy and
// sshd-md5-socket share.
//
// A keyring has two tables. [hosts] says which key the client signs with
// when it dials; [peers] says which key each peer must sign with when it
// connects to sshd.
//
//	# client side
//	[hosts.bastion]                  # the alias as typed to ssh (%n), a glob
//	                                 # ("*.corp.example"), or a literal address
//	                                 # or CIDR ("192.0.2.7", "10.0.0.0/8")
//	hostname = "bastion.example.net" # optional: also match when ssh dials this (%h)
//	key_file = "md5/bastion.key"     # relative to the keyring's folder, or absolute
//	[hosts.db]                       # during a rotation: up to MaxHostKeys keys,
//	key_file = ["md5/db-new.key", "md5/db-old.key"] # newest first, all dialled at once
//
//	# server side
//	[peers."0.0.0.0/0"]              # CIDR or single address, IPv4 or IPv6
//	key_file = "/etc/ssh/md5/default.key"
//	[peers."2001:db8::/32"]
//	key = "..."                      # inline key
//	interface = "vrf-mgmt"           # optional: only on this interface (VRF)
//
// A TCP-MD5 entry has exactly one of key (the string's bytes) and key_file (the
// file's bytes, less one trailing "\n" if there is one; a "\r" before it is
// kept). A key is 1 to 80 bytes, the kernel's limit. In [hosts], either may
// be a list of 1 to MaxHostKeys keys, newest first, so that a client can
// hold a new key beside the old one while the server switches; a [peers]
// entry has one key, as the kernel checks a peer against one. The keyring and every
// key file must be regular files owned by the user or root and not
// accessible to group or others, as ssh demands of private keys.
//
// Prefixes are written masked ("10.0.0.0/8", not "10.0.0.1/8") and IPv4 is
// written as IPv4, not v4-mapped; a single address means /32 or /128. Two
// [peers] entries may not name the same prefix and interface.
//
// A TCP-AO entry (RFC 5925) has an ao list instead of key or key_file:
// one key per user, told apart by their IDs, so that one user's key can
// be revoked without re-keying the others.
//
//	[peers."0.0.0.0/0"]              # server side: every user's key
//	ao = [
//	  { name = "alice", send_id = 101, recv_id = 1, key_file = "/etc/ssh/ao/alice.key" },
//	  { name = "bob",   send_id = 102, recv_id = 2, key_file = "/etc/ssh/ao/bob.key", algorithm = "cmac(aes128)" },
//	]
//	[hosts.bastion]                  # client side: the IDs mirrored
//	hostname = "bastion.example.net"
//	ao = [{ send_id = 1, recv_id = 101, key_file = "ao/bastion.key" }]
//
// An ao item has send_id and recv_id (KeyIDs, 0 to 255: what this side
// puts on its segments, and what it expects on the peer's; the client's
// send_id is the server's recv_id), exactly one of key and key_file (as
// above), an optional algorithm (tcpsig.AOAlgorithms; default
// hmac(sha256), always with a 12-byte MAC), and a name, a token of 1 to 64
// of [A-Za-z0-9._@-] that says whose key it is: required in [peers], where
// logs show it, optional in [hosts]. [peers."…".ao] may also be written as
// [[peers."…".ao]] tables. In [hosts], ao lists 1 to MaxHostKeys keys,
// newest first, as key_file does, with no ID or key twice. In [peers],
// ao lists up to MaxAOKeys keys, and the rules the kernel applies to
// the keys of one socket are checked at load: among keys whose prefixes
// overlap and whose interfaces meet (the same one, or one of them any),
// each send_id and each recv_id once, so at most MaxAOKeys keys; a name
// may have several keys (a rollover), never one key twice; and all [peers]
// entries of a family are TCP-MD5 or all TCP-AO, as a socket that
// requires TCP-AO takes no TCP-MD5 key.
//
// ssh-md5-proxy picks the [hosts] entry for a connection in this order:
//
//  1. the entry named exactly like the alias (%n), or like the host (%h)
//     when there is no alias;
//  2. the first entry whose hostname equals the host, ignoring case;
//  3. the glob entries (path.Match syntax, ignoring case) that match the
//     alias, or failing that the host: the one with the most non-wildcard
//     characters, the earlier in the file on a tie;
//  4. if the host is a literal IP address, the address or CIDR entry that
//     contains it with the longest prefix.
package keyring

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"

	"github.com/sshmd5/sshmd5/internal/tcpsig"
)

// Keyring is a parsed, validated keyring.
type Keyring struct {
	Path  string // as given to Load
	Hosts []Host // in file order; none when loaded for the Server side
	Peers []Peer // sorted most specific first (longest prefix), then by address; none for Client
	// Warnings are the problems of the entries the side does not use,
	// which are left out instead of failing the load.
	Warnings []error
}

// MaxHostKeys bounds the keys of one [hosts] entry: the proxy dials with
// every one of them at once, a SYN each, so a rotation needs two and a
// long list would only multiply the SYNs a server drops.
const MaxHostKeys = 4

// Host is one [hosts] entry.
type Host struct {
	Name     string    // table name: alias, glob, address or CIDR
	Hostname string    // optional
	Keys     []HostKey // 1 to MaxHostKeys, newest first, no two alike
	Line     int       // line of the table header, 0 if unknown
}

// DialKeys returns the entry's keys, newest first, as keys to dial with
// (their prefix is set when the address is known).
func (h Host) DialKeys() []tcpsig.Key {
	out := make([]tcpsig.Key, len(h.Keys))
	for i, k := range h.Keys {
		out[i] = tcpsig.Key{Secret: k.Secret, AO: k.AO}
	}
	return out
}

// Secrets returns the entry's keys, newest first.
func (h Host) Secrets() []tcpsig.Secret {
	out := make([]tcpsig.Secret, len(h.Keys))
	for i, k := range h.Keys {
		out[i] = k.Secret
	}
	return out
}

// HostKey is one of a [hosts] entry's keys.
type HostKey struct {
	Secret tcpsig.Secret
	// Source is "key_file /abs/path" or "inline key" (with ", item N of
	// M" in a list), for messages.
	Source string
	// AO is set for a TCP-AO key (the entry's ao list), nil for TCP-MD5.
	AO *tcpsig.AO
}

// Peer is one [peers] entry: one TCP-MD5 key (Secret), or one or more
// TCP-AO keys (AO), never both.
type Peer struct {
	Name      string       // table name as written, e.g. "10.0.0.1"
	Prefix    netip.Prefix // masked, natural family (never v4-mapped)
	Interface string       // "" = any
	Secret    tcpsig.Secret
	Source    string
	Line      int
	AO        []PeerAO // TCP-AO keys, in file order; nil for a TCP-MD5 entry
}

// PeerAO is one TCP-AO key of a [peers] entry: one user's.
type PeerAO struct {
	tcpsig.AO // Name is required in [peers]
	Secret    tcpsig.Secret
	Source    string
	Line      int
}

// IsAO reports whether the entry holds TCP-AO keys.
func (p Peer) IsAO() bool { return len(p.AO) > 0 }

// Key returns the TCP-MD5 key for this peer on the given interface index
// (0 = any). For a TCP-AO entry use Keys.
func (p Peer) Key(ifindex int) tcpsig.Key {
	return tcpsig.Key{Prefix: p.Prefix, Ifindex: ifindex, Secret: p.Secret}
}

// Keys returns the entry's kernel keys on the given interface index: its
// TCP-MD5 key, or each of its TCP-AO keys.
func (p Peer) Keys(ifindex int) []tcpsig.Key {
	if !p.IsAO() {
		return []tcpsig.Key{p.Key(ifindex)}
	}
	out := make([]tcpsig.Key, len(p.AO))
	for i, a := range p.AO {
		ao := a.AO
		out[i] = tcpsig.Key{Prefix: p.Prefix, Ifindex: ifindex, Secret: a.Secret, AO: &ao}
	}
	return out
}

// Where names a [peers] entry of the keyring at path the way parse errors
// do: "keyring PATH:LINE: peers.\"NAME\"".
func (p Peer) Where(path string) string {
	where := "keyring " + path
	if p.Line > 0 {
		where += ":" + strconv.Itoa(p.Line)
	}
	return where + ": " + toml.Key{"peers", p.Name}.String()
}

// Ifindex resolves the entry's interface to the index a key is bound to
// (0: any interface). bindable is the backend's verdict on whether a key
// can be bound to that interface (md5.CheckBindable); the keyring knows no
// kernel. The error names the entry of the keyring at path and the fix.
func (p Peer) Ifindex(path string, bindable func(ifindex int) error) (int, error) {
	if p.Interface == "" {
		return 0, nil
	}
	ifi, err := net.InterfaceByName(p.Interface)
	if err != nil {
		// The entry names the interface: drop net.OpError's
		// "route ip+net:".
		var op *net.OpError
		if errors.As(err, &op) && op.Err != nil {
			err = op.Err
		}
		return 0, fmt.Errorf("%s: interface %q: %w; create it or fix the name (ip link)", p.Where(path), p.Interface, err)
	}
	// The kernel takes only a VRF, and says so only when a key is set:
	// ask it now, so that check and the shim refuse the same entry alike.
	if err := bindable(ifi.Index); err != nil {
		return 0, fmt.Errorf("%s: interface %q: %w; name a VRF (ip link add NAME type vrf table N) or drop the interface line", p.Where(path), p.Interface, err)
	}
	return ifi.Index, nil
}

// DefaultClientPath returns $SSH_MD5_KEYRING if set and non-empty, else
// ~/.ssh/md5-keyring.toml.
func DefaultClientPath() (string, error) {
	if p := os.Getenv("SSH_MD5_KEYRING"); p != "" {
		return p, nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("finding the keyring: %w; set SSH_MD5_KEYRING or pass -k KEYRING", err)
	}
	return filepath.Join(home, ".ssh", "md5-keyring.toml"), nil
}

// DefaultServerPath returns $CREDENTIALS_DIRECTORY/md5-keyring.toml when
// systemd passes credentials (LoadCredential=), else
// /etc/ssh/md5-keyring.toml.
func DefaultServerPath() string {
	if d := os.Getenv("CREDENTIALS_DIRECTORY"); d != "" {
		return filepath.Join(d, "md5-keyring.toml")
	}
	return "/etc/ssh/md5-keyring.toml"
}

// Side says which half of a keyring a program uses: ssh-md5-proxy signs
// with [hosts], sshd-md5-socket with [peers]. Load still checks the other
// half, but its problems become warnings (Keyring.Warnings) and its
// entries are left out: a client entry whose key file is missing must not
// keep sshd-md5-socket from starting, and a broken [peers] entry must not
// stop ssh.
type Side int

const (
	Both   Side = iota // every entry counts; its problems are errors
	Client             // [hosts] counts; [peers] problems are warnings
	Server             // [peers] counts; [hosts] problems are warnings
)

// uses reports whether the side works with the table ("hosts", "peers").
func (s Side) uses(table string) bool {
	switch s {
	case Client:
		return table == "hosts"
	case Server:
		return table == "peers"
	}
	return true
}

// Load reads, permission-checks and validates the keyring at path and the
// key files it names, for side.
func Load(path string, side Side) (*Keyring, error) {
	data, err := readSecretFile(path)
	if err != nil {
		return nil, fmt.Errorf("keyring %s: %w%s", path, err, openHint(err, "create it (chmod 600) or name another file with -k"))
	}
	return Parse(path, data, side, readSecretFile)
}

// The fields each table's entries may have; every value is a string but
// ao's, a list of tables (aoFields).
var fields = map[string][]string{
	"hosts": {"hostname", "key_file", "key", "ao"},
	"peers": {"key_file", "key", "ao", "interface"},
}

// parser carries what every error message needs.
type parser struct {
	path    string
	data    []byte
	lines   map[string]int   // toml.Key.String() -> line
	starts  []int            // line -> offset of its start, when needed
	arrays  map[string][]int // [[header]] -> its lines, when needed
	readKey func(string) ([]byte, error)
}

func (p *parser) errorf(line int, entry, format string, args ...any) error {
	// The prefix goes in as an argument: a path or entry may hold a '%'.
	prefix := "keyring " + p.path
	if line > 0 {
		prefix += ":" + strconv.Itoa(line)
	}
	prefix += ": "
	if entry != "" {
		prefix += entry + ": "
	}
	return fmt.Errorf("%s"+format, append([]any{prefix}, args...)...)
}

// Parse validates keyring text for side. readKey reads a key_file, given
// as an absolute path (relative ones are taken from filepath.Dir(path));
// Load passes a reader that also checks permissions, which is also what a
// nil readKey means.
func Parse(path string, data []byte, side Side, readKey func(path string) ([]byte, error)) (*Keyring, error) {
	if readKey == nil {
		readKey = readSecretFile
	}
	p := &parser{path: path, data: data, readKey: readKey}
	// Before the decoder, whose memory grows with the square of the
	// nesting: a small hostile file could otherwise take gigabytes.
	if err := checkShape(data); err != nil {
		return nil, p.shapeError(data, err)
	}
	// A generic decode never fails on types, so every type error below
	// is ours, with a line and the keyring's words instead of Go's.
	var raw map[string]any
	md, err := toml.NewDecoder(strings.NewReader(string(data))).Decode(&raw)
	if err != nil {
		return nil, p.tomlError(data, err)
	}
	p.lines = keyLines(data)

	k := &Keyring{Path: path}
	hostPrefixes := map[netip.Prefix]string{}
	type peerID struct {
		prefix netip.Prefix
		iface  string
	}
	peerEntries := map[peerID]string{}
	var peers []aoPeer // every [peers] entry that parsed, in file order
	// fail returns err when side uses the table, or keeps it as a warning.
	fail := func(table string, err error) error {
		if side.uses(table) {
			return err
		}
		k.Warnings = append(k.Warnings, err)
		return nil
	}
	skip := map[string]bool{} // tables that are not tables: their keys are reported once
	// md.Keys() is in file order, which is the order errors should come in
	// and the order Hosts keeps. A dotted key (peers."::/0".key = ...)
	// defines its tables without listing them: each table and entry is
	// taken where it first appears.
	seen := map[string]bool{}
	for _, key := range md.Keys() {
		top := key[0]
		if _, ok := fields[top]; !ok {
			return nil, p.errorf(p.line(key[:1]), "", "unknown table %s; the tables are [hosts] and [peers]", key[:1])
		}
		if !seen[top] {
			seen[top] = true
			example := map[string]string{"hosts": "hosts.bastion", "peers": `peers."0.0.0.0/0"`}[top]
			var err error
			switch raw[top].(type) {
			case map[string]any:
			case []map[string]any:
				err = p.errorf(p.line(key[:1]), top, "[[%s]] is an array of tables, not an entry; entries are tables such as [%s]", top, example)
			default:
				err = p.errorf(p.line(key[:1]), top, "not a table; write [%s.NAME] tables with their fields on the lines below, e.g. [%s]", top, example)
			}
			if err != nil {
				skip[top] = true
				if err := fail(top, err); err != nil {
					return nil, err
				}
			}
		}
		if len(key) < 2 || skip[top] || seen[key[:2].String()] {
			continue
		}
		key = key[:2]
		seen[key.String()] = true
		table, _ := raw[top].(map[string]any)
		entry, err := p.entry(key, table[key[1]])
		if err == nil && top == "hosts" {
			if pfx, ok, _ := hostPrefix(key[1]); ok {
				if other, dup := hostPrefixes[pfx]; dup {
					err = p.errorf(entry.line, key.String(), "same prefix %s as %s; keep one of them", pfx, other)
				} else {
					hostPrefixes[pfx] = key.String()
				}
			}
		}
		if err == nil && top == "peers" {
			id := peerID{entry.prefix, entry.iface}
			if other, dup := peerEntries[id]; dup {
				err = p.errorf(entry.line, key.String(), "same prefix %s and interface as %s; keep one of them", entry.prefix, other)
			} else {
				peerEntries[id] = key.String()
			}
		}
		if err != nil {
			if err := fail(top, err); err != nil {
				return nil, err
			}
			continue
		}
		if top == "peers" {
			// Kept until the checks between entries, whatever the side.
			peers = append(peers, aoPeer{where: key.String(), line: entry.line, prefix: entry.prefix, iface: entry.iface, ao: entry.ao})
			pe := Peer{Name: key[1], Prefix: entry.prefix, Interface: entry.iface, Line: entry.line, AO: entry.ao}
			if entry.ao == nil {
				pe.Secret, pe.Source = entry.keys[0].Secret, entry.keys[0].Source
			}
			k.Peers = append(k.Peers, pe)
			continue
		}
		if !side.uses(top) {
			entry.clear() // checked, and not ours to keep
			continue
		}
		if entry.ao != nil {
			for _, a := range entry.ao {
				ao := a.AO
				entry.keys = append(entry.keys, HostKey{Secret: a.Secret, Source: a.Source, AO: &ao})
			}
		}
		k.Hosts = append(k.Hosts, Host{Name: key[1], Hostname: entry.hostname, Keys: entry.keys, Line: entry.line})
	}
	if err := p.checkPeersAO(peers); err != nil {
		if err := fail("peers", err); err != nil {
			return nil, err
		}
	}
	if !side.uses("peers") {
		for _, pe := range k.Peers {
			clear(pe.Secret)
			for _, a := range pe.AO {
				clear(a.Secret)
			}
		}
		k.Peers = nil
	}
	slices.SortStableFunc(k.Peers, func(a, b Peer) int {
		if a.Prefix.Bits() != b.Prefix.Bits() {
			return b.Prefix.Bits() - a.Prefix.Bits()
		}
		return a.Prefix.Addr().Compare(b.Prefix.Addr())
	})
	return k, nil
}

// line is the line of key, or of the first line that sets something under
// it, or 0.
func (p *parser) line(key toml.Key) int {
	return p.lines[key.String()]
}

// entry is one [hosts] or [peers] table, checked.
type entry struct {
	line     int
	hostname string       // hosts
	prefix   netip.Prefix // peers
	iface    string       // peers
	keys     []HostKey    // TCP-MD5: in [peers] exactly one
	ao       []PeerAO     // TCP-AO, instead of keys
}

// clear wipes the entry's secrets.
func (e entry) clear() {
	for _, hk := range e.keys {
		clear(hk.Secret)
	}
	for _, a := range e.ao {
		clear(a.Secret)
	}
}

// entry checks the entry key (hosts.NAME or peers.NAME) whose decoded
// value is v, and reads its key.
func (p *parser) entry(key toml.Key, v any) (entry, error) {
	top, name, where := key[0], key[1], key.String()
	e := entry{line: p.line(key)}
	m, ok := v.(map[string]any)
	if !ok {
		return e, p.errorf(e.line, where, "not a table; %s hold tables such as [hosts.bastion] and [peers.\"0.0.0.0/0\"], with their fields on the lines below", top)
	}
	// Field problems in file order: the first one a reader meets.
	var bad toml.Key
	var badWhere, badErr string
	for f, fv := range m {
		fk := append(slices.Clip(key), f)
		msgWhere, msg := where, ""
		if !slices.Contains(fields[top], f) {
			msg = fmt.Sprintf("unknown field %q; the fields are %s", f, fieldList(top))
		} else if f == "ao" {
			if _, ok := tableList(fv); ok {
				continue
			}
			msgWhere, msg = fk.String(), `not a list of tables; write the TCP-AO keys as ao = [{ name = "alice", send_id = 1, recv_id = 101, key_file = "ao/alice.key" }], one { ... } per key`
		} else if _, ok := fv.(string); !ok && !(top == "hosts" && (f == "key" || f == "key_file") && isList(fv)) {
			msgWhere, msg = fk.String(), "not a string; every field is a quoted string on its own line, e.g. key_file = \"md5/bastion.key\""
			if top == "hosts" && (f == "key" || f == "key_file") {
				msg = fmt.Sprintf("not a string or a list of strings; write %s = \"...\" or, during a rotation, %s = [\"NEW\", \"OLD\"]", f, f)
			} else if top == "peers" && (f == "key" || f == "key_file") && isList(fv) {
				msg = fmt.Sprintf("a list; a [peers] entry has one key, as the kernel checks a peer against one: write %s = \"...\" and switch keys by reload (README, \"Rotating a key\")", f)
			}
		} else {
			continue
		}
		if bad == nil || p.line(fk) < p.line(bad) || p.line(fk) == p.line(bad) && f < bad[2] {
			bad, badWhere, badErr = fk, msgWhere, msg
		}
	}
	if bad != nil {
		l := p.line(bad)
		if l == 0 { // inside an inline table
			l = e.line
		}
		return e, p.errorf(l, badWhere, "%s", badErr)
	}
	str := func(f string) (string, bool) {
		s, ok := m[f].(string)
		return s, ok
	}
	switch top {
	case "hosts":
		if name == "" {
			return e, p.errorf(e.line, where, "empty name; name the entry after the ssh alias, a glob or an address")
		}
		if _, _, err := hostPrefix(name); err != nil {
			return e, p.errorf(e.line, where, "%v", err)
		}
		var set bool
		if e.hostname, set = str("hostname"); set && e.hostname == "" {
			return e, p.errorf(e.line, where, "hostname is empty; remove it or name the host ssh dials")
		}
	case "peers":
		var err error
		if e.prefix, err = parsePrefix(name); err != nil {
			return e, p.errorf(e.line, where, "%v", err)
		}
		var set bool
		if e.iface, set = str("interface"); set {
			if err := checkIfname(e.iface); err != nil {
				return e, p.errorf(e.line, where, "%v", err)
			}
		}
	}
	_, hasKey := m["key"]
	_, hasFile := m["key_file"]
	if _, hasAO := m["ao"]; hasAO {
		if hasKey || hasFile {
			field := "key"
			if hasFile {
				field = "key_file"
			}
			return e, p.errorf(e.line, where, "both %s and ao are set; an entry is TCP-MD5 (key or key_file) or TCP-AO (ao), not both: keep one", field)
		}
		var err error
		e.ao, err = p.aoList(key, m["ao"], e.line)
		return e, err
	}
	switch {
	case hasKey && hasFile:
		return e, p.errorf(e.line, where, "both key and key_file are set; keep one")
	case !hasKey && !hasFile:
		return e, p.errorf(e.line, where, `no key; add key_file = "path" or key = "..." for TCP-MD5, or ao = [{ ... }] for TCP-AO`)
	}
	field := "key"
	if hasFile {
		field = "key_file"
	}
	values, err := p.keyList(key, field, m[field])
	if err != nil {
		return e, err
	}
	line := e.line
	if isList(m[field]) {
		line = p.fieldLine(key, field, e.line)
	}
	for i, v := range values {
		s, src, err := p.secret(line, where, !hasFile, v, hasFile, v)
		if err != nil {
			for _, hk := range e.keys {
				clear(hk.Secret)
			}
			return e, err
		}
		if len(values) > 1 {
			src += fmt.Sprintf(" (key %d of %d)", i+1, len(values))
			for j, hk := range e.keys {
				if hk.Secret.Equal(s) {
					clear(s)
					for _, hk := range e.keys {
						clear(hk.Secret)
					}
					return e, p.errorf(line, where, "%s: keys %d and %d are the same key; list each key once", field, j+1, i+1)
				}
			}
		}
		e.keys = append(e.keys, HostKey{Secret: s, Source: src})
	}
	return e, nil
}

func isList(v any) bool {
	_, ok := v.([]any)
	return ok
}

// fieldLine is the line of an entry's field, or def.
func (p *parser) fieldLine(entry toml.Key, field string, def int) int {
	if l := p.line(append(slices.Clip(entry), field)); l > 0 {
		return l
	}
	return def
}

// keyList returns the key or key_file values of an entry: one string, or
// a [hosts] list of 1 to MaxHostKeys strings (entry() has checked the
// types of everything but the list's items).
func (p *parser) keyList(entry toml.Key, field string, v any) ([]string, error) {
	if s, ok := v.(string); ok {
		return []string{s}, nil
	}
	list := v.([]any)
	where, line := entry.String(), p.fieldLine(entry, field, p.line(entry))
	switch {
	case len(list) == 0:
		return nil, p.errorf(line, where, "%s is an empty list; list the keys, newest first, e.g. %s = [\"NEW\", \"OLD\"]", field, field)
	case len(list) > MaxHostKeys:
		return nil, p.errorf(line, where, "%s lists %d keys, more than %d, the limit (each is a SYN on every connection); a rotation needs two, the new one and the old one", field, len(list), MaxHostKeys)
	}
	out := make([]string, len(list))
	for i, it := range list {
		s, ok := it.(string)
		if !ok {
			return nil, p.errorf(line, where, "%s: item %d is not a string; write %s = [\"NEW\", \"OLD\"]", field, i+1, field)
		}
		out[i] = s
	}
	return out, nil
}

func fieldList(top string) string {
	f := fields[top]
	return strings.Join(f[:len(f)-1], ", ") + " and " + f[len(f)-1]
}

// secret returns one key of an entry and a description of where it came
// from.
func (p *parser) secret(line int, entry string, hasKey bool, inline string, hasFile bool, keyFile string) (tcpsig.Secret, string, error) {
	switch {
	case hasKey:
		if n := len(inline); n < 1 || n > tcpsig.MaxKeyLen {
			return nil, "", p.errorf(line, entry, "key is %d bytes; a key is 1 to %d bytes", n, tcpsig.MaxKeyLen)
		}
		return tcpsig.Secret(inline), "inline key", nil
	}
	if keyFile == "" {
		return nil, "", p.errorf(line, entry, "key_file is empty; name the file that holds the key")
	}
	abs := keyFile
	if !filepath.IsAbs(abs) {
		abs = filepath.Join(filepath.Dir(p.path), abs)
	}
	if a, err := filepath.Abs(abs); err == nil {
		abs = a
	}
	b, err := p.readKey(abs)
	if err != nil {
		fix := "create it or fix key_file"
		if !filepath.IsAbs(keyFile) {
			fix += " (a relative key_file is taken from the keyring's folder)"
		}
		return nil, "", p.errorf(line, entry, "key_file %s: %w%s", abs, err, openHint(err, fix))
	}
	// One trailing newline is what editors and echo add; anything else is
	// the key's own business.
	b = []byte(strings.TrimSuffix(string(b), "\n"))
	if n := len(b); n < 1 || n > tcpsig.MaxKeyLen {
		return nil, "", p.errorf(line, entry, "key_file %s: key is %d bytes after dropping one trailing newline; a key is 1 to %d bytes", abs, n, tcpsig.MaxKeyLen)
	}
	return tcpsig.Secret(b), "key_file " + abs, nil
}

var duplicate = regexp.MustCompile(`^Key '(.*)' (has already been defined|was already created as a hash|was already created and cannot be used as an array)\.$`)

// syntaxHints says what a parser message means, by its start, in words
// that quote nothing: the parser's own text can quote what it choked on,
// which on a key line is the key.
var syntaxHints = []struct{ prefixes, hint string }{
	{"expected value|unexpected EOF; expected value|Invalid integer|Invalid float|invalid float|not a binary|not an octal|not a hexadecimal|expected a digit|cannot use sign|floats must|Invalid TOML Datetime|invalid datetime",
		`a value is not a quoted string; every field is one, e.g. key = "..." or key_file = "md5/bastion.key", but for send_id and recv_id in an ao list, which are plain numbers (send_id = 1)`},
	{`unexpected EOF; expected '"'|unexpected EOF; expected "'"|unexpected '""""""'|unexpected ""|invalid escape|Escaped character|expected two hex|expected four hex|expected eight hex|strings cannot contain newlines|control characters`,
		`a string is not closed or holds a bad escape or a newline; write it on one line as "..." (or '...' to take backslashes literally)`},
	{"expected a top-level item to end",
		`more text follows a value; put one field per line and quote the value, e.g. key = "..."`},
	{"expected '.' or ']' to end table name|unexpected end of table name|unexpected table separator|expected end of table array name",
		`a table header is malformed; write [hosts.NAME] or [peers."ADDRESS/LEN"], with quotes around names that hold dots or slashes`},
	{"expected '.' or '='|unexpected '='|unexpected '.'|unexpected '=': key name|unexpected '.': keys|unexpected EOF; expected key separator",
		`expected NAME = "value"; quote names that hold anything but letters, digits, - and _`},
	{"expected a comma|unexpected comma",
		`an inline table or array is malformed; prefer one [hosts.NAME] or [peers."ADDRESS"] table per entry`},
	{"files cannot contain NULL bytes",
		"the file holds NUL bytes: probably UTF-16; save it as UTF-8"},
}

// tomlError turns a toml error into one naming the keyring, the line and
// the fix. It never passes on the parser's own text, which can quote a
// value: a key.
func (p *parser) tomlError(data []byte, err error) error {
	var pe toml.ParseError
	if !errors.As(err, &pe) {
		return p.errorf(0, "", "not valid TOML (details withheld: they could quote a key); see https://toml.io")
	}
	line := pe.Position.Line
	if m := duplicate.FindStringSubmatch(pe.Message); m != nil {
		// The message names a key, not a value.
		first := ""
		if l := p.firstLine(data, m[1]); l > 0 && l != line {
			first = " (first on line " + strconv.Itoa(l) + ")"
		}
		return p.errorf(line, m[1], "set twice%s; keep one", first)
	}
	hint := "not valid TOML (details withheld: they could quote a key); see https://toml.io"
hints:
	for _, h := range syntaxHints {
		for _, pre := range strings.Split(h.prefixes, "|") {
			if strings.HasPrefix(pe.Message, pre) {
				hint = h.hint
				break hints
			}
		}
	}
	if q := quoteHint(data, line); q != "" {
		hint = "a table name holds an address or dotted name without quotes; " + q
	}
	where := ""
	if pe.Position.Col > 0 {
		where = " at column " + strconv.Itoa(pe.Position.Col)
	}
	return p.errorf(line, "", "syntax error%s: %s", where, hint)
}

// firstLine is the line where key (as the parser names it) is first set,
// or 0.
func (p *parser) firstLine(data []byte, key string) int {
	return keyLines(data)[key]
}

// keyLines maps each table header and key in data to its line, because
// toml.MetaData does not expose positions. It is best-effort: a key it
// cannot place gets line 0.
func keyLines(data []byte) map[string]int {
	lines := map[string]int{}
	var table toml.Key
	for i, l := range strings.Split(string(data), "\n") {
		t := strings.TrimSpace(l)
		if t == "" || t[0] == '#' {
			continue
		}
		var keys []toml.Key
		if m := simpleHeader.FindStringSubmatch(t); m != nil {
			table = toml.Key{m[1], m[2] + m[3]}
			keys = []toml.Key{table}
		} else if k, ok := headerKey(t); ok {
			table = k
			keys = []toml.Key{table}
		} else if t[0] == '[' {
			keys = parseKeys(t)
			if len(keys) == 0 {
				continue
			}
			table = keys[len(keys)-1]
			keys = keys[len(keys)-1:]
		} else {
			lhs, _, ok := strings.Cut(t, "=")
			if !ok {
				continue
			}
			if bare := strings.TrimSpace(lhs); bareKey.MatchString(bare) {
				keys = append(keys, append(slices.Clip(table), bare))
			} else if k, ok := dottedKey(lhs); ok {
				keys = append(keys, append(slices.Clip(table), k...))
			} else {
				for _, k := range parseKeys(lhs + "= 0") {
					keys = append(keys, append(slices.Clip(table), k...))
				}
			}
		}
		// Prefixes too: `key.a = 1` is where hosts.NAME.key is set.
		for _, k := range keys {
			for n := len(k); n >= 1; n-- {
				if _, seen := lines[k[:n].String()]; !seen {
					lines[k[:n].String()] = i + 1
				}
			}
		}
	}
	return lines
}

// The common shapes, [peers."10.0.0.0/8"] and key_file = ..., are read
// without a TOML decoder: one decode per line made a 10,000-entry keyring
// take most of a second to load.
var (
	simpleHeader = regexp.MustCompile(`^\[\s*([A-Za-z0-9_-]+)\s*\.\s*(?:"([^"\\]*)"|([A-Za-z0-9_-]+))\s*\]$`)
	bareKey      = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)
)

// headerKey reads a [table] or [[table]] line (with no comment) the way
// dottedKey reads a key.
func headerKey(t string) (toml.Key, bool) {
	inner, ok := strings.CutPrefix(t, "[")
	if !ok {
		return nil, false
	}
	inner, ok = strings.CutSuffix(inner, "]")
	if !ok {
		return nil, false
	}
	if a, ok := strings.CutPrefix(inner, "["); ok {
		if inner, ok = strings.CutSuffix(a, "]"); !ok {
			return nil, false
		}
	}
	return dottedKey(inner)
}

// dottedKey splits a.b."c.d".'e' into its parts, for the keys whose parts
// are bare or quoted without escapes: the common ones, read without a
// decoder. ok is false for anything else.
func dottedKey(s string) (toml.Key, bool) {
	var k toml.Key
	for {
		s = strings.TrimLeft(s, " \t")
		var part string
		switch {
		case s == "":
			return nil, false
		case s[0] == '"' || s[0] == '\'':
			end := strings.IndexByte(s[1:], s[0])
			if end < 0 {
				return nil, false
			}
			part, s = s[1:1+end], s[2+end:]
			if strings.ContainsAny(part, "\\\n") {
				return nil, false
			}
		default:
			end := strings.IndexFunc(s, func(r rune) bool { return !isBareKeyChar(r) })
			if end < 0 {
				end = len(s)
			}
			if end == 0 {
				return nil, false
			}
			part, s = s[:end], s[end:]
		}
		k = append(k, part)
		s = strings.TrimLeft(s, " \t")
		if s == "" {
			return k, true
		}
		if s[0] != '.' {
			return nil, false
		}
		s = s[1:]
	}
}

func isBareKeyChar(r rune) bool {
	return 'A' <= r && r <= 'Z' || 'a' <= r && r <= 'z' || '0' <= r && r <= '9' || r == '_' || r == '-'
}

func parseKeys(s string) []toml.Key {
	var v map[string]any
	md, err := toml.Decode(s, &v)
	if err != nil {
		return nil
	}
	return md.Keys()
}

// parsePrefix parses a [peers] name. Errors carry the fix.
func parsePrefix(s string) (netip.Prefix, error) {
	const fix = "write a CIDR such as 10.0.0.0/8 or a single address"
	if strings.Contains(s, "%") {
		return netip.Prefix{}, fmt.Errorf("bad prefix: addresses with a zone are not allowed; drop the %%zone and set interface = \"...\" instead")
	}
	var p netip.Prefix
	if strings.Contains(s, "/") {
		var err error
		if p, err = netip.ParsePrefix(s); err != nil {
			return netip.Prefix{}, fmt.Errorf("bad prefix: %s; %s", netipReason(err), fix)
		}
	} else {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("bad prefix: %s; %s", netipReason(err), fix)
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	m := p.Masked()
	if m.Addr().Is4In6() {
		v4 := netip.PrefixFrom(m.Addr().Unmap(), m.Bits()-96)
		want := v4.String()
		if v4.Bits() == 32 {
			want = v4.Addr().String()
		}
		return netip.Prefix{}, fmt.Errorf("bad prefix: v4-mapped IPv6 address; write IPv4 as %s", want)
	}
	if m != p {
		return netip.Prefix{}, fmt.Errorf("bad prefix: host bits are set; write %q", m.String())
	}
	return m, nil
}

// netipReason drops the `netip.ParsePrefix("...")` or `ParseAddr("...")`
// in front of a netip error: the caller names the entry already.
func netipReason(err error) string {
	msg := err.Error()
	if i := strings.LastIndex(msg, "\"): "); i >= 0 && strings.Contains(msg[:i], "Parse") {
		msg = msg[i+len("\"): "):]
	}
	return msg
}

// hostPrefix reports whether a [hosts] name is an address or CIDR, and
// holds it to the same rules as [peers] names. A name with a '/' can only
// be a CIDR: no alias or hostname has one.
func hostPrefix(name string) (netip.Prefix, bool, error) {
	if strings.Contains(name, "/") || strings.Contains(name, "%") {
		p, err := parsePrefix(name)
		return p, err == nil, err
	}
	if _, err := netip.ParseAddr(name); err == nil {
		p, err := parsePrefix(name)
		return p, err == nil, err
	}
	if isGlob(name) {
		if err := checkGlob(name); err != nil {
			return netip.Prefix{}, false, err
		}
	}
	return netip.Prefix{}, false, nil
}

// checkIfname accepts what Linux's dev_valid_name does. The name is not
// resolved here: the interface may come and go, and the client never needs
// it.
func checkIfname(s string) error {
	const fix = "write the name as `ip link` shows it, e.g. \"vrf-mgmt\""
	switch {
	case s == "":
		return fmt.Errorf("interface is empty; remove it to match any interface, or %s", fix)
	case len(s) > 15:
		return fmt.Errorf("interface %q is longer than 15 bytes, the Linux limit; %s", s, fix)
	case s == "." || s == "..":
		return fmt.Errorf("interface %q is not a valid interface name; %s", s, fix)
	case strings.ContainsAny(s, "/:\x00") || strings.ContainsFunc(s, isSpace):
		return fmt.Errorf("interface %q may not contain '/', ':' or whitespace; %s", s, fix)
	}
	return nil
}

func isSpace(r rune) bool {
	return r == ' ' || r == '\t' || r == '\n' || r == '\r' || r == '\v' || r == '\f'
}
