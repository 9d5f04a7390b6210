//go:build linux

package shim

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
)

// Startups is sshd's MaxStartups for inetd mode, where sshd -i has none:
// past Start unauthenticated connections, a new one is closed with a
// probability that grows from Rate percent at Start to 100 at Full.
// Unauthenticated connections cost the server and are what a flood or a
// hoarding key holder accumulates; authenticated sessions do not count.
type Startups struct{ Start, Rate, Full int }

// Defaults of the inetd-mode admission limits; DESIGN.md says why.
var DefaultMaxStartups = Startups{Start: 10, Rate: 30, Full: 60}

// DefaultPerSourceMaxStartups bounds the unauthenticated connections of
// one source (an IPv4 address, an IPv6 /64).
const DefaultPerSourceMaxStartups = 8

func (s Startups) String() string { return fmt.Sprintf("%d:%d:%d", s.Start, s.Rate, s.Full) }

// ParseStartups reads --max-startups: START:RATE:FULL, or N alone for
// N:100:N (every connection past N closed), as in sshd_config.
func ParseStartups(v string) (Startups, error) {
	bad := func(why string) (Startups, error) {
		return Startups{}, UsageError{fmt.Sprintf("--max-startups %q: %s; want START:RATE:FULL, e.g. 10:30:60, or N", v, why)}
	}
	f := strings.Split(v, ":")
	if len(f) != 1 && len(f) != 3 {
		return bad("not one or three numbers")
	}
	n := make([]int, len(f))
	for i, s := range f {
		x, err := strconv.Atoi(s)
		if err != nil || x < 0 || x > 1_000_000 {
			return bad(fmt.Sprintf("%q is not a number from 0 to 1000000", s))
		}
		n[i] = x
	}
	st := Startups{Start: n[0], Rate: 100, Full: n[0]}
	if len(n) == 3 {
		st = Startups{Start: n[0], Rate: n[1], Full: n[2]}
	}
	switch {
	case st.Full < 1:
		return bad("FULL must be at least 1")
	case st.Start > st.Full:
		return bad("START is above FULL")
	case st.Rate > 100:
		return bad("RATE is a percentage, 0 to 100")
	}
	return st, nil
}

// drop decides, as sshd's drop_connection does, whether one more
// unauthenticated connection is refused when pending are open already.
// roll returns a number in [0, 100).
func (s Startups) drop(pending int, roll func() int) bool {
	switch {
	case pending < s.Start:
		return false
	case pending >= s.Full, s.Rate == 100:
		return true
	}
	p := s.Rate + (100-s.Rate)*(pending-s.Start)/(s.Full-s.Start)
	return roll() < p
}

// sourceOf is the block one source's connections are counted in: an IPv4
// address, or the /64 an IPv6 host usually has to itself (counting single
// IPv6 addresses would give one host 2^64 quotas).
func sourceOf(a netip.Addr) netip.Prefix {
	a = a.Unmap()
	if a.Is4() {
		return netip.PrefixFrom(a, 32)
	}
	p, _ := a.Prefix(64)
	return p
}

// child is one running COMMAND and what the admission limits know of it.
type child struct {
	pid    int // 0 until started
	src    netip.Prefix
	authed bool
}

// children counts the running COMMANDs, pending (not yet authenticated)
// apart from authenticated, in total and per source.
type children struct {
	mu        sync.Mutex
	all       map[*child]struct{}
	pending   int
	bySource  map[netip.Prefix]int // pending ones
	max       int                  // --max-conns
	startups  Startups
	perSource int
	roll      func() int
	// authed tells whether the process pid has authenticated a user.
	authed func(pid int) bool
}

func newChildren(max int, st Startups, perSource int) *children {
	return &children{
		all: map[*child]struct{}{}, bySource: map[netip.Prefix]int{},
		max: max, startups: st, perSource: perSource,
		roll: func() int { return rand.IntN(100) }, authed: sshdAuthenticated,
	}
}

// admit registers a new connection from addr, or says why it is refused.
// The counts are refreshed from /proc only when a limit is near, so the
// common case costs nothing.
func (cs *children) admit(addr netip.Addr) (*child, string) {
	src := sourceOf(addr)
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if len(cs.all) >= cs.max {
		return nil, fmt.Sprintf("--max-conns %d reached", cs.max)
	}
	if cs.bySource[src] >= cs.perSource {
		cs.refresh(src)
		if n := cs.bySource[src]; n >= cs.perSource {
			return nil, fmt.Sprintf("%d unauthenticated connections from %s already (--per-source-max-startups %d)", n, src, cs.perSource)
		}
	}
	if cs.pending >= cs.startups.Start {
		cs.refresh(netip.Prefix{})
		if cs.startups.drop(cs.pending, cs.roll) {
			return nil, fmt.Sprintf("%d unauthenticated connections (--max-startups %s)", cs.pending, cs.startups)
		}
	}
	c := &child{src: src}
	cs.all[c] = struct{}{}
	cs.pending++
	cs.bySource[src]++
	return c, ""
}

// started records c's pid.
func (cs *children) started(c *child, pid int) {
	cs.mu.Lock()
	c.pid = pid
	cs.mu.Unlock()
}

// done forgets c once its process is gone.
func (cs *children) done(c *child) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	delete(cs.all, c)
	if !c.authed {
		cs.unpend(c)
	}
}

func (cs *children) unpend(c *child) {
	cs.pending--
	if cs.bySource[c.src]--; cs.bySource[c.src] <= 0 {
		delete(cs.bySource, c.src)
	}
}

// refresh moves pending children of src (every source for the zero
// Prefix) that have authenticated since to the authenticated side.
// Called with cs.mu held.
func (cs *children) refresh(src netip.Prefix) {
	for c := range cs.all {
		if c.authed || c.pid == 0 || (src.IsValid() && c.src != src) {
			continue
		}
		if cs.authed(c.pid) {
			c.authed = true
			cs.unpend(c)
		}
	}
}

// counts returns the pending and authenticated children, for status.
func (cs *children) counts() (pending, authed int) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	cs.refresh(netip.Prefix{})
	return cs.pending, len(cs.all) - cs.pending
}

// sessionTitle is the process title OpenSSH gives a session once a user
// has authenticated and opened it: "sshd: USER@TTY", with TTY a pty or
// "notty" (session.c, session_proctitle). For root the sshd -i process
// itself takes it; for other users its privilege-separated child does.
// Before authentication the titles are "[accepted]", "USER [priv]" and
// "USER [net]", which always end in a bracketed word, so a user name
// that holds "@" (user@domain) cannot pass for a session. OpenSSH 9.8
// and later name the program sshd-session.
var sessionTitle = regexp.MustCompile(`^sshd(-session)?: \S+@\S+$`)

// sshdAuthenticated reports whether the sshd -i process pid serves an
// authenticated session. Anything it cannot read counts as not
// authenticated: a COMMAND other than sshd stays pending for its life.
func sshdAuthenticated(pid int) bool {
	if sessionTitle.Match(procTitle(pid)) {
		return true
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	if err != nil {
		return false
	}
	for _, f := range strings.Fields(string(b)) {
		if kid, err := strconv.Atoi(f); err == nil && sessionTitle.Match(procTitle(kid)) {
			return true
		}
	}
	return false
}

// procTitle is a process's command line as it shows in ps, NULs (the
// argument separators and setproctitle's padding) trimmed.
func procTitle(pid int) []byte {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return nil
	}
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return b
}
