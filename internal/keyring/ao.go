package keyring

import (
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"

	"github.com/sshmd5/sshmd5/internal/tcpsig"
)

// MaxAOKeys bounds the TCP-AO keys whose prefixes overlap: each needs its
// own SendID and its own RecvID, and a KeyID is 8 bits.
const MaxAOKeys = 256

// aoFields are the fields of one item of an ao list.
var aoFields = []string{"name", "send_id", "recv_id", "key_file", "key", "algorithm"}

var aoName = regexp.MustCompile(`^[A-Za-z0-9._@-]{1,64}$`)

// CheckAOName accepts the name of a TCP-AO key: a short printable token,
// as it appears in logs and is used to revoke the key.
func CheckAOName(s string) error {
	if !aoName.MatchString(s) {
		// Not quoted: a name that fails may be anything, a key pasted
		// into the wrong field included.
		return fmt.Errorf("name is not a short token; write 1 to 64 letters, digits, '.', '_', '@' or '-', e.g. name = \"alice\"")
	}
	return nil
}

// tableList returns the items of an ao value: an array of inline tables
// (ao = [{ ... }]) or an array of tables ([[peers."…".ao]]). ok is false
// for anything else; an item that is not a table is nil.
func tableList(v any) (items []map[string]any, ok bool) {
	switch l := v.(type) {
	case []map[string]any:
		return l, true
	case []any:
		items = make([]map[string]any, len(l))
		for i, it := range l {
			items[i], _ = it.(map[string]any)
		}
		return items, true
	}
	return nil, false
}

// aoList checks the ao list of the entry key (hosts.NAME or peers.NAME)
// and reads its keys. Problems within one entry (counts, fields, IDs used
// twice) are found here; those between [peers] entries by checkPeersAO.
func (p *parser) aoList(key toml.Key, v any, entryLine int) ([]PeerAO, error) {
	top, where := key[0], key.String()
	items, _ := tableList(v) // entry() has checked the type
	line := p.fieldLine(key, "ao", entryLine)
	const example = `ao = [{ name = "alice", send_id = 1, recv_id = 101, key_file = "ao/alice.key" }]`
	max, why := MaxAOKeys, "the most one prefix can hold: each key needs its own send_id and recv_id, and a KeyID is 8 bits"
	if top == "hosts" {
		max, why = MaxHostKeys, "the limit (each is a SYN on every connection); a rotation needs two, the new one and the old one"
	}
	switch {
	case len(items) == 0:
		return nil, p.errorf(line, where, "ao is an empty list; list the TCP-AO keys, e.g. %s", example)
	case len(items) > max:
		return nil, p.errorf(line, where, "ao lists %d keys, more than %d, %s", len(items), max, why)
	}
	lines := p.itemLines(key, v, len(items))
	var out []PeerAO
	fail := func(err error) ([]PeerAO, error) {
		for _, a := range out {
			clear(a.Secret)
		}
		return nil, err
	}
	for i, m := range items {
		l := line
		if lines != nil {
			l = lines[i]
		}
		a, err := p.aoItem(top, where, i, len(items), l, m)
		if err != nil {
			return fail(err)
		}
		for j, b := range out {
			if err := p.sameEntryClash(top, where, j, b, i, a); err != nil {
				clear(a.Secret)
				return fail(err)
			}
		}
		out = append(out, a)
	}
	return out, nil
}

// itemName is how messages name item i (0-based) of an ao list.
func itemName(i int, name string) string {
	s := "ao item " + strconv.Itoa(i+1)
	if name != "" {
		s += fmt.Sprintf(" (%q)", name)
	}
	return s
}

