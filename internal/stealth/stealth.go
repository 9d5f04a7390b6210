//go:build linux

// Package stealth makes a TCP-MD5 listener answer unsigned probes exactly
// as a closed port of the same host does, instead of staying silent.
//
// A TCP-MD5 listener drops every unsigned segment, so a scanner sees one
// silent port among ports that answer with a RST: "filtered", something
// guards it. In closed mode this package installs one nftables table of
// its own that rewrites the destination port of unsigned segments (no
// TCP-MD5 option, kind 19, and no TCP-AO option, kind 29) to port 0, on
// which no socket can ever listen, and marks them untracked. The kernel
// then answers them itself, as it answers any closed port: same flags,
// seq/ack, window, IP ID, DF, TTL, TOS and traffic class. The RST leaves
// from port 0 and the table's output chain puts the listener's port back.
// No conntrack entry is made for either segment.
//
// The rules match only segments without a signature, so whether the
// table is there or not (a crash leaves it behind) signed traffic is
// never touched. Install replaces any earlier copy in one netlink batch.
package stealth

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"
)

// Mode is how the listener answers unsigned segments.
type Mode string

const (
	// Filtered is what a TCP-MD5 listener does on its own: no answer.
	Filtered Mode = "filtered"
	// Closed answers each unsigned segment as a closed port would.
	Closed Mode = "closed"
	// Auto is Closed where nf_tables can be used, else Filtered.
	Auto Mode = "auto"
)

// DefaultMode is the mode without --stealth; see the README for why.
const DefaultMode = Filtered

// ParseMode checks a --stealth value.
func ParseMode(s string) (Mode, error) {
	switch m := Mode(s); m {
	case Filtered, Closed, Auto:
		return m, nil
	case "":
		return DefaultMode, nil
	}
	return "", fmt.Errorf("unknown --stealth %q: use filtered, closed or auto", s)
}

// TableName is the one inet table this package owns.
const TableName = "sshd_md5_socket"

// Priority of both base chains: after IP defragmentation (-400), before
// iptables' and nftables' raw chains (-300), firewalld's (-290) and
// conntrack (-200), so that the segments it rewrites are never tracked and
// every later chain of the host's firewall sees the segment as one to the
// closed port 0 (and the answer as one from the listener's port).
const Priority = -305

// DefaultRate bounds the RSTs per second closed mode provokes, summed
// over all sources; segments over it are left alone, so the listener
// drops them silently as in filtered mode. The kernel does not rate-limit
// the RSTs of closed ports (net.ipv4.icmp_ratelimit covers ICMP only), so
// without this a flood of spoofed unsigned SYNs would turn the host into a
// reflector at line rate.
const (
	DefaultRate  = 1000
	DefaultBurst = 200
)

// Listener is one protected listening socket.
type Listener struct {
	// Addr is the bound address; unspecified means any local address of
	// the families the socket takes.
	Addr       netip.Addr
	Port       uint16
	IPv4, IPv6 bool // peer families the socket takes
}

func (l Listener) String() string {
	return netip.AddrPortFrom(l.Addr, l.Port).String()
}

// Options tune Install; the zero value means the defaults.
type Options struct {
	Rate, Burst uint32 // packets per second and burst; 0 = Default*
}

// Table is an installed table.
type Table struct {
	Port      uint16
	Listeners []Listener
	Rate      uint32
}

