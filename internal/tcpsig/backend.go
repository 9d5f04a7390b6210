package tcpsig

import (
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"syscall"
)

// Backend is one kind of TCP signature as the kernel offers it (TCP-MD5,
// TCP-AO): how keys are put on a socket, taken off and read back, which
// peers a key set leaves free to connect unsigned, and how an outgoing
// connection is signed before it is made.
type Backend interface {
	// Name is "TCP-MD5" or "TCP-AO", for messages.
	Name() string
	// Keys reads back the keys the socket carries. A backend that cannot
	// report them all returns an error wrapping ErrTooManyToRead.
	Keys(s Socket) ([]Key, error)
	// Set puts k on the socket, replacing a key with the same ID.
	Set(s Socket, k Key) error
	// Delete removes the key with k's ID (k's secret is not needed).
	Delete(s Socket, k Key) error
	// Uncovered is nil when keys leave no peer the socket takes free to
	// connect unsigned, else an error naming what is open (an
	// UncoveredError). A caller that means to protect the socket refuses
	// it then.
	Uncovered(s Socket, keys []Key) error
	// DialControl is a net.Dialer Control function that signs each
	// connection attempt with k, for the exact address dialled (k's
	// prefix is ignored), before connect, and fails the attempt rather
	// than let it go out unsigned.
	DialControl(k Key) func(network, address string, c syscall.RawConn) error
}

// Sealer is a Backend that can make a socket drop every segment without a
// signature by itself (TCP-AO's ao_required), whatever its keys: coverage
// then needs no catch-all key. Reconcile and Install seal first.
type Sealer interface {
	Seal(s Socket) error
}

// ErrTooManyToRead means a socket carries more keys than its backend can
// report, so they cannot be read back (see Shadow).
var ErrTooManyToRead = errors.New("the socket carries more keys than the kernel can report, so they cannot be read back")

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

// Reconcile makes the socket carry exactly the keys in want that apply to
// it, starting from have, what it carries now. It refuses a want that
// leaves a peer family uncovered, adds and replaces before it deletes so
// that no peer is ever left without a key, deletes the most specific
// prefixes first, and on an error puts the keys back as they were.
func Reconcile(b Backend, s Socket, have, want []Key) (Diff, error) {
	if sl, ok := b.(Sealer); ok {
		if err := sl.Seal(s); err != nil {
			return Diff{}, err
		}
	}
	if err := b.Uncovered(s, want); err != nil {
		return Diff{}, err
	}
	apply, _ := s.Cover(want)
	for _, k := range apply {
		if err := k.Validate(); err != nil {
			return Diff{}, err
		}
	}
	mr, _ := b.(Misreporter)
	if mr != nil {
		have = mr.Label(s, have)
	}
	old := make(map[ID]Key, len(have))
	for _, k := range have {
		old[k.ID()] = k
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
	keep := make(map[ID]bool, len(apply))
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
		i := k.ID()
		keep[i] = true
		prev, had := old[i]
		// An interface key is in old only as this process set it; a key
		// for any interface next to interface keys may be misreported, so
		// it is set again rather than compared.
		if had && prev.Same(k) && (k.Ifindex != 0 || !bound[k.Prefix]) {
			continue
		}
		if err := b.Set(s, k); err != nil {
			return undo(fmt.Errorf("%w (%d keys wanted on this socket)", err, len(apply)))
		}
		if had {
			d.Replaced = append(d.Replaced, k.Public())
			done = append(done, func() error { return b.Set(s, prev) })
		} else {
			d.Added = append(d.Added, k.Public())
			done = append(done, func() error { return b.Delete(s, k) })
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
		if err := b.Delete(s, k); err != nil {
			if k.Ifindex == 0 && bound[k.Prefix] && mr.Misreported(s, k, err, apply) {
				continue // an interface key of want, reported without its interface
			}
			return undo(err)
		}
		d.Deleted = append(d.Deleted, k.Public())
		done = append(done, func() error { return b.Set(s, k) })
	}
	return d, nil
}

// Install puts every applicable key on a socket that carries none yet (a
// new one, before listen), after sealing it where the backend can and
// checking that every peer family it takes is covered.
func Install(b Backend, s Socket, keys []Key) error {
	if sl, ok := b.(Sealer); ok {
		if err := sl.Seal(s); err != nil {
			return err
		}
	}
	if err := b.Uncovered(s, keys); err != nil {
		return err
	}
	apply, _ := s.Cover(keys)
	for i, k := range apply {
		if err := b.Set(s, k); err != nil {
			return fmt.Errorf("key %d of %d: %w", i+1, len(apply), err)
		}
	}
	return nil
}

// Shadow is the read-back of a socket past what its backend can report
// (ErrTooManyToRead): what this process last put on it, exact as long as
// nothing else sets keys on the socket (only root could). The zero Shadow
// knows nothing, as for a socket systemd passed with the keys of an
// earlier run.
type Shadow struct {
	installed []Key // nil: unknown
}

// Assume records that keys were put on a fresh socket s (Install).
func (sh *Shadow) Assume(s Socket, keys []Key) { sh.installed, _ = s.Cover(keys) }

// Reconcile is Reconcile reading the socket's keys back, or, when the
// backend cannot report them, comparing against the shadow. Without a
// shadow it returns ErrTooManyToRead: a stale key that cannot be found
// would go on letting its holder in.
func (sh *Shadow) Reconcile(b Backend, s Socket, keys []Key) (Diff, error) {
	have, err := b.Keys(s)
	if errors.Is(err, ErrTooManyToRead) {
		if sh.installed == nil {
			return Diff{}, err
		}
		have, err = sh.installed, nil
	}
	if err != nil {
		return Diff{}, err
	}
	d, err := Reconcile(b, s, have, keys)
	if err != nil {
		return d, err
	}
	sh.installed, _ = s.Cover(keys)
	return d, nil
}
