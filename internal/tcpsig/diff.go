package tcpsig

import (
	"fmt"
	"net/netip"
)

// Diff is what Reconcile changed on a socket. Its keys carry no secrets.
type Diff struct {
	Added, Replaced, Deleted []Key
}

// Empty reports whether nothing changed.
func (d Diff) Empty() bool { return len(d.Added)+len(d.Replaced)+len(d.Deleted) == 0 }

func (d Diff) String() string {
	return fmt.Sprintf("%d added, %d replaced, %d deleted", len(d.Added), len(d.Replaced), len(d.Deleted))
}

// Compare tells what going from old to new does to a key set: prefixes
// added and removed, and prefixes kept with another secret. The keys it
// returns carry no secrets.
func Compare(old, new []Key) (added, removed, changed []Key) {
	type id struct {
		p   netip.Prefix
		ifx int
	}
	was := make(map[id]Secret, len(old))
	for _, k := range old {
		was[id{k.Prefix, k.Ifindex}] = k.Secret
	}
	is := make(map[id]bool, len(new))
	for _, k := range new {
		i := id{k.Prefix, k.Ifindex}
		is[i] = true
		s, had := was[i]
		switch {
		case !had:
			added = append(added, Key{Prefix: k.Prefix, Ifindex: k.Ifindex})
		case !s.Equal(k.Secret):
			changed = append(changed, Key{Prefix: k.Prefix, Ifindex: k.Ifindex})
		}
	}
	for _, k := range old {
		if !is[id{k.Prefix, k.Ifindex}] {
			removed = append(removed, Key{Prefix: k.Prefix, Ifindex: k.Ifindex})
		}
	}
	return added, removed, changed
}
