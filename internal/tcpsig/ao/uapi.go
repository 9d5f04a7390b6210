package ao

import (
	"encoding/binary"
	"net/netip"
)

// The TCP-AO socket API of include/uapi/linux/tcp.h (Linux 6.7+), which
// x/sys/unix v0.49 does not have beyond TCP_AO_MAXKEYLEN and the
// TCP_AO_KEYF_* flags. The structs are written as byte encoders rather
// than Go structs because they hold C bitfields; the offsets below are
// pinned by uapi_test.go against what gcc gives for the kernel header.
const (
	optAddKey  = 38 // TCP_AO_ADD_KEY
	optDelKey  = 39 // TCP_AO_DEL_KEY
	optInfo    = 40 // TCP_AO_INFO
	optGetKeys = 41 // TCP_AO_GET_KEYS

	keyfIfindex = 1 << 0 // TCP_AO_KEYF_IFINDEX

	sizeofAdd  = 288 // struct tcp_ao_add
	sizeofDel  = 144 // struct tcp_ao_del
	sizeofInfo = 48  // struct tcp_ao_info_opt
	sizeofGet  = 304 // struct tcp_ao_getsockopt

	sizeofSockaddrStorage = 128
	algNameLen            = 64
	maxKeyLen             = 80 // TCP_AO_MAXKEYLEN

	afInet  = 2  // AF_INET on every Linux architecture
	afInet6 = 10 // AF_INET6 on every Linux architecture
)

// Field offsets. Each struct starts with a struct __kernel_sockaddr_storage
// (128 bytes) except tcp_ao_info_opt; all are aligned(8).
const (
	addAlgName  = 128
	addIfindex  = 192
	addFlags    = 196 // __u32 set_current:1, set_rnext:1, reserved:30
	addReserved = 200
	addPrefix   = 202
	addSndID    = 203
	addRcvID    = 204
	addMACLen   = 205
	addKeyflags = 206
	addKeylen   = 207
	addKey      = 208

	delIfindex  = 128
	delFlags    = 132 // __u32 set_current:1, set_rnext:1, del_async:1, reserved:29
	delReserved = 136
	delPrefix   = 138
	delSndID    = 139
	delRcvID    = 140
	delCurrent  = 141
	delRnext    = 142
	delKeyflags = 143

	infoFlags          = 0 // __u32 set_current:1, set_rnext:1, ao_required:1, set_counters:1, accept_icmps:1, reserved:27
	infoReserved       = 4
	infoCurrent        = 6
	infoRnext          = 7
	infoPktGood        = 8
	infoPktBad         = 16
	infoPktKeyNotFound = 24
	infoPktAORequired  = 32
	infoPktDroppedICMP = 40

	getAlgName  = 128
	getKey      = 192
	getNKeys    = 272
	getFlags    = 276 // __u16 is_current:1, is_rnext:1, get_all:1, reserved:13
	getSndID    = 278
	getRcvID    = 279
	getPrefix   = 280
	getMACLen   = 281
	getKeyflags = 282
	getKeylen   = 283
	getIfindex  = 284
	getPktGood  = 288
	getPktBad   = 296
)

// Bit numbers within the bitfield words, in declaration order.
const (
	addSetCurrent = 0
	addSetRnext   = 1

	delSetCurrent = 0
	delSetRnext   = 1
	delAsync      = 2

	infoSetCurrent  = 0
	infoSetRnext    = 1
	infoAORequired  = 2
	infoSetCounters = 3
	infoAcceptICMPs = 4

	getIsCurrent = 0
	getIsRnext   = 1
	getAll       = 2
)

var ne = binary.NativeEndian

// bigEndian: GCC allocates bitfields from the least significant bit of
// their unit on little-endian ABIs and from the most significant one on
// big-endian ABIs (s390x, ppc64).
var bigEndian = ne.Uint16([]byte{0, 1}) == 1

// bit is the mask of bitfield n (counted in declaration order) in a unit
// of width bits.
func bit(n, width uint) uint32 {
	if bigEndian {
		return 1 << (width - 1 - n)
	}
	return 1 << n
}

func setBit32(b []byte, off int, n uint, on bool) {
	if on {
		ne.PutUint32(b[off:], ne.Uint32(b[off:])|bit(n, 32))
	}
}