// Install puts the closed-mode table in place for ls, replacing any
// earlier copy (one left by a crashed run, say) in the same atomic batch:
// at no moment are there two copies, or none once there was one.
func Install(ls []Listener, o Options) (*Table, error) {
	if len(ls) == 0 {
		return nil, errors.New("stealth: no listeners")
	}
	port := ls[0].Port
	for _, l := range ls {
		if l.Port != port {
			// The answer leaves from port 0; the output chain can only
			// tell which port to put back if there is one.
			return nil, fmt.Errorf("--stealth closed: listeners %s and %s have different ports; closed mode needs one port for all listeners (use --stealth filtered, or one port)", ls[0], l)
		}
		if l.Port == 0 {
			return nil, fmt.Errorf("--stealth closed: listener %s has port 0", l)
		}
		if !l.IPv4 && !l.IPv6 {
			return nil, fmt.Errorf("--stealth closed: listener %s takes no peer family", l)
		}
	}
	if o.Rate == 0 {
		o.Rate = DefaultRate
	}
	if o.Burst == 0 {
		o.Burst = DefaultBurst
	}
	c, err := nftables.New()
	if err != nil {
		return nil, explain(err)
	}
	me := self()
	if cur, ok, err := owner(c); err != nil {
		return nil, err
	} else if ok && cur != me && cur.alive() {
		// The answers leave from port 0 and only one table can put a
		// port back on them, so closed mode serves one port per network
		// namespace. Replacing a live shim's table would silently turn
		// its port back to filtered.
		return nil, fmt.Errorf("--stealth closed: %s already has closed mode in this network namespace (table inet %s); closed mode serves one port per namespace: use --stealth filtered here, or run this listener in that shim", cur, TableName)
	}
	t := &nftables.Table{Family: nftables.TableFamilyINet, Name: TableName}
	// Adding first makes the delete succeed whether or not an old copy
	// exists (adding an existing table is no error); nft -f does the same.
	c.AddTable(t)
	c.DelTable(t)
	c.AddTable(t)
	prio := nftables.ChainPriorityRef(Priority)
	pre := c.AddChain(&nftables.Chain{Name: "unsigned_in", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookPrerouting, Priority: prio})
	out := c.AddChain(&nftables.Chain{Name: "answer_out", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookOutput, Priority: prio})
	ans := c.AddChain(&nftables.Chain{Name: "to_closed_port", Table: t})
	for _, l := range ls {
		for _, fam := range l.families() {
			c.AddRule(&nftables.Rule{Table: t, Chain: pre, Exprs: port0Rule(l, fam)})
		}
	}
	for _, l := range ls {
		for _, fam := range l.families() {
			c.AddRule(&nftables.Rule{Table: t, Chain: pre, Exprs: inRule(l, fam)})
			c.AddRule(&nftables.Rule{Table: t, Chain: out, Exprs: outRule(l, fam)})
		}
	}
	c.AddRule(&nftables.Rule{Table: t, Chain: ans, Exprs: answerRule(o),
		UserData: userdata.AppendString(nil, userdata.TypeComment, me.String())})
	if err := c.Flush(); err != nil {
		return nil, explain(err)
	}
	return &Table{Port: port, Listeners: ls, Rate: o.Rate}, nil
}

// Remove deletes the table if this process installed it (a later shim
// that replaced it keeps it). It is safe to call on a nil Table.
func (t *Table) Remove() error {
	if t == nil {
		return nil
	}
	return remove(func(cur Owner) bool { return cur == self() })
}

// RemoveStale deletes the table unless a live process other than this one
// installed it: filtered mode uses it to clear the table a killed
// closed-mode run left, without taking a running shim's.
func RemoveStale() (removed bool, err error) {
	me := self()
	err = remove(func(cur Owner) bool {
		removed = cur == me || !cur.alive()
		return removed
	})
	return removed, err
}

func remove(ok func(Owner) bool) error {
	c, err := nftables.New()
	if err != nil {
		return explain(err)
	}
	cur, exists, err := owner(c)
	if err != nil || !exists || !ok(cur) {
		return err
	}
	t := &nftables.Table{Family: nftables.TableFamilyINet, Name: TableName}
	c.AddTable(t)
	c.DelTable(t)
	if err := c.Flush(); err != nil {
		return explain(err)
	}
	return nil
}

// Owner is the process that installed the table, as recorded in the
// comment of its answer rule: a pid and the process's start time, so
// that a recycled pid is not taken for the owner.
type Owner struct {
	PID   int
	Start string // field 22 of /proc/PID/stat, in clock ticks since boot
}

func (o Owner) String() string {
	return fmt.Sprintf("sshd-md5-socket pid %d start %s", o.PID, o.Start)
}

func self() Owner {
	pid := os.Getpid()
	return Owner{PID: pid, Start: startTime(pid)}
}

// alive reports whether the owner is still running (in listener mode that
// is the sshd it became).
func (o Owner) alive() bool {
	st := startTime(o.PID)
	return st != "" && st == o.Start
}

func startTime(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return ""
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return ""
	}
	return f[19] // starttime, field 22; f[0] is field 3
}

