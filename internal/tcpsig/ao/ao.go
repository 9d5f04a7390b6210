//go:build linux

// Package ao is TCP-AO (RFC 5925, Linux 6.7+ with CONFIG_TCP_AO) as a
// tcpsig.Backend: the kernel's TCP_AO_ADD_KEY, TCP_AO_DEL_KEY,
// TCP_AO_GET_KEYS and TCP_AO_INFO socket options, whose structs x/sys/unix
// does not have yet and which are written out here, pinned by a layout
// test.
//
// A listener holds many keys for one prefix, one per user, told apart by
// RecvID; it is sealed with ao_required, so a segment without TCP-AO is
// dropped whatever the peer's address and no catch-all key is needed.
//
// What the code relies on, read from net/ipv4/tcp_ao.c (Linux 6.12):
//   - ao_required can be set on a socket without keys (listening or not
//     yet connected): the kernel then makes the socket's TCP-AO state
//     with no key in it, and every unsigned segment is dropped
//     (TCPAORequired). It refuses (EKEYREJECTED) on a socket with TCP-MD5
//     keys. Seal therefore comes first, before any key: a listener is
//     never open to unsigned peers between its keys and its seal.
//   - TCP_AO_INFO writes ao_required and accept_icmps every time; there
//     is no flag to leave them. Seal reads them first and keeps
//     accept_icmps.
//   - A key whose SendID or RecvID is already used by a key for an
//     overlapping prefix gives EEXIST; there is no replace in place.
//   - On an accepted socket the key the peer's SYN was verified with (its
//     KeyID matched against RecvID) is the socket's rnext key; the current
//     key is the one the SYN's RNextKeyID asked for, and the peer can move
//     it later. Current reports the rnext key.
package ao

import (
	"errors"
	"fmt"
	"net/netip"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/sshmd5/sshmd5/internal/tcpsig"
)

// Backend is TCP-AO as a tcpsig.Backend; it is a tcpsig.Sealer too.
var Backend interface {
	tcpsig.Backend
	tcpsig.Sealer
} = backend{}

// ErrNoKernel means the running kernel has no TCP-AO. Supported wraps it
// with the remedy.
var ErrNoKernel = errors.New("this kernel has no TCP-AO (CONFIG_TCP_AO, Linux 6.7 or later)")

// ErrNotSealed means a socket's ao_required is off: a peer that matches
// none of its TCP-AO keys would connect unsigned.
var ErrNotSealed = errors.New("the socket is not sealed (TCP-AO ao_required is off), so a peer outside its keys' prefixes would connect unsigned")

const remedy = "TCP-AO needs a kernel with CONFIG_TCP_AO (Linux 6.7+; Ubuntu 24.04's kernels have it, Debian's do not); use a TCP-MD5 entry (key/key_file) instead, or boot such a kernel"

// Supported is nil when the running kernel has TCP-AO, else an error
// wrapping ErrNoKernel that names the remedy: a TCP-MD5 entry instead, or
// a kernel built with CONFIG_TCP_AO (Ubuntu 24.04's has it).
func Supported() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
	if err != nil {
		return fmt.Errorf("probing for TCP-AO: %w", err)
	}
	defer unix.Close(fd)
	// Reading the TCP-AO state of a fresh socket changes nothing: a kernel
	// with TCP-AO says there is none (ENOENT), one without does not know
	// the option (ENOPROTOOPT).
	_, err = readInfo(fd)
	switch {
	case err == nil, errors.Is(err, unix.ENOENT):
		return nil
	case errors.Is(err, unix.ENOPROTOOPT):
		return fmt.Errorf("%w: %s", ErrNoKernel, remedy)
	}
	return fmt.Errorf("probing for TCP-AO: getsockopt TCP_AO_INFO: %w", err)
}

