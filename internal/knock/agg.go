//go:build linux

package knock

import (
	"container/list"
	"fmt"
	"net/netip"
	"sort"
)

// aggregator turns rejected segments into few log lines. Time is cut into
// windows (Config.Interval) by the caller, which calls tick at the end of
// each. The bounds (DESIGN.md, "Knock log lines are bounded"):
//   - at most one line per source and kind per window: the first segment
//     of a source is logged at once (so that fail2ban can act on it), the
//     ones after it are counted and logged in one line when the window
//     ends;
//   - at most maxLines such lines per window in all; sources beyond that
//     are summed up in one "more source(s) suppressed" line per window;
//   - at most maxSources sources in memory: the least recently seen is
//     evicted, its unlogged segments counted as suppressed.
type aggregator struct {
	maxLines, maxSources int
	emit                 func(string)
	what                 string // "a minute", for the suppressed line

	budget int
	table  map[aggKey]*list.Element // of *aggEntry
	lru    *list.List               // front: most recently seen

	supSources, supSegments uint64 // this window
	lost                    uint64 // events the trace buffer dropped, this window
}

type aggKey struct {
	src  netip.Addr
	kind Kind
}

type aggEntry struct {
	aggKey
	dst    netip.AddrPort // of the latest segment
	count  uint64         // segments not yet in a line
	logged bool           // had its line in this window
	seen   bool           // had a segment in this window
}

func newAggregator(maxLines, maxSources int, what string, emit func(string)) *aggregator {
	return &aggregator{
		maxLines: maxLines, maxSources: maxSources, what: what, emit: emit,
		budget: maxLines,
		table:  make(map[aggKey]*list.Element),
		lru:    list.New(),
	}
}

// add counts one segment of src, and logs it at once if src has had no
// line in this window and the window's budget allows.
func (a *aggregator) add(ev Event) {
	k := aggKey{ev.Src.Addr(), ev.Kind}
	var e *aggEntry
	if el, ok := a.table[k]; ok {
		a.lru.MoveToFront(el)
		e = el.Value.(*aggEntry)
	} else {
		if len(a.table) >= a.maxSources {
			a.evict()
		}
		e = &aggEntry{aggKey: k}
		a.table[k] = a.lru.PushFront(e)
	}
	e.dst, e.seen = ev.Dst, true
	e.count++
	if !e.logged && a.budget > 0 {
		a.line(e)
	}
}

// addLost counts events the kernel's trace buffer dropped before they
// were read: their sources are unknown.
func (a *aggregator) addLost(n uint64) { a.lost += n }

func (a *aggregator) evict() {
	el := a.lru.Back()
	e := el.Value.(*aggEntry)
	if e.count > 0 {
		a.supSources++
		a.supSegments += e.count
	}
	a.lru.Remove(el)
	delete(a.table, e.aggKey)
}

func (a *aggregator) line(e *aggEntry) {
	a.emit(fmt.Sprintf("knock: %s from %s to %s, %s", e.kind, e.src, e.dst, plural(e.count, "segment")))
	a.budget--
	e.count, e.logged = 0, true
}

// tick ends a window: the sources with segments not yet logged get their
// line, busiest first, within the new window's budget; the rest are
// summed up; sources quiet for a whole window are forgotten.
func (a *aggregator) tick() {
	a.budget = a.maxLines
	var pending []*aggEntry
	for el := a.lru.Front(); el != nil; {
		next := el.Next()
		e := el.Value.(*aggEntry)
		e.logged = false
		switch {
		case e.count > 0:
			pending = append(pending, e)
		case !e.seen:
			a.lru.Remove(el)
			delete(a.table, e.aggKey)
		}
		e.seen = false
		el = next
	}
	sort.SliceStable(pending, func(i, j int) bool { return pending[i].count > pending[j].count })
	for _, e := range pending {
		if a.budget > 0 {
			a.line(e)
			continue
		}
		a.supSources++
		a.supSegments += e.count
		e.count = 0
	}
	if a.supSources > 0 {
		a.emit(fmt.Sprintf("knock: %d more source(s) suppressed, %s (at most %d lines %s)",
			a.supSources, plural(a.supSegments, "segment"), a.maxLines, a.what))
		a.supSources, a.supSegments = 0, 0
	}
	if a.lost > 0 {
		a.emit(fmt.Sprintf("knock: the trace buffer overflowed: %s not seen, sources unknown", plural(a.lost, "segment")))
		a.lost = 0
	}
}

func plural(n uint64, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}