func getBit32(b []byte, off int, n uint) bool { return ne.Uint32(b[off:])&bit(n, 32) != 0 }

func setBit16(b []byte, off int, n uint, on bool) {
	if on {
		ne.PutUint16(b[off:], ne.Uint16(b[off:])|uint16(bit(n, 16)))
	}
}

func getBit16(b []byte, off int, n uint) bool { return uint32(ne.Uint16(b[off:]))&bit(n, 16) != 0 }

// putAddr writes a peer address into a struct __kernel_sockaddr_storage
// at b[0:128] as a sockaddr_in (family AF_INET) or a sockaddr_in6, port 0.
// sin6: the socket is AF_INET6, which takes IPv4 peers as v4-mapped
// addresses.
func putAddr(b []byte, a netip.Addr, sin6 bool) {
	if !a.IsValid() {
		a = netip.IPv4Unspecified()
	}
	if sin6 {
		ne.PutUint16(b[0:], afInet6)
		x := netip.AddrFrom16(a.As16()).As16() // v4-mapped for an IPv4 a
		copy(b[8:24], x[:])                    // sockaddr_in6: family, port, flowinfo, addr
		return
	}
	ne.PutUint16(b[0:], afInet)
	x := a.As4()
	copy(b[4:8], x[:]) // sockaddr_in: family, port, addr
}

// getAddr reads the address of a struct __kernel_sockaddr_storage; ok is
// false for a family other than AF_INET and AF_INET6. A v4-mapped address
// comes back as IPv4.
func getAddr(b []byte) (a netip.Addr, ok bool) {
	switch ne.Uint16(b[0:]) {
	case afInet:
		return netip.AddrFrom4([4]byte(b[4:8])), true
	case afInet6:
		return netip.AddrFrom16([16]byte(b[8:24])).Unmap(), true
	}
	return netip.Addr{}, false
}

// addCmd is struct tcp_ao_add.
type addCmd struct {
	addr                 netip.Addr
	sin6                 bool
	prefix               uint8
	algName              string
	ifindex              int32
	setCurrent, setRnext bool
	sndID, rcvID, macLen uint8
	keyflags             uint8
	key                  []byte
}

// encode returns the struct's bytes; the caller clears them after the
// setsockopt, since they hold the secret.
func (c addCmd) encode() []byte {
	b := make([]byte, sizeofAdd)
	putAddr(b, c.addr, c.sin6)
	copy(b[addAlgName:addAlgName+algNameLen-1], c.algName) // NUL-terminated
	ne.PutUint32(b[addIfindex:], uint32(c.ifindex))
	setBit32(b, addFlags, addSetCurrent, c.setCurrent)
	setBit32(b, addFlags, addSetRnext, c.setRnext)
	b[addPrefix] = c.prefix
	b[addSndID] = c.sndID
	b[addRcvID] = c.rcvID
	b[addMACLen] = c.macLen
	b[addKeyflags] = c.keyflags
	b[addKeylen] = uint8(copy(b[addKey:addKey+maxKeyLen], c.key))
	return b
}

// delCmd is struct tcp_ao_del.
type delCmd struct {
	addr         netip.Addr
	sin6         bool
	prefix       uint8
	ifindex      int32
	delAsync     bool
	sndID, rcvID uint8
	keyflags     uint8
}

func (c delCmd) encode() []byte {
	b := make([]byte, sizeofDel)
	putAddr(b, c.addr, c.sin6)
	ne.PutUint32(b[delIfindex:], uint32(c.ifindex))
	setBit32(b, delFlags, delAsync, c.delAsync)
	b[delPrefix] = c.prefix
	b[delSndID] = c.sndID
	b[delRcvID] = c.rcvID
	b[delKeyflags] = c.keyflags
	return b
}

// infoOpt is struct tcp_ao_info_opt. For setsockopt, ao_required and
// accept_icmps are always written (the kernel has no flag to leave them
// as they are); set_current, set_rnext and set_counters say whether the
// fields they name are.
type infoOpt struct {
	setCurrent, setRnext, aoRequired, setCounters, acceptICMPs bool

	current, rnext                                                 uint8 // current_key: its SendID; rnext: its RecvID
	pktGood, pktBad, pktKeyNotFound, pktAORequired, pktDroppedICMP uint64
}

