//go:build linux

package md5

import (
	"net/netip"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/sshmd5/sshmd5/internal/tcpsig"
)

// sock_diag reports a key's prefix and secret but not its interface
// (struct tcp_diag_md5sig has no field for it), so Keys returns a key
// bound to a VRF as if it were for any interface. Reconcile would then
// look for it under the wrong identity: deleting that gives ENOENT, and
// the undo removed the real key. The process therefore remembers the
// interface keys it put on each socket and labels the report with them.
// A socket is named by its inode, which stays the same from socket() to
// close whatever bind and listen do.

type keyID struct {
	p   netip.Prefix
	ifx int
}

var _ tcpsig.Misreporter = backend{}

var (
	ifKeysMu sync.Mutex
	ifKeys   = map[uint64]map[keyID]Secret{} // socket inode -> interface keys set on it
)

func inode(fd int) (uint64, bool) {
	var st unix.Stat_t
	if unix.Fstat(fd, &st) != nil {
		return 0, false
	}
	return st.Ino, true
}

// noteInterfaceKey records a successful set (secret != nil) or delete of
// an interface key.
func (s Socket) noteInterfaceKey(k Key, secret Secret) {
	if k.Ifindex == 0 {
		return
	}
	ino, ok := inode(s.FD)
	if !ok {
		return
	}
	ifKeysMu.Lock()
	defer ifKeysMu.Unlock()
	id := keyID{k.Prefix, k.Ifindex}
	if secret == nil {
		delete(ifKeys[ino], id)
		return
	}
	if ifKeys[ino] == nil {
		ifKeys[ino] = map[keyID]Secret{}
	}
	ifKeys[ino][id] = append(Secret(nil), secret...)
}

// withInterfaces gives the keys of a kernel report (Ifindex 0) the
// interface this process set them with: one reported key of the same
// prefix and secret per recorded interface key. A recorded key the report
// does not have is no longer on the socket and stays unlabeled.
func (s Socket) withInterfaces(have []Key) []Key {
	ino, ok := inode(s.FD)
	if !ok {
		return have
	}
	ifKeysMu.Lock()
	defer ifKeysMu.Unlock()
	rec := ifKeys[ino]
	if len(rec) == 0 {
		return have
	}
	out := append([]Key(nil), have...)
	exact := map[keyID]bool{}
	for _, k := range out {
		if k.Ifindex != 0 {
			exact[keyID{k.Prefix, k.Ifindex}] = true // the caller knew already
		}
	}
	labeled := make([]bool, len(out))
	for id, secret := range rec {
		if exact[id] {
			continue
		}
		for i := range out {
			if !labeled[i] && out[i].Ifindex == 0 && out[i].Prefix == id.p && out[i].Secret.Equal(secret) {
				out[i].Ifindex, labeled[i] = id.ifx, true
				break
			}
		}
	}
	return out
}

// reportedOnce reports whether the socket now carries no more keys for p
// than want has for p. A reported key that could not be deleted as
// interface 0 (ENOENT) is then one of want's interface keys, set by an
// earlier process (a socket systemd holds) and just replaced.
func (s Socket) reportedOnce(p netip.Prefix, want []Key) bool {
	have, err := s.Keys()
	if err != nil {
		return false
	}
	n := 0
	for _, k := range want {
		if k.Prefix == p {
			n--
		}
	}
	for _, k := range have {
		if k.Prefix == p {
			n++
		}
	}
	return n <= 0
}