func parseOwner(c string) (Owner, bool) {
	var o Owner
	if _, err := fmt.Sscanf(c, "sshd-md5-socket pid %d start %s", &o.PID, &o.Start); err != nil {
		return Owner{}, false
	}
	return o, true
}

// owner reads who installed the table; exists is false when there is
// none. A table of ours without a readable owner counts as stale.
func owner(c *nftables.Conn) (o Owner, exists bool, err error) {
	ts, err := c.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		return Owner{}, false, explain(err)
	}
	var t *nftables.Table
	for _, x := range ts {
		if x.Name == TableName {
			t = x
		}
	}
	if t == nil {
		return Owner{}, false, nil
	}
	rs, err := c.GetRules(t, &nftables.Chain{Name: "to_closed_port", Table: t})
	if err != nil {
		return Owner{}, true, nil // no such chain: not one we made
	}
	for _, r := range rs {
		if cm, ok := userdata.GetString(r.UserData, userdata.TypeComment); ok {
			if o, ok := parseOwner(cm); ok {
				return o, true, nil
			}
		}
	}
	return Owner{}, true, nil
}

// Installed reports whether the table exists here, who installed it, and
// whether that process still runs.
func Installed() (exists bool, o Owner, alive bool, err error) {
	c, err := nftables.New()
	if err != nil {
		return false, Owner{}, false, explain(err)
	}
	o, exists, err = owner(c)
	return exists, o, exists && o.alive(), err
}

// Count reports how many tables named TableName exist in the inet family
// of this network namespace (0 or 1; tests assert it), and lists them.
func Count() (int, error) {
	c, err := nftables.New()
	if err != nil {
		return 0, explain(err)
	}
	ts, err := c.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		return 0, explain(err)
	}
	n := 0
	for _, t := range ts {
		if t.Name == TableName {
			n++
		}
	}
	return n, nil
}

// Usable reports why nf_tables cannot be used here, or nil.
func Usable() error {
	c, err := nftables.New()
	if err != nil {
		return explain(err)
	}
	if _, err := c.ListTablesOfFamily(nftables.TableFamilyINet); err != nil {
		return explain(err)
	}
	return nil
}

func explain(err error) error {
	switch {
	case errors.Is(err, unix.EPERM):
		return fmt.Errorf("nftables: %w (closed mode needs CAP_NET_ADMIN)", err)
	case errors.Is(err, unix.ENOENT), errors.Is(err, unix.EOPNOTSUPP), errors.Is(err, unix.EPROTONOSUPPORT):
		return fmt.Errorf("nftables: %w (does this kernel have nf_tables with the fib, exthdr and notrack expressions?)", err)
	}
	return fmt.Errorf("nftables: %w", err)
}

func (l Listener) families() []byte {
	a := l.Addr.Unmap()
	switch {
	case a.IsValid() && !a.IsUnspecified():
		if a.Is4() {
			return []byte{unix.NFPROTO_IPV4}
		}
		return []byte{unix.NFPROTO_IPV6}
	}
	var fs []byte
	if l.IPv4 {
		fs = append(fs, unix.NFPROTO_IPV4)
	}
	if l.IPv6 {
		fs = append(fs, unix.NFPROTO_IPV6)
	}
	return fs
}

func be16(v uint16) []byte { return []byte{byte(v >> 8), byte(v)} }

// addrMatch matches the family and, for a bound address, the address in
// the IP header field at off4 (IPv4) or off6 (IPv6): destination for
// input, source for output.
func addrMatch(l Listener, fam byte, off4, off6 uint32) []expr.Any {
	e := []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{fam}},
	}
	a := l.Addr.Unmap()
	if !a.IsValid() || a.IsUnspecified() {
		return e
	}
	off, n := off4, uint32(4)
	if fam == unix.NFPROTO_IPV6 {
		off, n = off6, 16
	}
	return append(e,
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: n},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: a.AsSlice()},
	)
}

func tcpPort(off uint32, port uint16) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: off, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: be16(port)},
	}
}

// rstFlag tests the RST bit: set (op neq 0) or clear (op eq 0).
func rstFlag(op expr.CmpOp) []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 13, Len: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 1, Mask: []byte{0x04}, Xor: []byte{0}},
		&expr.Cmp{Op: op, Register: 1, Data: []byte{0}},
	}
}