func (o infoOpt) encode() []byte {
	b := make([]byte, sizeofInfo)
	setBit32(b, infoFlags, infoSetCurrent, o.setCurrent)
	setBit32(b, infoFlags, infoSetRnext, o.setRnext)
	setBit32(b, infoFlags, infoAORequired, o.aoRequired)
	setBit32(b, infoFlags, infoSetCounters, o.setCounters)
	setBit32(b, infoFlags, infoAcceptICMPs, o.acceptICMPs)
	b[infoCurrent] = o.current
	b[infoRnext] = o.rnext
	ne.PutUint64(b[infoPktGood:], o.pktGood)
	ne.PutUint64(b[infoPktBad:], o.pktBad)
	ne.PutUint64(b[infoPktKeyNotFound:], o.pktKeyNotFound)
	ne.PutUint64(b[infoPktAORequired:], o.pktAORequired)
	ne.PutUint64(b[infoPktDroppedICMP:], o.pktDroppedICMP)
	return b
}

func decodeInfo(b []byte) infoOpt {
	return infoOpt{
		setCurrent:     getBit32(b, infoFlags, infoSetCurrent),
		setRnext:       getBit32(b, infoFlags, infoSetRnext),
		aoRequired:     getBit32(b, infoFlags, infoAORequired),
		setCounters:    getBit32(b, infoFlags, infoSetCounters),
		acceptICMPs:    getBit32(b, infoFlags, infoAcceptICMPs),
		current:        b[infoCurrent],
		rnext:          b[infoRnext],
		pktGood:        ne.Uint64(b[infoPktGood:]),
		pktBad:         ne.Uint64(b[infoPktBad:]),
		pktKeyNotFound: ne.Uint64(b[infoPktKeyNotFound:]),
		pktAORequired:  ne.Uint64(b[infoPktAORequired:]),
		pktDroppedICMP: ne.Uint64(b[infoPktDroppedICMP:]),
	}
}

// getReq is the input of getsockopt(TCP_AO_GET_KEYS): the first struct
// tcp_ao_getsockopt of the buffer, selecting every key (getAll), the
// current one or the rnext one; nkeys is how many structs the buffer
// holds. Selecting by address and IDs is not used here.
type getReq struct {
	nkeys                  uint32
	getAll, current, rnext bool
}

func (r getReq) encode(b []byte) {
	clear(b[:sizeofGet])
	ne.PutUint32(b[getNKeys:], r.nkeys)
	setBit16(b, getFlags, getAll, r.getAll)
	setBit16(b, getFlags, getIsCurrent, r.current)
	setBit16(b, getFlags, getIsRnext, r.rnext)
}

// gotKey is one struct tcp_ao_getsockopt as the kernel fills it.
type gotKey struct {
	addr                 netip.Addr
	addrOK               bool
	prefix               uint8
	algName              string
	key                  []byte // aliases the buffer
	isCurrent, isRnext   bool
	sndID, rcvID, macLen uint8
	keyflags             uint8
	ifindex              int32
	pktGood, pktBad      uint64
}

func decodeGot(b []byte) gotKey {
	g := gotKey{
		prefix:    b[getPrefix],
		isCurrent: getBit16(b, getFlags, getIsCurrent),
		isRnext:   getBit16(b, getFlags, getIsRnext),
		sndID:     b[getSndID],
		rcvID:     b[getRcvID],
		macLen:    b[getMACLen],
		keyflags:  b[getKeyflags],
		ifindex:   int32(ne.Uint32(b[getIfindex:])),
		pktGood:   ne.Uint64(b[getPktGood:]),
		pktBad:    ne.Uint64(b[getPktBad:]),
	}
	g.addr, g.addrOK = getAddr(b)
	name := b[getAlgName : getAlgName+algNameLen]
	for i, c := range name {
		if c == 0 {
			name = name[:i]
			break
		}
	}
	g.algName = string(name)
	n := min(int(b[getKeylen]), maxKeyLen)
	g.key = b[getKey : getKey+n]
	return g
}

// nkeysOf reads how many keys matched, which the kernel writes into the
// first struct of the buffer.
func nkeysOf(b []byte) uint32 { return ne.Uint32(b[getNKeys:]) }
