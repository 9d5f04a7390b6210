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
//
//	# server side
//	[peers."0.0.0.0/0"]              # CIDR or single address, IPv4 or IPv6
//	key_file = "/etc/ssh/md5/default.key"
//	[peers."2001:db8::/32"]
//	key = "..."                      # inline key
//	interface = "vrf-mgmt"           # optional: only on this interface (VRF)
//
// Every entry has exactly one of key (the string's bytes) and key_file (the
// file's bytes, less one trailing "\n" if there is one; a "\r" before it is
// kept). A key is 1 to 80 bytes, the kernel's limit. The keyring and every
// key file must be regular files owned by the user or root and not
// accessible to group or others, as ssh demands of private keys.
//
// Prefixes are written masked ("10.0.0.0/8", not "10.0.0.1/8") and IPv4 is
// written as IPv4, not v4-mapped; a single address means /32 or /128. Two
// [peers] entries may not name the same prefix and interface.
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

	"github.com/sshmd5/sshmd5/internal/md5"
)

// Keyring is a parsed, validated keyring.
type Keyring struct {
	Path  string // as given to Load
	Hosts []Host // in file order
	Peers []Peer // sorted most specific first (longest prefix), then by address
}

// Host is one [hosts] entry.
type Host struct {
	Name     string // table name: alias, glob, address or CIDR
	Hostname string // optional
	Secret   md5.Secret
	Source   string // "key_file /abs/path" or "inline key", for messages
	Line     int    // line of the table header, 0 if unknown
}

// Peer is one [peers] entry.
type Peer struct {
	Name      string       // table name as written, e.g. "10.0.0.1"
	Prefix    netip.Prefix // masked, natural family (never v4-mapped)
	Interface string       // "" = any
	Secret    md5.Secret
	Source    string
	Line      int
}

