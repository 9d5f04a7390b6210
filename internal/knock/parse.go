//go:build linux

package knock

import (
	"bytes"
	"net/netip"
	"strconv"
)

// Kind is what was wrong with a segment.
type Kind uint8

const (
	// Unsigned: no signature where the socket wants one.
	Unsigned Kind = iota
	// WrongKey: signed, but not with a key the socket has for the peer.
	WrongKey
)

func (k Kind) String() string {
	if k == WrongKey {
		return "wrong-key"
	}
	return "unsigned"
}

// Event is one rejected segment as the kernel's trace reports it.
type Event struct {
	Kind   Kind
	Cookie uint64         // network namespace cookie (net=)
	Src    netip.AddrPort // the peer
	Dst    netip.AddrPort // our side
}

// event is a tracepoint this package reads, and what it means.
type event struct {
	name string
	kind Kind
	// required: without it, tracing is not worth doing and the counters
	// take over. The others (TCP-AO, the rarer MD5 cases) are used
	// where the kernel has them.
	required bool
}

// events are the tcp: tracepoints that report a rejected signature, all
// with the same "net=... src=... dest=..." print format (Linux 6.7+,
// include/trace/events/tcp.h, tcp_hash_event and tcp_ao_event).
var events = []event{
	{"tcp_hash_md5_required", Unsigned, true},
	{"tcp_hash_md5_mismatch", WrongKey, true},
	// A signed segment where the socket has no key for that peer: to an
	// admin, a key that is not ours.
	{"tcp_hash_md5_unexpected", WrongKey, false},
	{"tcp_hash_ao_required", Unsigned, false},
	{"tcp_ao_handshake_failure", WrongKey, false},
	{"tcp_ao_wrong_maclen", WrongKey, false},
	{"tcp_ao_mismatch", WrongKey, false},
	{"tcp_ao_key_not_found", WrongKey, false},
}

// maxLine bounds one line of trace_pipe; the kernel's are about 160 bytes.
const maxLine = 1024

// parseLine reads one line of trace_pipe: an event, or the kernel's
// "CPU:N [LOST M EVENTS]" (lost > 0). The line may carry the context
// columns (task, CPU, flags, timestamp) or not (options/context-info off,
// which is how this package sets its instance). Anything else is ignored:
// ok is false.
func parseLine(line []byte) (ev Event, lost uint64, ok bool) {
	if i := bytes.Index(line, []byte(" [LOST ")); i >= 0 && bytes.HasPrefix(line, []byte("CPU:")) {
		rest := line[i+len(" [LOST "):]
		if j := bytes.IndexByte(rest, ' '); j > 0 {
			if n, err := strconv.ParseUint(string(rest[:j]), 10, 64); err == nil {
				return Event{}, n, true
			}
		}
		return Event{}, 0, false
	}
	// The event name is followed by ": "; take the first known one.
	found := false
	for _, e := range events {
		if i := bytes.Index(line, []byte(e.name+": ")); i >= 0 && (i == 0 || line[i-1] == ' ') {
			ev.Kind = e.kind
			line = line[i+len(e.name)+2:]
			found = true
			break
		}
	}
	if !found {
		return Event{}, 0, false
	}
	var haveNet, haveSrc, haveDst bool
	for _, f := range bytes.Fields(line) {
		k, v, ok := bytes.Cut(f, []byte("="))
		if !ok {
			continue
		}
		switch string(k) {
		case "net":
			n, err := strconv.ParseUint(string(v), 10, 64)
			ev.Cookie, haveNet = n, err == nil
		case "src":
			ev.Src, haveSrc = parseAddrPort(v)
		case "dest":
			ev.Dst, haveDst = parseAddrPort(v)
		}
	}
	if !haveNet || !haveSrc || !haveDst {
		return Event{}, 0, false
	}
	return ev, 0, true
}

// parseAddrPort reads the kernel's %pISpc: 10.0.0.1:22 or [fd00::1]:22.
// IPv4-mapped addresses (a dual-stack socket's IPv4 peers) are unmapped.
func parseAddrPort(b []byte) (netip.AddrPort, bool) {
	ap, err := netip.ParseAddrPort(string(b))
	if err != nil {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), true
}
