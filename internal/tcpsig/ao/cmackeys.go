//go:build linux

package ao

import (
	"sync"

	"golang.org/x/sys/unix"

	"github.com/sshmd5/sshmd5/internal/tcpsig"
)

// The kernel keeps a cmac(aes128) key whose secret is not 16 bytes as the
// key RFC 5926's KDF derives from it, and reports that back. Reconcile
// would then see every such key as changed and replace it on each reload.
// The process remembers the secrets it set (per socket, named by its
// inode, which bind and listen do not change) and reports a derived key
// as its secret when the derivation matches; a later process (a socket
// systemd holds) replaces the key once and remembers it from then on.
var (
	cmacMu      sync.Mutex
	cmacSecrets = map[uint64]map[tcpsig.ID]tcpsig.Secret{}
)

func derived(k tcpsig.Key) bool {
	return k.AO != nil && k.AO.Algorithm == tcpsig.AOCMACAES128 && len(k.Secret) != 16
}

func inode(fd int) (uint64, bool) {
	var st unix.Stat_t
	if unix.Fstat(fd, &st) != nil {
		return 0, false
	}
	return st.Ino, true
}

// noteSet records k's secret after a successful add, or forgets it after
// a delete (set false).
func noteSet(fd int, k tcpsig.Key, set bool) {
	ino, ok := inode(fd)
	if !ok {
		return
	}
	cmacMu.Lock()
	defer cmacMu.Unlock()
	m := cmacSecrets[ino]
	if !set || !derived(k) {
		if m != nil {
			delete(m, k.ID())
			if len(m) == 0 {
				delete(cmacSecrets, ino)
			}
		}
		return
	}
	if m == nil {
		m = map[tcpsig.ID]tcpsig.Secret{}
		cmacSecrets[ino] = m
	}
	m[k.ID()] = append(tcpsig.Secret(nil), k.Secret...)
}

// underive gives read-back cmac(aes128) keys the secret they were set
// with, where this process set it and it derives to what the kernel holds.
func underive(fd int, keys []tcpsig.Key) {
	ino, ok := inode(fd)
	if !ok {
		return
	}
	cmacMu.Lock()
	defer cmacMu.Unlock()
	m := cmacSecrets[ino]
	for i, k := range keys {
		if k.AO.Algorithm != tcpsig.AOCMACAES128 || len(k.Secret) != 16 {
			continue
		}
		if orig, ok := m[k.ID()]; ok && tcpsig.Secret(cmacKDF(orig)).Equal(k.Secret) {
			clear(keys[i].Secret)
			keys[i].Secret = append(tcpsig.Secret(nil), orig...)
		}
	}
}