// aoItem checks item i of n of an ao list and reads its key.
func (p *parser) aoItem(top, where string, i, n, line int, m map[string]any) (PeerAO, error) {
	a := PeerAO{Line: line}
	itemWhere := where + ": " + itemName(i, "")
	if m == nil {
		return a, p.errorf(line, itemWhere, `not a table; write each key as { name = "alice", send_id = 1, recv_id = 101, key_file = "..." }`)
	}
	// Field names in a fixed order: the decoder gives no lines inside an
	// item, and a map has no order of its own.
	var unknown []string
	for f := range m {
		if !slices.Contains(aoFields, f) {
			unknown = append(unknown, f)
		}
	}
	if len(unknown) > 0 {
		slices.Sort(unknown)
		return a, p.errorf(line, itemWhere, "unknown field %q; the fields of an ao item are %s", unknown[0], strings.Join(aoFields[:len(aoFields)-1], ", ")+" and "+aoFields[len(aoFields)-1])
	}
	if v, ok := m["name"]; ok {
		s, isStr := v.(string)
		if !isStr {
			return a, p.errorf(line, itemWhere, `name is not a string; write name = "alice"`)
		}
		if err := CheckAOName(s); err != nil {
			return a, p.errorf(line, itemWhere, "%v", err)
		}
		a.Name = s
		itemWhere = where + ": " + itemName(i, s)
	} else if top == "peers" {
		return a, p.errorf(line, itemWhere, `no name; say whose key it is, e.g. name = "alice": logs name the key by it, and revoking a user removes the items of that name`)
	}
	for _, f := range []struct {
		name string
		id   *uint8
	}{{"send_id", &a.SendID}, {"recv_id", &a.RecvID}} {
		v, ok := m[f.name]
		if !ok {
			return a, p.errorf(line, itemWhere, "no %s; add %s = N, a KeyID from 0 to 255 (the client's send_id is the server's recv_id and the other way round)", f.name, f.name)
		}
		n, isInt := v.(int64)
		if !isInt {
			return a, p.errorf(line, itemWhere, "%s is not an integer; write %s = N without quotes, N from 0 to 255", f.name, f.name)
		}
		if n < 0 || n > 255 {
			return a, p.errorf(line, itemWhere, "%s is %d; a KeyID is 0 to 255", f.name, n)
		}
		*f.id = uint8(n)
	}
	a.Algorithm, a.MACLen = tcpsig.AODefaultAlgorithm, tcpsig.AODefaultMACLen
	if v, ok := m["algorithm"]; ok {
		s, isStr := v.(string)
		if !isStr || !slices.Contains(tcpsig.AOAlgorithms, s) {
			return a, p.errorf(line, itemWhere, "algorithm is not one the kernel offers; write one of %s, or drop it for %s", quoteList(tcpsig.AOAlgorithms), tcpsig.AODefaultAlgorithm)
		}
		a.Algorithm = s
	}
	inline, hasKey := m["key"]
	file, hasFile := m["key_file"]
	switch {
	case hasKey && hasFile:
		return a, p.errorf(line, itemWhere, "both key and key_file are set; keep one")
	case !hasKey && !hasFile:
		return a, p.errorf(line, itemWhere, `no key; add key_file = "path" or key = "..."`)
	}
	field, val := "key", inline
	if hasFile {
		field, val = "key_file", file
	}
	s, isStr := val.(string)
	if !isStr {
		return a, p.errorf(line, itemWhere, "%s is not a string; write %s = \"...\" (one key per item; a rotation is a second item)", field, field)
	}
	secret, src, err := p.secret(line, itemWhere, hasKey, s, hasFile, s)
	if err != nil {
		return a, err
	}
	a.Secret, a.Source = secret, fmt.Sprintf("%s (ao item %d of %d)", src, i+1, n)
	return a, nil
}

func quoteList(l []string) string {
	q := make([]string, len(l))
	for i, s := range l {
		q[i] = strconv.Quote(s)
	}
	return strings.Join(q[:len(q)-1], ", ") + " or " + q[len(q)-1]
}

// sameEntryClash checks items j and i (0-based, j < i) of one entry's ao
// list against each other.
func (p *parser) sameEntryClash(top, where string, j int, b PeerAO, i int, a PeerAO) error {
	pair := itemName(j, b.Name) + " and " + itemName(i, a.Name)
	if top == "hosts" {
		// The client dials with each; the server holds one of them per
		// send_id, so a second with the same IDs or key is never the one
		// that connects.
		switch {
		case a.Secret.Equal(b.Secret):
			return p.errorf(a.Line, where, "%s are the same key; list each key once", pair)
		case a.SendID == b.SendID:
			return p.errorf(a.Line, where, "%s both have send_id %d; the server tells keys apart by it: give the new key the IDs the server lists for it", pair, a.SendID)
		case a.RecvID == b.RecvID:
			return p.errorf(a.Line, where, "%s both have recv_id %d; the server tells keys apart by its send_id: give the new key the IDs the server lists for it", pair, a.RecvID)
		}
		return nil
	}
	switch {
	case a.SendID == b.SendID:
		return p.errorf(a.Line, where, "%s both have send_id %d; the kernel refuses two keys with one send_id for one prefix (EEXIST): give each key its own", pair, a.SendID)
	case a.RecvID == b.RecvID:
		return p.errorf(a.Line, where, "%s both have recv_id %d; the kernel refuses two keys with one recv_id for one prefix (EEXIST): give each key its own", pair, a.RecvID)
	case a.Name == b.Name && a.Secret.Equal(b.Secret):
		return p.errorf(a.Line, where, "%s are the same key; a rollover lists a new key beside the old one: make one with ssh-md5-proxy keygen --ao", pair)
	}
	return nil
}