// optionMissing is `tcp option KIND missing`.
func optionMissing(kind uint8) []expr.Any {
	return []expr.Any{
		&expr.Exthdr{Op: expr.ExthdrOpTcpopt, Type: kind, Offset: 0, Len: 1, Flags: unix.NFT_EXTHDR_F_PRESENT, DestRegister: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{0}},
	}
}

// Option kinds (IANA): a segment with either is signed and is never
// touched, whatever its signature is worth; the kernel judges that.
const (
	OptMD5 = 19 // RFC 2385
	OptAO  = 29 // RFC 5925
)

// inRule: an unsigned, non-RST TCP segment to the listener, addressed to
// this host (not forwarded), goes to the answer chain. A RST is left to
// the listener, which drops it: a closed port does not answer a RST
// either, and a spoofed one must reach nothing.
func inRule(l Listener, fam byte) []expr.Any {
	var e []expr.Any
	e = append(e, addrMatch(l, fam, 16, 24)...)
	e = append(e, tcpPort(2, l.Port)...)
	e = append(e,
		&expr.Fib{Register: 1, FlagDADDR: true, ResultADDRTYPE: true},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binary.NativeEndian.AppendUint32(nil, unix.RTN_LOCAL)},
	)
	e = append(e, optionMissing(OptMD5)...)
	e = append(e, optionMissing(OptAO)...)
	e = append(e, rstFlag(expr.CmpOpEq)...)
	return append(e, &expr.Verdict{Kind: expr.VerdictJump, Chain: "to_closed_port"})
}

// port0Rule drops what a peer itself sends to port 0 of the listener's
// addresses. Otherwise the kernel's answer to it would leave from the
// listener's port (the output rule cannot tell it from ours), and in IPv6
// its flow label, a keyed hash over the ports, would equal the label of
// the answer to the same probe sent to the listener's port: a scanner
// could tell the rewrite that way. Port 0 is not a service port; many
// networks drop it anyway.
func port0Rule(l Listener, fam byte) []expr.Any {
	e := addrMatch(l, fam, 16, 24)
	e = append(e, tcpPort(2, 0)...)
	return append(e, &expr.Verdict{Kind: expr.VerdictDrop})
}

// answerRule marks the segment untracked and, within the rate, sends it
// to port 0; over the rate it goes on unchanged and the listener drops
// it. Untracked either way: the listener never takes an unsigned segment,
// so a conntrack entry for one (SYN_SENT lasts 120 s) would only fill the
// host's table during a flood.
func answerRule(o Options) []expr.Any {
	return []expr.Any{
		&expr.Notrack{},
		&expr.Limit{Type: expr.LimitTypePkts, Rate: uint64(o.Rate), Unit: expr.LimitTimeSecond, Burst: o.Burst},
		&expr.Immediate{Register: 1, Data: be16(0)},
		&expr.Payload{OperationType: expr.PayloadWrite, SourceRegister: 1, Base: expr.PayloadBaseTransportHeader,
			Offset: 2, Len: 2, CsumType: expr.CsumTypeInet, CsumOffset: 16},
		// Done here: no later rule of this table (the port 0 drop, say)
		// may see the rewritten segment. The host's tables still do.
		&expr.Verdict{Kind: expr.VerdictAccept},
	}
}

// outRule: the kernel's RST from port 0 (from the listener's address)
// leaves from the listener's port, untracked like the probe.
func outRule(l Listener, fam byte) []expr.Any {
	var e []expr.Any
	e = append(e, addrMatch(l, fam, 12, 8)...)
	e = append(e, tcpPort(0, 0)...)
	e = append(e, rstFlag(expr.CmpOpNeq)...)
	return append(e,
		&expr.Notrack{},
		&expr.Immediate{Register: 1, Data: be16(l.Port)},
		&expr.Payload{OperationType: expr.PayloadWrite, SourceRegister: 1, Base: expr.PayloadBaseTransportHeader,
			Offset: 0, Len: 2, CsumType: expr.CsumTypeInet, CsumOffset: 16},
	)
}

// Describe says in one line what the table does, for logs and check.
func (t *Table) Describe() string {
	var ls []string
	for _, l := range t.Listeners {
		ls = append(ls, l.String())
	}
	return fmt.Sprintf("unsigned segments to %s get the kernel's closed-port answer (nftables table inet %s, at most %d/s)",
		strings.Join(ls, ", "), TableName, t.Rate)
}
