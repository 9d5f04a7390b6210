//go:build linux

package md5

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"

	"golang.org/x/sys/unix"

	"github.com/sshmd5/sshmd5/internal/tcpsig"
)

// The kernel has no getsockopt for TCP-MD5 keys; sock_diag reports them as
// the INET_DIAG_MD5SIG attribute, and only to CAP_NET_ADMIN. x/sys/unix
// has none of these structs, so their layout is written out here.
const (
	inetDiagMD5Sig       = 18  // INET_DIAG_MD5SIG
	inetDiagInfo         = 2   // INET_DIAG_INFO
	sizeofInetDiagReqV2  = 56  // struct inet_diag_req_v2
	sizeofInetDiagMsg    = 72  // struct inet_diag_msg
	sizeofTCPDiagMD5Sig  = 100 // struct tcp_diag_md5sig
	tcpListen            = 10  // TCP_LISTEN
	allStates            = 0xfff
	inetDiagNoCookie     = ^uint32(0)
	nlmsgAlignTo         = 4
	sizeofNlMsghdr       = unix.SizeofNlMsghdr
	inetDiagReqIDOffset  = 8
	inetDiagMsgIDOffset  = 4
	inetDiagMsgInodeOffs = 68
)

// ErrNotPermitted means the kernel would not show keys: reading them needs
// CAP_NET_ADMIN.
var ErrNotPermitted = errors.New("reading TCP-MD5 keys needs CAP_NET_ADMIN (run as root)")

// MaxReadableKeys is how many keys sock_diag can report for one socket: they
// travel in one netlink attribute whose length is 16 bits.
const MaxReadableKeys = (1<<16 - 1 - unix.SizeofRtAttr) / sizeofTCPDiagMD5Sig

// ErrTooManyToRead means the socket carries more than MaxReadableKeys keys,
// so the kernel's report is cut short and cannot be trusted.
var ErrTooManyToRead = fmt.Errorf("%w: more TCP-MD5 keys than sock_diag can report (%d)", tcpsig.ErrTooManyToRead, MaxReadableKeys)

// Keys reads back the keys the socket carries. IPv4 keys on a dual-stack
// socket come back as IPv4 prefixes, as they were given to Set. The kernel
// does not report a key's interface, so Ifindex is always 0.
//
// Without CAP_NET_ADMIN the kernel silently omits keys; Keys then returns
// ErrNotPermitted rather than an empty list that would read as "no keys".
func (s Socket) Keys() ([]Key, error) {
	if !netAdmin() {
		return nil, ErrNotPermitted
	}
	var st unix.Stat_t
	if err := unix.Fstat(s.FD, &st); err != nil {
		return nil, fmt.Errorf("socket %d: %w", s.FD, err)
	}
	req := make([]byte, sizeofInetDiagReqV2)
	req[0] = byte(s.Family)
	req[1] = unix.IPPROTO_TCP
	req[2] = 1 << (inetDiagInfo - 1) // the kernel adds the aux (MD5) attributes only with INFO
	// An exact lookup gets a reply sized for the socket; a dump packs
	// replies into ~32 KiB buffers and leaves out a socket whose keys do
	// not fit (about 300). A listener is found by its local address alone.
	binary.LittleEndian.PutUint32(req[4:], allStates)
	id := req[inetDiagReqIDOffset:]
	local, err := unix.Getsockname(s.FD)
	if err != nil {
		return nil, fmt.Errorf("socket %d: %w", s.FD, err)
	}
	// struct inet_diag_sockid: sport, dport, src[16], dst[16], if, cookie[2]
	putSockaddr(id[0:2], id[4:20], local)
	if peer, err := unix.Getpeername(s.FD); err == nil {
		putSockaddr(id[2:4], id[20:36], peer)
	}
	// idiag_if: the kernel's exact lookup matches a socket bound to a
	// device only when asked for that device. That covers a listener
	// bound with SO_BINDTODEVICE (systemd's BindToDevice=), the
	// connections it accepts, and every connection with an IPv6
	// link-local peer, which the kernel binds to the interface the SYN
	// came in on. With 0, those are never found.
	binary.LittleEndian.PutUint32(id[36:], uint32(boundIfindex(s.FD)))
	binary.LittleEndian.PutUint32(id[40:], inetDiagNoCookie)
	binary.LittleEndian.PutUint32(id[44:], inetDiagNoCookie)
	msgs, err := diagQuery(req, unix.NLM_F_REQUEST)
	if err != nil || !hasInode(msgs, st.Ino) {
		// SO_REUSEPORT groups and odd bindings: fall back to a dump.
		binary.LittleEndian.PutUint32(req[4:], 1<<tcpListen)
		clear(id)
		msgs, err = diagQuery(req, unix.NLM_F_REQUEST|unix.NLM_F_DUMP)
	}
	if err != nil {
		return nil, fmt.Errorf("socket %d: sock_diag: %w", s.FD, err)
	}
	for _, m := range msgs {
		if len(m) < sizeofInetDiagMsg || uint64(binary.LittleEndian.Uint32(m[inetDiagMsgInodeOffs:])) != st.Ino {
			continue
		}
		return parseMD5Attr(m[sizeofInetDiagMsg:])
	}
	return nil, fmt.Errorf("socket %d: sock_diag does not list it (not a TCP socket in this network namespace?)", s.FD)
}

