//go:build linux

package md5

import (
	"errors"
	"fmt"
	"net/netip"
	"sort"

	"golang.org/x/sys/unix"

	"github.com/sshmd5/sshmd5/internal/tcpsig"
)

// Diff is what Reconcile changed on a socket. Its keys carry no secrets.
type Diff = tcpsig.Diff

// Reconcile makes the socket carry exactly the keys in want that apply to
// it. It reads the present keys back from the kernel (keys put on a socket
// systemd holds survive restarts of the service), refuses a want that
// leaves a peer family uncovered, adds and replaces before it deletes so
// that no peer is ever left without a key, and on a kernel error puts the
// keys back as they were. Interface (VRF) keys, which the kernel reports
// without their interface, are matched to the ones this process set
// (see withInterfaces).
func (s Socket) Reconcile(want []Key) (Diff, error) {
	have, err := s.Keys()
	if err != nil {
		return Diff{}, err
	}
	return s.ReconcileFrom(have, want)
}

// ReconcileFrom is Reconcile for a caller that knows what the socket
// carries, for key sets too large for sock_diag to report.
func (s Socket) ReconcileFrom(have, want []Key) (Diff, error) {
	apply, uncovered := s.Cover(want)
	if len(uncovered) > 0 {
		return Diff{}, s.Uncovered(want)
	}
	for _, k := range apply {
		if err := k.Validate(); err != nil {
			return Diff{}, err
		}
	}
	type id = keyID
	have = s.withInterfaces(have)
	old := make(map[id]Key, len(have))
	for _, k := range have {
		old[id{k.Prefix, k.Ifindex}] = k
	}
	// Where a prefix has interface keys, a reported key for any interface
	// may be one of them set by an earlier process (see withInterfaces).
	bound := map[netip.Prefix]bool{}
	for _, k := range apply {
		if k.Ifindex != 0 {
			bound[k.Prefix] = true
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
		if err := s.Set(k); err != nil {
			return undo(fmt.Errorf("%w (%d keys wanted on this socket)", err, len(apply)))
		}
		if had {
			d.Replaced = append(d.Replaced, Key{Prefix: k.Prefix, Ifindex: k.Ifindex})
			done = append(done, func() error { return s.Set(prev) })
		} else {
			d.Added = append(d.Added, Key{Prefix: k.Prefix, Ifindex: k.Ifindex})
			done = append(done, func() error { return s.Delete(k.Prefix, k.Ifindex) })
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
		if err := s.Delete(k.Prefix, k.Ifindex); err != nil {
			if k.Ifindex == 0 && bound[k.Prefix] && errors.Is(err, unix.ENOENT) && s.reportedOnce(k.Prefix, apply) {
				continue // an interface key of want, reported without its interface
			}
			return undo(err)
		}
		d.Deleted = append(d.Deleted, Key{Prefix: k.Prefix, Ifindex: k.Ifindex})
		done = append(done, func() error { return s.Set(k) })
	}
	return d, nil
}
