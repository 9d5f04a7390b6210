package tcpsig

import (
	"fmt"
	"net/netip"
	"sort"
	"syscall"
)

// Backend is one kind of TCP signature as the kernel offers it (TCP-MD5
// today): how keys are put on a socket, taken off and read back, which
// peers a key set leaves free to connect unsigned, and how an outgoing
// connection is signed before it is made.
type Backend interface {
	// Keys reads back the keys the socket carries.
	Keys(s Socket) ([]Key, error)
	// Set puts k on the socket, replacing a key for the same prefix and
	// interface.
	Set(s Socket, k Key) error
	// Delete removes the key for prefix p and interface ifindex.
	Delete(s Socket, p netip.Prefix, ifindex int) error
	// Uncovered is nil when keys leave no peer the socket takes free to
	// connect unsigned, else an error naming what is open (an
	// UncoveredError). A caller that means to protect the socket refuses
	// it then.
	Uncovered(s Socket, keys []Key) error
	// DialControl is a net.Dialer Control function that signs each
	// connection attempt with secret before connect, and fails the
	// attempt rather than let it go out unsigned.
	DialControl(secret Secret) func(network, address string, c syscall.RawConn) error
}

// Misreporter is a Backend whose read-back can report a key bound to an
// interface as if it were for any interface (TCP-MD5's sock_diag has no
// field for the interface). Reconcile then neither trusts such a report
// nor fails on the delete of a key that exists only in it.
type Misreporter interface {
	// Label gives reported keys the interface this process set them
	// with, where it knows.
	Label(s Socket, have []Key) []Key
	// Misreported tells whether err, from deleting stale, means stale was
	// only the report of one of want's interface keys.
	Misreported(s Socket, stale Key, err error, want []Key) bool
}

type keyID struct {
	p   netip.Prefix
	ifx int
}

// Reconcile makes the socket carry exactly the keys in want that apply to
// it, starting from have, what it carries now. It refuses a want that
// leaves a peer family uncovered, adds and replaces before it deletes so
// that no peer is ever left without a key, deletes the most specific
// prefixes first, and on an error puts the keys back as they were.
func Reconcile(b Backend, s Socket, have, want []Key) (Diff, error) {
	if err := b.Uncovered(s, want); err != nil {
		return Diff{}, err
	}
	apply, _ := s.Cover(want)
	for _, k := range apply {
		if err := k.Validate(); err != nil {
			return Diff{}, err
		}
	}
	type id = keyID
	mr, _ := b.(Misreporter)
	if mr != nil {
		have = mr.Label(s, have)
	}
	old := make(map[id]Key, len(have))
	for _, k := range have {
		old[id{k.Prefix, k.Ifindex}] = k
	}
	// Where a prefix has interface keys, a reported key for any interface
	// may be one of them set by an earlier process (see Misreporter).
	bound := map[netip.Prefix]bool{}
	if mr != nil {
		for _, k := range apply {
			if k.Ifindex != 0 {
				bound[k.Prefix] = true
			}
		}
	}
	keep := make(map[id]bool, len(apply))
	var d Diff
	var done []func() error // undo steps, run newest first
	undo := func(cause error) (Diff, error) {
		for i := len(done) - 1; i >= 0; i-- {
			if err := done[i](); err != nil {
				return Diff{}, fmt.Errorf("%w; restoring the previous keys also failed: %v", cause, err)
			}
		}
		return Diff{}, fmt.Errorf("%w (previous keys restored)", cause)
	}
	for _, k := range apply {
		i := id{k.Prefix, k.Ifindex}
		keep[i] = true
		prev, had := old[i]
		// An interface key is in old only as this process set it; a key
		// for any interface next to interface keys may be misreported, so
		// it is set again rather than compared.
		if had && prev.Secret.Equal(k.Secret) && (k.Ifindex != 0 || !bound[k.Prefix]) {
			continue
		}
		if err := b.Set(s, k); err != nil {
			return undo(fmt.Errorf("%w (%d keys wanted on this socket)", err, len(apply)))
		}
		if had {
			d.Replaced = append(d.Replaced, Key{Prefix: k.Prefix, Ifindex: k.Ifindex})
			done = append(done, func() error { return b.Set(s, prev) })
		} else {
			d.Added = append(d.Added, Key{Prefix: k.Prefix, Ifindex: k.Ifindex})
			done = append(done, func() error { return b.Delete(s, k.Prefix, k.Ifindex) })
		}
	}
	stale := make([]Key, 0)
	for i, k := range old {
		if !keep[i] {
			stale = append(stale, k)
		}
	}
	// Most specific first: deleting a /32 leaves its peer under the /0 key
	// that is still there, never unkeyed.
	sort.Slice(stale, func(a, b int) bool { return stale[a].Prefix.Bits() > stale[b].Prefix.Bits() })
	for _, k := range stale {
		if err := b.Delete(s, k.Prefix, k.Ifindex); err != nil {
			if k.Ifindex == 0 && bound[k.Prefix] && mr.Misreported(s, k, err, apply) {
				continue // an interface key of want, reported without its interface
			}
			return undo(err)
		}
		d.Deleted = append(d.Deleted, Key{Prefix: k.Prefix, Ifindex: k.Ifindex})
		done = append(done, func() error { return b.Set(s, k) })
	}
	return d, nil
}