// boundIfindex is the interface a socket is bound to, 0 for none.
func boundIfindex(fd int) int {
	if ifx, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_BINDTOIFINDEX); err == nil {
		return ifx
	}
	// Kernels before 5.0 cannot report it; a link-local peer's scope
	// id names the same interface.
	if sa, err := unix.Getpeername(fd); err == nil {
		if a, ok := sa.(*unix.SockaddrInet6); ok {
			return int(a.ZoneId)
		}
	}
	return 0
}

func hasInode(msgs [][]byte, ino uint64) bool {
	for _, m := range msgs {
		if len(m) >= sizeofInetDiagMsg && uint64(binary.LittleEndian.Uint32(m[inetDiagMsgInodeOffs:])) == ino {
			return true
		}
	}
	return false
}

func putSockaddr(port, addr []byte, sa unix.Sockaddr) {
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		binary.BigEndian.PutUint16(port, uint16(a.Port))
		copy(addr, a.Addr[:])
	case *unix.SockaddrInet6:
		binary.BigEndian.PutUint16(port, uint16(a.Port))
		copy(addr, a.Addr[:])
	}
}

func parseMD5Attr(b []byte) ([]Key, error) {
	keys := []Key{}
	for len(b) >= unix.SizeofRtAttr {
		l := int(binary.LittleEndian.Uint16(b[0:]))
		typ := binary.LittleEndian.Uint16(b[2:])
		// Past MaxReadableKeys the kernel still writes every key, but the
		// 16-bit length wraps. The MD5 attribute comes last here (no ULP on
		// these sockets), so the bytes left give the true length.
		if typ == inetDiagMD5Sig && len(b) > l && len(b)%(1<<16) == l {
			return nil, ErrTooManyToRead
		}
		if l < unix.SizeofRtAttr || l > len(b) {
			return nil, errors.New("sock_diag: malformed attribute")
		}
		if typ == inetDiagMD5Sig {
			for v := b[unix.SizeofRtAttr:l]; len(v) >= sizeofTCPDiagMD5Sig; v = v[sizeofTCPDiagMD5Sig:] {
				k, err := parseDiagKey(v[:sizeofTCPDiagMD5Sig])
				if err != nil {
					return nil, err
				}
				keys = append(keys, k)
			}
		}
		b = b[min(align(l), len(b)):]
	}
	return keys, nil
}

// parseDiagKey decodes struct tcp_diag_md5sig.
func parseDiagKey(v []byte) (Key, error) {
	fam, bits, n := v[0], int(v[1]), int(binary.LittleEndian.Uint16(v[2:]))
	var addr netip.Addr
	switch fam {
	case unix.AF_INET:
		addr = netip.AddrFrom4([4]byte(v[4:8]))
	case unix.AF_INET6:
		addr = netip.AddrFrom16([16]byte(v[4:20]))
	default:
		return Key{}, fmt.Errorf("sock_diag: key with address family %d", fam)
	}
	if n > MaxKeyLen || bits > addr.BitLen() {
		return Key{}, errors.New("sock_diag: malformed key")
	}
	return Key{
		Prefix: netip.PrefixFrom(addr, bits),
		Secret: Secret(append([]byte(nil), v[20:20+n]...)),
	}, nil
}

func align(n int) int { return (n + nlmsgAlignTo - 1) &^ (nlmsgAlignTo - 1) }

// diagQuery sends one sock_diag request and collects the payloads of the
// replies until the kernel says it is done.
func diagQuery(req []byte, flags uint16) ([][]byte, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, err
	}
	msg := make([]byte, sizeofNlMsghdr+len(req))
	binary.LittleEndian.PutUint32(msg[0:], uint32(len(msg)))
	binary.LittleEndian.PutUint16(msg[4:], unix.SOCK_DIAG_BY_FAMILY)
	binary.LittleEndian.PutUint16(msg[6:], flags)
	binary.LittleEndian.PutUint32(msg[8:], 1)
	copy(msg[sizeofNlMsghdr:], req)
	if err := unix.Sendto(fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, err
	}
	var out [][]byte
	buf := make([]byte, 1<<20) // one socket's keys can fill ~64 KiB
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			return nil, err
		}
		msgs, err := syscallParseNetlink(buf[:n])
		if err != nil {
			return nil, err
		}
		for _, m := range msgs {
			switch m.typ {
			case unix.NLMSG_DONE:
				return out, nil
			case unix.NLMSG_ERROR:
				if len(m.data) >= 4 {
					if e := int32(binary.LittleEndian.Uint32(m.data)); e != 0 {
						return nil, unix.Errno(-e)
					}
				}
				return out, nil
			default:
				out = append(out, append([]byte(nil), m.data...))
			}
		}
		if flags&unix.NLM_F_DUMP == 0 && len(out) > 0 {
			return out, nil
		}
	}
}

type nlmsg struct {
	typ  uint16
	data []byte
}

func syscallParseNetlink(b []byte) ([]nlmsg, error) {
	var out []nlmsg
	for len(b) >= sizeofNlMsghdr {
		l := int(binary.LittleEndian.Uint32(b[0:]))
		if l < sizeofNlMsghdr || l > len(b) {
			return nil, errors.New("netlink: truncated message")
		}
		out = append(out, nlmsg{typ: binary.LittleEndian.Uint16(b[4:]), data: b[sizeofNlMsghdr:l]})
		b = b[min(align(l), len(b)):]
	}
	return out, nil
}

// netAdmin reports whether this process has CAP_NET_ADMIN in effect.
func netAdmin() bool {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3, Pid: int32(os.Getpid())}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return false
	}
	return data[unix.CAP_NET_ADMIN/32].Effective&(1<<(unix.CAP_NET_ADMIN%32)) != 0
}