// itemLines returns the line of each of the n items of the ao list of
// entry, or nil when it cannot tell: the decoder knows no lines, so the
// text is scanned, for `ao = [ {…}, {…} ]` from the line of the field and
// for [[peers."…".ao]] by its headers.
func (p *parser) itemLines(entry toml.Key, v any, n int) []int {
	aoKey := append(slices.Clip(entry), "ao")
	var out []int
	if _, tables := v.([]map[string]any); tables {
		out = p.arrayTableLines()[aoKey.String()]
	} else if start := p.line(aoKey); start > 0 {
		out = inlineItemLines(p.data, start, p.lineStart(start))
	}
	if len(out) != n {
		return nil
	}
	return out
}

// lineStart is the offset of the start of line n (1-based) in the text;
// the offsets are found once, so that each entry's scan starts where its
// list does and a keyring of many entries is not read once per entry.
func (p *parser) lineStart(n int) int {
	if p.starts == nil {
		p.starts = []int{0, 0} // line 1 starts at 0
		for i, c := range p.data {
			if c == '\n' {
				p.starts = append(p.starts, i+1)
			}
		}
	}
	if n < 1 || n >= len(p.starts) {
		return len(p.data)
	}
	return p.starts[n]
}

// arrayTableLines maps each [[header]] of the text to the lines it is on,
// found once for all entries.
func (p *parser) arrayTableLines() map[string][]int {
	if p.arrays == nil {
		p.arrays = map[string][]int{}
		for i, l := range strings.Split(string(p.data), "\n") {
			t := strings.TrimSpace(l)
			if !strings.HasPrefix(t, "[[") {
				continue
			}
			if k, ok := headerKey(t); ok {
				p.arrays[k.String()] = append(p.arrays[k.String()], i+1)
			}
		}
	}
	return p.arrays
}

// inlineItemLines finds the first array that is a value from offset i, the
// start of line start, on, and returns the line each of its items begins
// on.
func inlineItemLines(data []byte, start, i int) []int {
	line := start
	var (
		out   []int
		depth int  // inside the array: 1 at its top level
		value bool // past an '=' on the way to it
		want  bool // the next token at depth 1 starts an item
	)
	for ; i < len(data); i++ {
		c := data[i]
		switch {
		case c == '\n':
			line++
			continue
		case c == ' ' || c == '\t' || c == '\r':
			continue
		case c == '#':
			for i+1 < len(data) && data[i+1] != '\n' {
				i++
			}
			continue
		}
		if depth == 0 {
			switch {
			case c == '"' || c == '\'':
				i, line = skipString(data, i, line)
			case c == '=':
				value = true
			case c == '[' && value:
				depth, want = 1, true
			}
			continue
		}
		if depth == 1 && want && c != ']' && c != ',' {
			out, want = append(out, line), false
		}
		switch c {
		case '"', '\'':
			i, line = skipString(data, i, line)
		case '[', '{':
			depth++
		case ']', '}':
			if depth--; depth == 0 {
				return out
			}
		case ',':
			if depth == 1 {
				want = true
			}
		}
	}
	return out
}

// aoPeer is a parsed [peers] entry, for the checks between entries.
type aoPeer struct {
	where  string // peers."NAME"
	line   int
	prefix netip.Prefix
	iface  string
	ao     []PeerAO // nil: TCP-MD5
	index  *aoIndex // of ao, built when first needed
}

// aoIndex finds an entry's keys by ID and by name.
type aoIndex struct {
	send, recv [256]int // ID -> item index + 1
	names      map[string][]int
}

func (e *aoPeer) idx() *aoIndex {
	if e.index == nil {
		x := &aoIndex{names: map[string][]int{}}
		for i, a := range e.ao {
			x.send[a.SendID], x.recv[a.RecvID] = i+1, i+1
			x.names[a.Name] = append(x.names[a.Name], i)
		}
		e.index = x
	}
	return e.index
}