// Current names the key that signs an established connection (an
// accepted or a connected socket): the SendID and RecvID of the key the
// peer's SYN chose, the one whose RecvID its KeyID matched (the kernel's
// rnext key, which only this side moves).
func Current(fd int) (sendID, recvID uint8, err error) {
	b := make([]byte, sizeofGet)
	defer clear(b)
	getReq{nkeys: 1, rnext: true}.encode(b)
	if err := getsockopt(fd, optGetKeys, b, sizeofGet); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return 0, 0, fmt.Errorf("socket %d: the connection is not signed with TCP-AO (%w)", fd, err)
		}
		return 0, 0, fmt.Errorf("socket %d: reading its TCP-AO key: %w", fd, explain(err, nil))
	}
	if nkeysOf(b) == 0 {
		return 0, 0, fmt.Errorf("socket %d: the connection has TCP-AO state but no key signs it (not established?): %w", fd, unix.ENOENT)
	}
	g := decodeGot(b)
	return g.sndID, g.rcvID, nil
}

type backend struct{}

func (backend) Name() string { return "TCP-AO" }

// Set puts k on the socket. A key with k's prefix, interface and IDs that
// is there already (EEXIST) is replaced by a delete and an add: for that
// instant this one peer has no key, and a sealed socket drops its segments
// (they are retransmitted), never lets them in unsigned. Should the add
// fail, the old key is put back.
func (backend) Set(s tcpsig.Socket, k tcpsig.Key) error {
	if err := check(s, k); err != nil {
		return err
	}
	err := add(s, k, false)
	if !errors.Is(err, unix.EEXIST) {
		return wrap("setting", k, err)
	}
	have, kerr := keys(s)
	if kerr != nil {
		return wrap("setting", k, err)
	}
	var old *tcpsig.Key
	for i := range have {
		if have[i].ID() == k.ID() {
			old = &have[i]
		}
	}
	defer func() {
		for _, h := range have {
			clear(h.Secret)
		}
	}()
	if old == nil {
		return fmt.Errorf("setting TCP-AO key %s: %w", k, clash(k, have, err))
	}
	if err := del(s, k); err != nil {
		return wrap("replacing", k, err)
	}
	if err := add(s, k, false); err != nil {
		if rerr := add(s, *old, false); rerr != nil {
			return fmt.Errorf("replacing TCP-AO key %s: %w; putting the old key back also failed: %v", k, explain(err, &k), rerr)
		}
		return fmt.Errorf("replacing TCP-AO key %s: %w (the old key is back)", k, explain(err, &k))
	}
	return nil
}

// Delete removes the key with k's prefix, interface and IDs.
func (backend) Delete(s tcpsig.Socket, k tcpsig.Key) error {
	if k.AO == nil {
		return fmt.Errorf("deleting key %s: not a TCP-AO key", k)
	}
	return wrap("deleting", k, del(s, k))
}

// Keys reads back every TCP-AO key on the socket, secrets included. The
// kernel reports no name, so AO.Name is empty. A cmac(aes128) key whose
// secret is not 16 bytes comes back with the secret it was set with when
// this process set it, else as the 16-byte key the kernel derived from it
// (RFC 5926's KDF), which Reconcile then replaces once (see cmackeys.go).
func (backend) Keys(s tcpsig.Socket) ([]tcpsig.Key, error) { return keys(s) }

// Uncovered is nil when the socket is sealed (ao_required): then no peer
// connects unsigned, whatever keys it carries. Else it is an error wrapping
// ErrNotSealed.
func (backend) Uncovered(s tcpsig.Socket, _ []tcpsig.Key) error {
	o, err := readInfo(s.FD)
	if err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("socket %d: reading TCP-AO ao_required: %w", s.FD, explain(err, nil))
	}
	if err != nil || !o.aoRequired {
		return fmt.Errorf("socket %d: %w", s.FD, ErrNotSealed)
	}
	return nil
}

