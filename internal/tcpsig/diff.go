package tcpsig

import "fmt"

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
	was := make(map[ID]Key, len(old))
	for _, k := range old {
		was[k.ID()] = k
	}
	is := make(map[ID]bool, len(new))
	for _, k := range new {
		i := k.ID()
		is[i] = true
		o, had := was[i]
		switch {
		case !had:
			added = append(added, k.Public())
		case !o.Same(k):
			changed = append(changed, k.Public())
		}
	}
	for _, k := range old {
		if !is[k.ID()] {
			removed = append(removed, k.Public())
		}
	}
	return added, removed, changed
}