// Key returns the kernel key for this peer on the given interface index
// (0 = any).
func (p Peer) Key(ifindex int) md5.Key {
	return md5.Key{Prefix: p.Prefix, Ifindex: ifindex, Secret: p.Secret}
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
// (0: any interface). The error names the entry of the keyring at path
// and the fix.
func (p Peer) Ifindex(path string) (int, error) {
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
	if err := md5.CheckBindable(ifi.Index); err != nil {
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

// Load reads, permission-checks and validates the keyring at path and the
// key files it names.
func Load(path string) (*Keyring, error) {
	data, err := readSecretFile(path)
	if err != nil {
		return nil, fmt.Errorf("keyring %s: %w%s", path, err, openHint(err, "create it (chmod 600) or name another file with -k"))
	}
	return Parse(path, data, readSecretFile)
}

// The TOML shape. Values are plain strings; IsDefined tells "absent" from
// "empty".
type fileHost struct {
	Hostname string `toml:"hostname"`
	KeyFile  string `toml:"key_file"`
	Key      string `toml:"key"`
}

type filePeer struct {
	KeyFile   string `toml:"key_file"`
	Key       string `toml:"key"`
	Interface string `toml:"interface"`
}

type file struct {
	Hosts map[string]fileHost `toml:"hosts"`
	Peers map[string]filePeer `toml:"peers"`
}

// parser carries what every error message needs.
type parser struct {
	path    string
	lines   map[string]int // toml.Key.String() -> line
	readKey func(string) ([]byte, error)
	md      toml.MetaData
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

// Parse validates keyring text. readKey reads a key_file, given as an
// absolute path (relative ones are taken from filepath.Dir(path)); Load
// passes a reader that also checks permissions, which is also what a nil
// readKey means.
func Parse(path string, data []byte, readKey func(path string) ([]byte, error)) (*Keyring, error) {
	if readKey == nil {
		readKey = readSecretFile
	}
	p := &parser{path: path, readKey: readKey}
	var f file
	md, err := toml.NewDecoder(strings.NewReader(string(data))).Decode(&f)
	if err != nil {
		return nil, p.tomlError(data, err)
	}
	p.md = md
	p.lines = keyLines(data)
	// The decoder leaves the maps empty for `hosts = 5` instead of
	// failing; say so rather than report a keyring with no entries.
	for _, top := range []string{"hosts", "peers"} {
		if t := md.Type(top); t != "" && t != "Hash" && t != "ArrayHash" {
			return nil, p.errorf(p.lines[top], top, "not a table; write [%s.NAME] tables with their fields on the lines below, e.g. [%s]", top, map[string]string{"hosts": "hosts.bastion", "peers": `peers."0.0.0.0/0"`}[top])
		}
	}

	if err := p.checkUndecoded(); err != nil {
		return nil, err
	}

	k := &Keyring{Path: path}
	hostPrefixes := map[netip.Prefix]string{}
	type peerID struct {
		prefix netip.Prefix
		iface  string
	}
	peerEntries := map[peerID]string{}
	// md.Keys() is in file order, which is the order errors should come in
	// and the order Hosts keeps.
	for _, key := range md.Keys() {
		if len(key) != 2 {
			continue
		}
		name := key[1]
		entry := key.String()
		line := p.lines[entry]
		switch key[0] {
		case "hosts":
			h := f.Hosts[name]
			host := Host{Name: name, Hostname: h.Hostname, Line: line}
			if name == "" {
				return nil, p.errorf(line, entry, "empty name; name the entry after the ssh alias, a glob or an address")
			}
			if pfx, ok, err := hostPrefix(name); err != nil {
				return nil, p.errorf(line, entry, "%v", err)
			} else if ok {
				if other, dup := hostPrefixes[pfx]; dup {
					return nil, p.errorf(line, entry, "same prefix %s as %s; keep one of them", pfx, other)
				}
				hostPrefixes[pfx] = entry
			}
			if md.IsDefined("hosts", name, "hostname") && h.Hostname == "" {
				return nil, p.errorf(line, entry, "hostname is empty; remove it or name the host ssh dials")
			}
			host.Secret, host.Source, err = p.secret(line, key, h.Key, h.KeyFile)
			if err != nil {
				return nil, err
			}
			k.Hosts = append(k.Hosts, host)
		case "peers":
			e := f.Peers[name]
			pfx, err := parsePrefix(name)
			if err != nil {
				return nil, p.errorf(line, entry, "%v", err)
			}
			if md.IsDefined("peers", name, "interface") {
				if err := checkIfname(e.Interface); err != nil {
					return nil, p.errorf(line, entry, "%v", err)
				}
			}
			id := peerID{pfx, e.Interface}
			if other, dup := peerEntries[id]; dup {
				return nil, p.errorf(line, entry, "same prefix %s and interface as %s; keep one of them", pfx, other)
			}
			peerEntries[id] = entry
			peer := Peer{Name: name, Prefix: pfx, Interface: e.Interface, Line: line}
			peer.Secret, peer.Source, err = p.secret(line, key, e.Key, e.KeyFile)
			if err != nil {
				return nil, err
			}
			k.Peers = append(k.Peers, peer)
		}
	}
	slices.SortStableFunc(k.Peers, func(a, b Peer) int {
		if a.Prefix.Bits() != b.Prefix.Bits() {
			return b.Prefix.Bits() - a.Prefix.Bits()
		}
		return a.Prefix.Addr().Compare(b.Prefix.Addr())
	})
	return k, nil
}

func (p *parser) checkUndecoded() error {
	for _, key := range p.md.Undecoded() {
		line := p.lines[key.String()]
		switch {
		case key[0] != "hosts" && key[0] != "peers":
			return p.errorf(line, "", "unknown table %s; the tables are [hosts] and [peers]", key[:1])
		case len(key) == 2:
			// An [[array]] of tables decodes without a type error but
			// leaves its fields behind.
			return p.errorf(line, key.String(), "not an entry; entries are tables such as [%s.name]", key[0])
		case key[0] == "hosts":
			return p.errorf(line, key[:2].String(), "unknown field %q; the fields are hostname, key_file and key", key[2])
		default:
			return p.errorf(line, key[:2].String(), "unknown field %q; the fields are key_file, key and interface", key[2])
		}
	}
	return nil
}

// secret returns the entry's key and a description of where it came from.
func (p *parser) secret(line int, key toml.Key, inline, keyFile string) (md5.Secret, string, error) {
	entry := key.String()
	hasKey := p.md.IsDefined(key[0], key[1], "key")
	hasFile := p.md.IsDefined(key[0], key[1], "key_file")
	switch {
	case hasKey && hasFile:
		return nil, "", p.errorf(line, entry, "both key and key_file are set; keep one")
	case !hasKey && !hasFile:
		return nil, "", p.errorf(line, entry, `no key; add key_file = "path" or key = "..."`)
	case hasKey:
		if n := len(inline); n < 1 || n > md5.MaxKeyLen {
			return nil, "", p.errorf(line, entry, "key is %d bytes; a key is 1 to %d bytes", n, md5.MaxKeyLen)
		}
		return md5.Secret(inline), "inline key", nil
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
	if n := len(b); n < 1 || n > md5.MaxKeyLen {
		return nil, "", p.errorf(line, entry, "key_file %s: key is %d bytes after dropping one trailing newline; a key is 1 to %d bytes", abs, n, md5.MaxKeyLen)
	}
	return md5.Secret(b), "key_file " + abs, nil
}

// keyLine matches a line that may assign a key, so that a parser message
// about it, which can quote the value, is withheld.
var keyLine = regexp.MustCompile(`(?i)(^|[^a-z0-9_-])key([^a-z0-9_-]|$)|\\`)

var decodeErr = regexp.MustCompile(`^toml: line (\d+) \(last key (".*")\): (.*)$`)

// tomlError turns a toml error into one naming the keyring and line. The
// parser's message can quote what it choked on, so it is dropped when that
// could be a key.
func (p *parser) tomlError(data []byte, err error) error {
	var pe toml.ParseError
	if errors.As(err, &pe) {
		line := pe.Position.Line
		last := pe.LastKey
		risky := last == "key" || strings.HasSuffix(last, ".key")
		if lines := strings.Split(string(data), "\n"); line >= 1 && line <= len(lines) {
			risky = risky || keyLine.MatchString(lines[line-1])
		} else {
			risky = true
		}
		if risky {
			return p.errorf(line, "", "syntax error on a line that may hold a key (details withheld so as not to echo it); check its quoting: key = \"...\"")
		}
		return p.errorf(line, "", "syntax error: %s; see https://toml.io", pe.Message)
	}
	// Decoding errors (wrong types) name the key and line but never quote
	// values.
	if m := decodeErr.FindStringSubmatch(err.Error()); m != nil {
		line, _ := strconv.Atoi(m[1])
		entry, uerr := strconv.Unquote(m[2])
		if uerr != nil {
			entry = m[2]
		}
		// m[3] names Go types ("keyring.fileHost", "int64"); say what the
		// keyring wants instead.
		if keyDepth(entry) >= 3 {
			return p.errorf(line, entry, "not a string; every field is a quoted string, e.g. key_file = \"md5/bastion.key\"")
		}
		return p.errorf(line, entry, "not a table; hosts and peers hold tables such as [hosts.bastion] and [peers.\"0.0.0.0/0\"], with their fields on the lines below")
	}
	return p.errorf(0, "", "%s", strings.TrimPrefix(err.Error(), "toml: "))
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
			} else {
				for _, k := range parseKeys(lhs + "= 0") {
					keys = append(keys, append(slices.Clip(table), k...))
				}
			}
		}
		for _, k := range keys {
			if _, seen := lines[k.String()]; !seen {
				lines[k.String()] = i + 1
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

// keyDepth counts the parts of a dotted key such as hosts."a.b".key (3).
func keyDepth(entry string) int {
	n := 0
	for _, k := range parseKeys(entry + " = 0") {
		n = max(n, len(k))
	}
	if n == 0 {
		n = strings.Count(entry, ".") + 1
	}
	return n
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