// Seal makes the socket drop every segment without TCP-AO (ao_required).
// It works on a socket without keys, listening or not yet connected, and
// is meant to come before the keys.
func (backend) Seal(s tcpsig.Socket) error { return seal(s.FD) }

// DialControl signs each connection attempt with k for the exact address
// dialled, as its current and rnext key so that the SYN carries it, and
// seals the socket; an error fails the attempt. k's prefix and interface
// are not used (a client binds to a VRF by other means).
func (backend) DialControl(k tcpsig.Key) func(network, address string, c syscall.RawConn) error {
	return func(network, address string, c syscall.RawConn) error {
		return tcpsig.DialSocket(address, c, func(s tcpsig.Socket, peer netip.Prefix) error {
			d := k
			d.Prefix, d.Ifindex = peer, 0
			if err := check(s, d); err != nil {
				return err
			}
			if err := add(s, d, true); err != nil {
				return wrap("signing the dial with", d, err)
			}
			return seal(s.FD)
		})
	}
}

// check refuses what the kernel would, with the reason.
func check(s tcpsig.Socket, k tcpsig.Key) error {
	if k.AO == nil {
		return fmt.Errorf("setting key %s: not a TCP-AO key", k)
	}
	if err := k.Validate(); err != nil {
		return err
	}
	if !s.Takes(k.Prefix) {
		return fmt.Errorf("TCP-AO key %s does not fit a socket that takes only %s peers", k, s.Families())
	}
	if s.Family == unix.AF_INET6 && k.Prefix.Addr().Is4() && k.Prefix.Bits() == 0 {
		// tcp_ao.c takes an IPv4 key on an AF_INET6 socket only as a
		// v4-mapped address with a prefix of 1 to 32 bits; prefix 0 must
		// be ::, which covers IPv6 peers only.
		return fmt.Errorf("TCP-AO key %s: the kernel cannot put an IPv4 catch-all key on an IPv6 socket that takes IPv4 peers; listen on an IPv4 address (0.0.0.0) for IPv4 peers", k)
	}
	return nil
}

func sin6(s tcpsig.Socket) bool { return s.Family == unix.AF_INET6 }

func add(s tcpsig.Socket, k tcpsig.Key, current bool) error {
	c := addCmd{
		addr:       k.Prefix.Masked().Addr(),
		sin6:       sin6(s),
		prefix:     uint8(k.Prefix.Bits()),
		algName:    k.AO.Algorithm,
		setCurrent: current,
		setRnext:   current,
		sndID:      k.AO.SendID,
		rcvID:      k.AO.RecvID,
		macLen:     uint8(k.AO.MACLen),
		key:        k.Secret,
	}
	if k.Ifindex != 0 {
		c.ifindex, c.keyflags = int32(k.Ifindex), keyfIfindex
	}
	b := c.encode()
	err := setsockopt(s.FD, optAddKey, b)
	clear(b)
	if err == nil {
		noteSet(s.FD, k, true)
	}
	return err
}

func del(s tcpsig.Socket, k tcpsig.Key) error {
	c := delCmd{
		addr:   k.Prefix.Masked().Addr(),
		sin6:   sin6(s),
		prefix: uint8(k.Prefix.Bits()),
		sndID:  k.AO.SendID,
		rcvID:  k.AO.RecvID,
	}
	if k.Ifindex != 0 {
		c.ifindex, c.keyflags = int32(k.Ifindex), keyfIfindex
	}
	// A listener's delete need not wait for an RCU grace period per key
	// (synchronize_rcu) and the kernel allows the asynchronous one only
	// there; a listener has no current or rnext key to protect.
	if l, err := unix.GetsockoptInt(s.FD, unix.SOL_SOCKET, unix.SO_ACCEPTCONN); err == nil && l == 1 {
		c.delAsync = true
	}
	err := setsockopt(s.FD, optDelKey, c.encode())
	if err == nil {
		noteSet(s.FD, k, false)
	}
	return err
}