// checkPeersAO checks what the kernel checks between the keys of one
// socket: one backend per family, since a socket that requires TCP-AO
// (ao_required) takes no TCP-MD5 key; and among TCP-AO keys whose
// prefixes overlap, each SendID and each RecvID once, no more than
// MaxAOKeys keys, and no user's key listed twice. Entries are in file
// order; the error names the later of two entries, and the other by line.
func (p *parser) checkPeersAO(peers []aoPeer) error {
	for _, fam := range []struct {
		name string
		is4  bool
	}{{"IPv4", true}, {"IPv6", false}} {
		var md5, ao *aoPeer
		for i := range peers {
			e := &peers[i]
			if e.prefix.Addr().Is4() != fam.is4 {
				continue
			}
			if e.ao == nil && md5 == nil {
				md5 = e
			} else if e.ao != nil && ao == nil {
				ao = e
			}
		}
		if md5 == nil || ao == nil {
			continue
		}
		later, kind, other, otherKind := ao, "TCP-AO (ao)", md5, "TCP-MD5 (key or key_file)"
		if md5.line > ao.line {
			later, kind, other, otherKind = md5, otherKind, ao, kind
		}
		return p.errorf(later.line, later.where, "%s, but %s%s is %s; all %s [peers] entries must be of one kind, as a socket that requires TCP-AO takes no TCP-MD5 key: give every %s entry an ao list, or none", kind, other.where, lineRef(other.line), otherKind, fam.name, fam.name)
	}

	// Overlapping prefixes contain one another: the entries to check an
	// entry against are those at its own prefix and its shorter ones.
	byPrefix := map[netip.Prefix][]int{}
	for i, e := range peers {
		if e.ao != nil {
			byPrefix[e.prefix] = append(byPrefix[e.prefix], i)
		}
	}
	for i, e := range peers {
		if e.ao == nil {
			continue
		}
		// A key for any interface meets the keys of every interface; keys
		// of two different interfaces never meet. The count is of those
		// that all meet one another: this entry's interface and any.
		var clash []int
		count, counted := len(e.ao), []string{}
		for bits := 0; bits <= e.prefix.Bits(); bits++ {
			anc, _ := e.prefix.Addr().Prefix(bits)
			for _, j := range byPrefix[anc] {
				o := peers[j]
				if j == i || (bits == e.prefix.Bits() && j > i) {
					continue
				}
				if o.iface != e.iface && o.iface != "" && e.iface != "" {
					continue
				}
				clash = append(clash, j)
				if o.iface == e.iface || o.iface == "" {
					count += len(o.ao)
					counted = append(counted, o.where)
				}
			}
		}
		if count > MaxAOKeys {
			if len(counted) > 3 {
				counted = append(counted[:3], "more")
			}
			return p.errorf(e.line, e.where, "%d TCP-AO keys overlap here (its own %d and those of %s), more than %d, the most overlapping prefixes can hold: each needs its own send_id and recv_id, and a KeyID is 8 bits; move some users to narrower prefixes that do not overlap", count, len(e.ao), strings.Join(counted, ", "), MaxAOKeys)
		}
		for _, j := range clash {
			if err := p.entriesClash(&peers[j], &peers[i]); err != nil {
				return err
			}
		}
	}
	return nil
}

func lineRef(line int) string {
	if line == 0 {
		return ""
	}
	return " (line " + strconv.Itoa(line) + ")"
}

// entriesClash checks the keys of two entries whose prefixes overlap and
// whose interfaces meet.
func (p *parser) entriesClash(x, y *aoPeer) error {
	if x.line > y.line {
		x, y = y, x
	}
	ix := x.idx()
	send, recv, names := &ix.send, &ix.recv, ix.names
	where := func(i int, a PeerAO) string { return y.where + ": " + itemName(i, a.Name) }
	overlap := "whose prefix overlaps"
	if x.iface != y.iface {
		overlap = "whose prefix overlaps on the same interface"
	}
	for i, a := range y.ao {
		other := func(j int) string {
			return fmt.Sprintf("%s of %s%s, %s", itemName(j, x.ao[j].Name), x.where, lineRef(x.line), overlap)
		}
		if j := send[a.SendID]; j > 0 {
			return p.errorf(a.Line, where(i, a), "send_id %d is also that of %s; the kernel refuses two keys with one send_id where prefixes overlap (EEXIST): give one of them another", a.SendID, other(j-1))
		}
		if j := recv[a.RecvID]; j > 0 {
			return p.errorf(a.Line, where(i, a), "recv_id %d is also that of %s; the kernel refuses two keys with one recv_id where prefixes overlap (EEXIST): give one of them another", a.RecvID, other(j-1))
		}
		for _, j := range names[a.Name] {
			if x.ao[j].Secret.Equal(a.Secret) {
				return p.errorf(a.Line, where(i, a), "the same key as %s; a rollover lists a new key beside the old one: make one with ssh-md5-proxy keygen --ao", other(j))
			}
		}
	}
	return nil
}
