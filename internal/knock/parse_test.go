//go:build linux

package knock

import (
	"net/netip"
	"testing"
)

// Lines as this kernel (6.18) writes them, with and without the context
// columns.
func TestParseLine(t *testing.T) {
	for _, tc := range []struct {
		line string
		ev   Event
		lost uint64
		ok   bool
	}{
		{"tcp_hash_md5_required: net=5868 state=TCP_LISTEN family=AF_INET src=10.250.77.2:2132 dest=10.250.77.1:2222 L3index=0 [ S   ]",
			Event{Unsigned, 5868, netip.MustParseAddrPort("10.250.77.2:2132"), netip.MustParseAddrPort("10.250.77.1:2222")}, 0, true},
		{"    systemd.test-17646   [001] ..s1.  1153.602183: tcp_hash_md5_mismatch: net=1748 state=TCP_LISTEN family=AF_INET6 src=[fd00:f2:d3::2]:38546 dest=[fd00:f2:d3::1]:22 L3index=0 [ S   ]",
			Event{WrongKey, 1748, netip.MustParseAddrPort("[fd00:f2:d3::2]:38546"), netip.MustParseAddrPort("[fd00:f2:d3::1]:22")}, 0, true},
		// A dual-stack socket's IPv4 peer.
		{"tcp_hash_md5_required: net=1748 state=TCP_LISTEN family=AF_INET6 src=[::ffff:10.2.0.2]:56598 dest=[::ffff:10.2.0.1]:22 L3index=0 [ S   ]",
			Event{Unsigned, 1748, netip.MustParseAddrPort("10.2.0.2:56598"), netip.MustParseAddrPort("10.2.0.1:22")}, 0, true},
		{"tcp_ao_handshake_failure: net=9 state=TCP_LISTEN family=AF_INET src=10.0.0.2:1 dest=10.0.0.1:22 L3index=0 [ S   ] keyid=1 rnext=2 maclen=12",
			Event{WrongKey, 9, netip.MustParseAddrPort("10.0.0.2:1"), netip.MustParseAddrPort("10.0.0.1:22")}, 0, true},
		{"tcp_hash_ao_required: net=9 state=TCP_LISTEN family=AF_INET src=10.0.0.2:1 dest=10.0.0.1:22 L3index=0 [ S   ]",
			Event{Unsigned, 9, netip.MustParseAddrPort("10.0.0.2:1"), netip.MustParseAddrPort("10.0.0.1:22")}, 0, true},
		{"CPU:1 [LOST 64329 EVENTS]", Event{}, 64329, true},
		{"tcp_probe: src=10.0.0.2:1 dest=10.0.0.1:22", Event{}, 0, false},
		{"tcp_hash_md5_required: net=x src=10.0.0.2:1 dest=10.0.0.1:22", Event{}, 0, false},
		{"tcp_hash_md5_required: net=1 src=10.0.0.2 dest=10.0.0.1:22", Event{}, 0, false},
		{"xtcp_hash_md5_required: net=1 src=10.0.0.2:1 dest=10.0.0.1:22", Event{}, 0, false},
		{"", Event{}, 0, false},
	} {
		ev, lost, ok := parseLine([]byte(tc.line))
		if ev != tc.ev || lost != tc.lost || ok != tc.ok {
			t.Errorf("parseLine(%q) = %+v, %d, %v; want %+v, %d, %v", tc.line, ev, lost, ok, tc.ev, tc.lost, tc.ok)
		}
	}
}

func FuzzParseLine(f *testing.F) {
	f.Add([]byte("tcp_hash_md5_required: net=5868 state=TCP_LISTEN family=AF_INET src=10.250.77.2:2132 dest=10.250.77.1:2222 L3index=0 [ S   ]"))
	f.Add([]byte("CPU:1 [LOST 64329 EVENTS]"))
	f.Fuzz(func(t *testing.T, b []byte) {
		ev, _, ok := parseLine(b)
		if ok && ev.Src.IsValid() && ev.Src.Addr().Is4In6() {
			t.Fatalf("mapped address kept: %v", ev.Src)
		}
	})
}

func TestMatcher(t *testing.T) {
	ev := func(dst string) Event {
		return Event{Cookie: 7, Src: netip.MustParseAddrPort("10.9.9.9:1"), Dst: netip.MustParseAddrPort(dst)}
	}
	for _, tc := range []struct {
		listen []string
		ev     Event
		want   bool
	}{
		{[]string{"[::]:22"}, ev("10.0.0.1:22"), true},
		{[]string{"[::]:22"}, ev("[fd00::1]:22"), true},
		{[]string{"0.0.0.0:22"}, ev("10.0.0.1:22"), true},
		{[]string{"0.0.0.0:22"}, ev("[fd00::1]:22"), false},
		{[]string{"10.0.0.1:22"}, ev("10.0.0.1:22"), true},
		{[]string{"10.0.0.1:22"}, ev("10.0.0.2:22"), false},
		{[]string{"10.0.0.1:22"}, ev("10.0.0.1:23"), false},
		{[]string{"10.0.0.2:22", "10.0.0.1:2222"}, ev("10.0.0.1:2222"), true},
		{[]string{"[::]:22"}, Event{Cookie: 8, Dst: netip.MustParseAddrPort("10.0.0.1:22")}, false},
	} {
		cfg := Config{Cookie: 7}
		for _, l := range tc.listen {
			cfg.Listeners = append(cfg.Listeners, netip.MustParseAddrPort(l))
		}
		if got := matcher(cfg)(tc.ev); got != tc.want {
			t.Errorf("listeners %v, event to %v (net=%d): %v, want %v", tc.listen, tc.ev.Dst, tc.ev.Cookie, got, tc.want)
		}
	}
}

func TestFilterExpr(t *testing.T) {
	if got, want := filterExpr(42, []uint16{2222, 22, 2222}), "net_cookie == 42 && (dport == 22 || dport == 2222)"; got != want {
		t.Errorf("filterExpr = %q, want %q", got, want)
	}
}

func TestInstancePid(t *testing.T) {
	for name, want := range map[string]int{"sshd-md5-123": 123, "sshd-md5-0": 0, "sshd-md5-012": 0, "sshd-md5-": 0, "other-5": 0, "sshd-md5-5x": 0} {
		pid, ok := instancePid(name)
		if pid != want || ok != (want > 0) {
			t.Errorf("instancePid(%q) = %d, %v", name, pid, ok)
		}
	}
}