// maxKeys bounds the read-back buffer: the kernel allows at most 256 keys
// per range of overlapping prefixes, and optmem_max bounds them all.
const maxKeys = 1 << 16

func keys(s tcpsig.Socket) ([]tcpsig.Key, error) {
	n := 16
	for {
		b := make([]byte, n*sizeofGet)
		getReq{nkeys: uint32(n), getAll: true}.encode(b)
		err := getsockopt(s.FD, optGetKeys, b, sizeofGet)
		if errors.Is(err, unix.ENOENT) {
			return nil, nil // no TCP-AO state: no keys
		}
		if err != nil {
			return nil, fmt.Errorf("socket %d: reading its TCP-AO keys: %w", s.FD, explain(err, nil))
		}
		got := int(nkeysOf(b))
		if got > n {
			clear(b)
			if got > maxKeys {
				return nil, fmt.Errorf("socket %d: %w (%d TCP-AO keys)", s.FD, tcpsig.ErrTooManyToRead, got)
			}
			n = got + 16 // keys may be added meanwhile
			continue
		}
		out := make([]tcpsig.Key, 0, got)
		for i := range got {
			k, err := toKey(decodeGot(b[i*sizeofGet : (i+1)*sizeofGet]))
			if err != nil {
				clear(b)
				return nil, fmt.Errorf("socket %d: %w", s.FD, err)
			}
			out = append(out, k)
		}
		clear(b)
		underive(s.FD, out)
		return out, nil
	}
}

func toKey(g gotKey) (tcpsig.Key, error) {
	if !g.addrOK {
		return tcpsig.Key{}, errors.New("the kernel reported a TCP-AO key of an unknown address family")
	}
	p, err := g.addr.Prefix(int(g.prefix))
	if err != nil {
		return tcpsig.Key{}, fmt.Errorf("the kernel reported a TCP-AO key for %s/%d: %w", g.addr, g.prefix, err)
	}
	alg := g.algName
	if alg == "cmac(aes)" {
		alg = tcpsig.AOCMACAES128 // the kernel's name for the AES-128 CMAC it was given
	}
	k := tcpsig.Key{
		Prefix: p,
		Secret: append(tcpsig.Secret(nil), g.key...),
		AO:     &tcpsig.AO{SendID: g.sndID, RecvID: g.rcvID, Algorithm: alg, MACLen: int(g.macLen)},
	}
	if g.keyflags&keyfIfindex != 0 {
		k.Ifindex = int(g.ifindex)
	}
	return k, nil
}

func readInfo(fd int) (infoOpt, error) {
	b := make([]byte, sizeofInfo)
	if err := getsockopt(fd, optInfo, b, sizeofInfo); err != nil {
		return infoOpt{}, err
	}
	return decodeInfo(b), nil
}

func seal(fd int) error {
	o, err := readInfo(fd)
	switch {
	case err == nil && o.aoRequired:
		return nil
	case err != nil && !errors.Is(err, unix.ENOENT):
		return fmt.Errorf("sealing socket %d (TCP-AO ao_required): reading its TCP-AO state: %w", fd, explain(err, nil))
	}
	// Only ao_required changes: accept_icmps is written back as it was
	// (off on a new socket), the counters and the current and rnext keys
	// are left (no set_* bit).
	w := infoOpt{aoRequired: true, acceptICMPs: o.acceptICMPs}
	if err := setsockopt(fd, optInfo, w.encode()); err != nil {
		if errors.Is(err, unix.EKEYREJECTED) {
			return fmt.Errorf("sealing socket %d (TCP-AO ao_required): %w: the socket carries TCP-MD5 keys, and the kernel does not let a socket require TCP-AO then; a listener takes either TCP-MD5 or TCP-AO keys", fd, err)
		}
		return fmt.Errorf("sealing socket %d (TCP-AO ao_required): %w", fd, explain(err, nil))
	}
	return nil
}

func wrap(op string, k tcpsig.Key, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s TCP-AO key %s: %w", op, k, explain(err, &k))
}

