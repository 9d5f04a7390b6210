//go:build linux

package knock

import (
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

var dst = netip.MustParseAddrPort("10.0.0.1:22")

func src(i int) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}), 40000)
}

type lines struct{ got []string }

func (l *lines) emit(s string) { l.got = append(l.got, s) }

// count is the segments a set of lines accounts for: per-source lines
// and the suppressed and lost summaries.
var segRe = regexp.MustCompile(`(\d+) segments?`)

func segments(ls []string) uint64 {
	var n uint64
	for _, l := range ls {
		if m := segRe.FindStringSubmatch(l); m != nil {
			v, _ := strconv.ParseUint(m[1], 10, 64)
			n += v
		}
	}
	return n
}

// One source, one kind: a line at once, then at most one per window,
// carrying the count since the last; none for a quiet window.
func TestOneLinePerSourcePerWindow(t *testing.T) {
	var l lines
	a := newAggregator(20, 100, "a minute", l.emit)
	for range 5 {
		a.add(Event{Kind: WrongKey, Src: src(1), Dst: dst})
	}
	want := []string{"knock: wrong-key from 10.1.0.1 to 10.0.0.1:22, 1 segment"}
	if strings.Join(l.got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("after 5 segments: %q, want %q", l.got, want)
	}
	a.tick()
	want = append(want, "knock: wrong-key from 10.1.0.1 to 10.0.0.1:22, 4 segments")
	// Still knocking: counted into the next window's line, not logged now.
	for range 3 {
		a.add(Event{Kind: WrongKey, Src: src(1), Dst: dst})
	}
	a.tick()
	want = append(want, "knock: wrong-key from 10.1.0.1 to 10.0.0.1:22, 3 segments")
	a.tick() // quiet
	a.tick() // forgotten
	if len(a.table) != 0 {
		t.Errorf("a source quiet for two windows is still in the table")
	}
	a.add(Event{Kind: WrongKey, Src: src(1), Dst: dst})
	want = append(want, "knock: wrong-key from 10.1.0.1 to 10.0.0.1:22, 1 segment")
	if strings.Join(l.got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("lines:\n%s\nwant:\n%s", strings.Join(l.got, "\n"), strings.Join(want, "\n"))
	}
}

// The kinds are separate: a source that knocks both ways gets two lines.
func TestKindsSeparate(t *testing.T) {
	var l lines
	a := newAggregator(20, 100, "a minute", l.emit)
	a.add(Event{Kind: WrongKey, Src: src(1), Dst: dst})
	a.add(Event{Kind: Unsigned, Src: src(1), Dst: dst})
	if len(l.got) != 2 || !strings.Contains(l.got[1], "unsigned from 10.1.0.1") {
		t.Fatalf("lines %q", l.got)
	}
}

// A flood from many sources: at most maxLines per-source lines per
// window, one summary line, and every segment accounted for; the table
// never grows past maxSources.
func TestFloodBounded(t *testing.T) {
	for _, tc := range []struct{ sources, perSource, maxLines, maxSources int }{
		{10000, 1, 20, 4096},
		{10000, 3, 20, 4096},
		{100, 100, 20, 4096},
		{5000, 2, 5, 10},
	} {
		t.Run(fmt.Sprint(tc), func(t *testing.T) {
			var l lines
			a := newAggregator(tc.maxLines, tc.maxSources, "a minute", l.emit)
			total := 0
			for range tc.perSource {
				for i := range tc.sources {
					a.add(Event{Kind: Unsigned, Src: src(i), Dst: dst})
					total++
					if len(a.table) > tc.maxSources {
						t.Fatalf("table has %d entries, cap %d", len(a.table), tc.maxSources)
					}
				}
			}
			if len(l.got) > tc.maxLines {
				t.Fatalf("%d lines within the window, cap %d", len(l.got), tc.maxLines)
			}
			inWindow := len(l.got)
			a.addLost(7)
			a.tick()
			atTick := l.got[inWindow:]
			if len(atTick) > tc.maxLines+2 {
				t.Fatalf("%d lines at the window's end, cap %d+2", len(atTick), tc.maxLines)
			}
			if got := segments(l.got); got != uint64(total)+7 {
				t.Fatalf("lines account for %d segments, sent %d (+7 lost):\n%s", got, total, strings.Join(l.got, "\n"))
			}
			if !strings.HasPrefix(l.got[len(l.got)-1], "knock: the trace buffer overflowed: 7 segments not seen") {
				t.Errorf("last line %q, want the lost summary", l.got[len(l.got)-1])
			}
			a.tick()
			a.tick()
			if len(a.table) != 0 {
				t.Errorf("%d entries left after two quiet windows", len(a.table))
			}
		})
	}
}

// The busiest sources get the window's lines first.
func TestBusiestFirst(t *testing.T) {
	var l lines
	a := newAggregator(2, 100, "a minute", l.emit)
	a.add(Event{Kind: Unsigned, Src: src(1), Dst: dst})
	a.add(Event{Kind: Unsigned, Src: src(2), Dst: dst})
	for i := range 10 {
		a.add(Event{Kind: Unsigned, Src: src(3 + i%3), Dst: dst})
	}
	for range 50 {
		a.add(Event{Kind: Unsigned, Src: src(9), Dst: dst})
	}
	l.got = nil
	a.tick()
	want := []string{
		"knock: unsigned from 10.1.0.9 to 10.0.0.1:22, 50 segments",
		"knock: unsigned from 10.1.0.3 to 10.0.0.1:22, 4 segments",
		"knock: 2 more source(s) suppressed, 6 segments (at most 2 lines a minute)",
	}
	if strings.Join(l.got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("lines:\n%s\nwant:\n%s", strings.Join(l.got, "\n"), strings.Join(want, "\n"))
	}
}

// IPv6 sources print without brackets, destinations with.
func TestIPv6Line(t *testing.T) {
	var l lines
	a := newAggregator(2, 100, "a minute", l.emit)
	a.add(Event{Kind: Unsigned, Src: netip.MustParseAddrPort("[fd00::2]:5000"), Dst: netip.MustParseAddrPort("[fd00::1]:22")})
	if want := "knock: unsigned from fd00::2 to [fd00::1]:22, 1 segment"; len(l.got) != 1 || l.got[0] != want {
		t.Fatalf("lines %q, want %q", l.got, want)
	}
}
