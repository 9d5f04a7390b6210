package tcpsig

import (
	"fmt"
	"net/netip"
	"strings"
)

// Socket is a TCP socket and the peer families it can be reached from.
// Which families a socket takes decides which keys apply to it and which
// catch-all keys it needs, whatever the backend.
type Socket struct {
	FD     int
	Family int // the system's AF_INET or AF_INET6
	// Takes4 and Takes6 say which peer families can reach the socket: a
	// dual-stack AF_INET6 socket bound to [::] takes both.
	Takes4, Takes6 bool
}

// Takes reports whether peers in p can reach the socket.
func (s Socket) Takes(p netip.Prefix) bool {
	if p.Addr().Is4() {
		return s.Takes4
	}
	return s.Takes6
}

// Families names the peer families the socket takes, for messages.
func (s Socket) Families() string {
	switch {
	case s.Takes4 && s.Takes6:
		return "IPv4 and IPv6"
	case s.Takes4:
		return "IPv4"
	default:
		return "IPv6"
	}
}

// Cover picks the keys that apply to the socket and names, as catch-all
// prefixes, every peer family the socket takes that no interface-free /0
// key covers. The kernel accepts a peer that matches no key unsigned, so a
// caller that means to protect the socket must refuse it while uncovered is
// not empty.
func (s Socket) Cover(keys []Key) (apply []Key, uncovered []netip.Prefix) {
	var all4, all6 bool
	for _, k := range keys {
		if !s.Takes(k.Prefix) {
			continue
		}
		apply = append(apply, k)
		if k.Prefix.Bits() == 0 && k.Ifindex == 0 {
			if k.Prefix.Addr().Is4() {
				all4 = true
			} else {
				all6 = true
			}
		}
	}
	if s.Takes4 && !all4 {
		uncovered = append(uncovered, netip.MustParsePrefix("0.0.0.0/0"))
	}
	if s.Takes6 && !all6 {
		uncovered = append(uncovered, netip.MustParsePrefix("::/0"))
	}
	return apply, uncovered
}

// UncoveredError reports peer families a socket takes that no key covers.
type UncoveredError struct {
	Socket  Socket
	Missing []netip.Prefix
	// Bound are those of Missing that have a catch-all key, but one bound
	// to an interface: it covers only peers on that interface.
	Bound []netip.Prefix
}

// Uncovered is the UncoveredError for keys on s, or nil when every peer
// family s takes is covered.
func (s Socket) Uncovered(keys []Key) error {
	_, missing := s.Cover(keys)
	if len(missing) == 0 {
		return nil
	}
	e := UncoveredError{Socket: s, Missing: missing}
	for _, m := range missing {
		for _, k := range keys {
			if k.Prefix == m && k.Ifindex != 0 {
				e.Bound = append(e.Bound, m)
				break
			}
		}
	}
	return e
}

// Error words the fix without configuration syntax ("add a key for
// 0.0.0.0/0"); the caller that knows where keys are written words it with
// Worded.
func (e UncoveredError) Error() string { return e.Worded(nil) }

// Worded is the message with the fix named in the caller's configuration:
// entry gives what holds a key for a prefix there (the keyring's
// [peers."0.0.0.0/0"]); nil says "a key for 0.0.0.0/0".
func (e UncoveredError) Worded(entry func(netip.Prefix) string) string {
	msg := fmt.Sprintf("the socket takes %s peers but no key covers %s: peers outside the listed prefixes would connect unsigned",
		e.Socket.Families(), joinPrefixes(e.Missing))
	if len(e.Bound) > 0 {
		// The entry exists: saying "add it" would send the admin in a
		// circle.
		return msg + fmt.Sprintf("; the key for %s is bound to an interface, so it covers only peers on that interface: add a catch-all without interface, or listen on that interface's address only", joinPrefixes(e.Bound))
	}
	if entry == nil {
		var names []string
		for _, p := range e.Missing {
			names = append(names, p.String())
		}
		msg += "; add a key for " + strings.Join(names, " and ")
	} else {
		var names []string
		for _, p := range e.Missing {
			names = append(names, entry(p))
		}
		msg += fmt.Sprintf("; add %s with a key", strings.Join(names, " and "))
	}
	if e.Socket.Takes4 && e.Socket.Takes6 {
		msg += ", or listen on one family only"
	}
	return msg
}

func joinPrefixes(ps []netip.Prefix) string {
	var s []string
	for _, p := range ps {
		s = append(s, p.String())
	}
	return strings.Join(s, " or ")
}