// clash explains an EEXIST for a key whose exact ID is not on the socket:
// another key for an overlapping prefix uses its SendID or RecvID.
func clash(k tcpsig.Key, have []tcpsig.Key, err error) error {
	for _, h := range have {
		if h.Ifindex != k.Ifindex || !h.Prefix.Overlaps(k.Prefix) {
			continue
		}
		switch {
		case h.AO.SendID == k.AO.SendID:
			return fmt.Errorf("%w: send_id %d is taken by the key for %s (send_id %d, recv_id %d); the IDs must be unique among keys for overlapping prefixes", err, k.AO.SendID, h.Prefix, h.AO.SendID, h.AO.RecvID)
		case h.AO.RecvID == k.AO.RecvID:
			return fmt.Errorf("%w: recv_id %d is taken by the key for %s (send_id %d, recv_id %d); the IDs must be unique among keys for overlapping prefixes", err, k.AO.RecvID, h.Prefix, h.AO.SendID, h.AO.RecvID)
		}
	}
	return explain(err, &k)
}

// explain turns the kernel's terse errno into the likely cause and the
// fix. k is nil for errors not about one key.
func explain(err error, k *tcpsig.Key) error {
	switch {
	case errors.Is(err, unix.ENOPROTOOPT):
		return fmt.Errorf("%w: %w: %s", err, ErrNoKernel, remedy)
	case k == nil:
		return err
	case errors.Is(err, unix.EEXIST):
		return fmt.Errorf("%w: its send_id or recv_id is used by another key for an overlapping prefix; the IDs must be unique among keys for overlapping prefixes", err)
	case errors.Is(err, unix.EKEYREJECTED):
		return fmt.Errorf("%w: the socket has a TCP-MD5 key for the same peers; a peer gets either a TCP-MD5 or a TCP-AO key", err)
	case errors.Is(err, unix.ENOMEM), errors.Is(err, unix.ENOBUFS):
		return tcpsig.ExplainOptmem(err)
	case errors.Is(err, unix.EINVAL) && k.Ifindex != 0:
		return tcpsig.ExplainNotVRF(err, k.Ifindex)
	case errors.Is(err, unix.EINVAL):
		return fmt.Errorf("%w: the kernel rejected the key: prefix length %d for the socket's family, or MAC length %d longer than %s gives", err, k.Prefix.Bits(), k.AO.MACLen, k.AO.Algorithm)
	case errors.Is(err, unix.EMSGSIZE):
		return fmt.Errorf("%w: a %d-byte MAC does not fit the SYN's option space; use a shorter mac_length (12 is the usual)", err, k.AO.MACLen)
	case errors.Is(err, unix.ENOENT):
		return fmt.Errorf("%w: the socket has no such key, or the kernel has no %s", err, k.AO.Algorithm)
	case errors.Is(err, unix.EBUSY):
		return fmt.Errorf("%w: the key signs the connection (its current or rnext key)", err)
	}
	return err
}

// setsockopt and getsockopt pass the buffer itself: unix.SetsockoptString
// would copy the secret into a string that cannot be cleared, and
// TCP_AO_GET_KEYS takes an array whose length is not optlen.
func setsockopt(fd, opt int, b []byte) error {
	_, _, e := unix.Syscall6(unix.SYS_SETSOCKOPT, uintptr(fd), unix.IPPROTO_TCP, uintptr(opt),
		uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), 0)
	if e != 0 {
		return e
	}
	return nil
}

// getsockopt reads into b with optlen size: one struct, the kernel's
// stride for an array.
func getsockopt(fd, opt int, b []byte, size int) error {
	l := uint32(size)
	_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.IPPROTO_TCP, uintptr(opt),
		uintptr(unsafe.Pointer(&b[0])), uintptr(unsafe.Pointer(&l)), 0)
	if e != 0 {
		return e
	}
	return nil
}
