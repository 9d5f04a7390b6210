//go:build linux

package shim

import (
	"net/netip"
	"testing"
)

func TestParseStartups(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Startups
		bad  bool
	}{
		{in: "10:30:60", want: Startups{10, 30, 60}},
		{in: "5", want: Startups{5, 100, 5}},
		{in: "0:0:1", want: Startups{0, 0, 1}},
		{in: "0", bad: true},
		{in: "11:30:10", bad: true},
		{in: "1:101:2", bad: true},
		{in: "1:2", bad: true},
		{in: "-1:2:3", bad: true},
		{in: "x", bad: true},
		{in: "1:2:99999999999999999999", bad: true},
	} {
		got, err := ParseStartups(tc.in)
		if tc.bad {
			if err == nil {
				t.Errorf("ParseStartups(%q) = %v, want an error", tc.in, got)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseStartups(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}

// The drop probability is sshd's: RATE% at START, rising linearly to
// 100% at FULL; none below START.
func TestStartupsDrop(t *testing.T) {
	s := Startups{Start: 10, Rate: 30, Full: 20}
	rate := func(pending int) int {
		n := 0
		for r := range 100 {
			if s.drop(pending, func() int { return r }) {
				n++
			}
		}
		return n
	}
	for _, tc := range []struct{ pending, want int }{
		{0, 0}, {9, 0}, {10, 30}, {15, 65}, {19, 93}, {20, 100}, {500, 100},
	} {
		if got := rate(tc.pending); got != tc.want {
			t.Errorf("%v with %d pending drops %d%%, want %d%%", s, tc.pending, got, tc.want)
		}
	}
}

// Per-source counting: an IPv4 address, an IPv6 /64 (one host's usual
// share); a v4-mapped peer of a dual-stack socket counts as its IPv4.
func TestPerSource(t *testing.T) {
	cs := newChildren(100, Startups{Start: 50, Rate: 30, Full: 60}, 2)
	cs.authed = func(int) bool { return false }
	for _, tc := range []struct {
		addr string
		ok   bool
	}{
		{"10.0.0.1", true}, {"::ffff:10.0.0.1", true}, {"10.0.0.1", false}, {"10.0.0.2", true},
		{"fd00::1", true}, {"fd00::ffff:2", true}, {"fd00::3", false}, {"fd00:0:0:1::1", true},
	} {
		c, why := cs.admit(netip.MustParseAddr(tc.addr))
		if (c != nil) != tc.ok {
			t.Errorf("admit(%s) = %v (%s), want admitted=%v", tc.addr, c != nil, why, tc.ok)
		}
	}
	// An authenticated child leaves the pending counts.
	cs = newChildren(100, Startups{Start: 50, Rate: 30, Full: 60}, 1)
	authed := map[int]bool{}
	cs.authed = func(pid int) bool { return authed[pid] }
	c, _ := cs.admit(netip.MustParseAddr("10.0.0.1"))
	cs.started(c, 42)
	if c2, _ := cs.admit(netip.MustParseAddr("10.0.0.1")); c2 != nil {
		t.Fatal("a second pending connection from one source passed a bound of 1")
	}
	authed[42] = true
	if c2, why := cs.admit(netip.MustParseAddr("10.0.0.1")); c2 == nil {
		t.Fatalf("after the first authenticated, a new one from that source was refused: %s", why)
	}
	if p, a := cs.counts(); p != 1 || a != 1 {
		t.Fatalf("counts = %d pending, %d authenticated; want 1, 1", p, a)
	}
	cs.done(c)
	if p, a := cs.counts(); p != 1 || a != 0 {
		t.Fatalf("after done: %d pending, %d authenticated; want 1, 0", p, a)
	}
}

// What OpenSSH 9.2 titles its processes, before and after
// authentication (seen with ps on the real sshd -i here).
func TestSessionTitle(t *testing.T) {
	for title, want := range map[string]bool{
		"sshd: root@notty":         true,
		"sshd: alice@pts/3":        true,
		"sshd-session: bob@notty":  true,
		"sshd: [accepted]":         false,
		"sshd: alice [priv]":       false,
		"sshd: alice@corp [priv]":  false,
		"sshd: x@notty [net]":      false,
		"/usr/sbin/sshd -i -e":     false,
		"sshd: unknown [net]":      false,
		"bash: root@notty":         false,
		"sshd: alice@corp@pts/0":   true,
		"sshd: root@notty garbage": false,
	} {
		if got := sessionTitle.MatchString(title); got != want {
			t.Errorf("%q: authenticated = %v, want %v", title, got, want)
		}
	}
}

// Config.Check is the one place the limits are checked: the command only
// parses them, so an explicit 0 must not read as "the default".
func TestCheckLimits(t *testing.T) {
	ok := func() Config {
		return Config{MaxConns: DefaultMaxConns, PerSourceMaxStartups: DefaultPerSourceMaxStartups, Listen: []string{"127.0.0.1:2222"}}
	}
	for _, tc := range []struct {
		cfg  func(*Config)
		want string
	}{
		{func(c *Config) { c.MaxConns = 0 }, "--max-conns 0: must be at least 1"},
		{func(c *Config) { c.MaxConns = -3 }, "--max-conns -3: must be at least 1"},
		{func(c *Config) { c.PerSourceMaxStartups = 0 }, "--per-source-max-startups 0: must be at least 1"},
		{func(c *Config) { c.PerSourceMaxStartups = -1 }, "--per-source-max-startups -1: must be at least 1"},
	} {
		cfg := ok()
		tc.cfg(&cfg)
		err := cfg.Check()
		if ue, isUsage := err.(UsageError); !isUsage || ue.Msg != tc.want {
			t.Errorf("Check() = %#v, want UsageError %q", err, tc.want)
		}
	}
	cfg := ok()
	if err := cfg.Check(); err != nil {
		t.Fatalf("Check() of valid limits: %v", err)
	}
	if cfg.MaxStartups != DefaultMaxStartups {
		t.Errorf("MaxStartups left zero is %v, want the default %v", cfg.MaxStartups, DefaultMaxStartups)
	}
}
