//go:build linux

package md5

import "errors"

// Shadow is the read-back of a socket past what sock_diag can report
// (MaxReadableKeys): what this process last put on it, exact as long as
// nothing else sets keys on the socket (only root could). The zero Shadow
// knows nothing, as for a socket systemd passed with the keys of an
// earlier run.
type Shadow struct {
	installed []Key // nil: unknown
}

// Assume records that keys were put on a fresh socket s (ListenControl).
func (sh *Shadow) Assume(s Socket, keys []Key) { sh.installed, _ = s.Cover(keys) }

// Reconcile is Socket.Reconcile that, when the kernel cannot report the
// keys, compares against the shadow instead. Without a shadow it returns
// ErrTooManyToRead: a stale key that cannot be found would go on letting
// its holder in.
func (sh *Shadow) Reconcile(s Socket, keys []Key) (Diff, error) {
	have, err := s.Keys()
	if errors.Is(err, ErrTooManyToRead) {
		if sh.installed == nil {
			return Diff{}, err
		}
		have, err = sh.installed, nil
	}
	if err != nil {
		return Diff{}, err
	}
	d, err := s.ReconcileFrom(have, keys)
	if err != nil {
		return d, err
	}
	sh.installed, _ = s.Cover(keys)
	return d, nil
}
