//go:build linux

package md5

import (
	"errors"
	"fmt"
	"net/netip"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/sshmd5/sshmd5/internal/tcpsig"
)

// Socket is a TCP socket as TCP-MD5 keys it: the neutral socket and its
// families (Family is unix.AF_INET or unix.AF_INET6), with the kernel
// calls that set, delete and read back its keys.
type Socket struct{ tcpsig.Socket }

// UncoveredError reports peer families a socket takes that no key covers.
type UncoveredError = tcpsig.UncoveredError

// Set installs k on the socket, replacing a key for the same prefix and
// interface.
func (s Socket) Set(k Key) error {
	if err := k.Validate(); err != nil {
		return err
	}
	return s.setsockopt(k, k.Secret)
}

// Delete removes the key for prefix p and interface ifindex.
func (s Socket) Delete(p netip.Prefix, ifindex int) error {
	return s.setsockopt(Key{Prefix: p, Ifindex: ifindex}, nil)
}

func (s Socket) setsockopt(k Key, secret Secret) error {
	sig, opt, err := s.encode(k)
	if err != nil {
		return err
	}
	sig.Keylen = uint16(copy(sig.Key[:], secret))
	err = unix.SetsockoptTCPMD5Sig(s.FD, unix.IPPROTO_TCP, opt, sig)
	clear(sig.Key[:])
	if err != nil {
		op := "setting"
		if secret == nil {
			op = "deleting"
		}
		return fmt.Errorf("%s TCP-MD5 key for %s: %w", op, k, explain(err, k))
	}
	s.noteInterfaceKey(k, secret)
	return nil
}

// encode builds the kernel's struct tcp_md5sig for k in the form the
// socket's family needs, and picks the option: plain TCP_MD5SIG ignores
// the prefix length, so anything but a single host without an interface
// goes through TCP_MD5SIG_EXT.
func (s Socket) encode(k Key) (*unix.TCPMD5Sig, int, error) {
	p := k.Prefix
	if !p.IsValid() {
		return nil, 0, errors.New("invalid peer prefix")
	}
	if !s.Takes(p) {
		return nil, 0, fmt.Errorf("key for %s does not fit a socket that takes only %s peers", k, s.Families())
	}
	sig := new(unix.TCPMD5Sig)
	switch {
	case s.Family == unix.AF_INET:
		sig.Addr.Family = unix.AF_INET
		a := p.Addr().As4()
		copy(sig.Addr.Data[2:6], a[:]) // sockaddr_in: port, then address
	case p.Addr().Is4():
		// Dual-stack AF_INET6: an IPv4 peer arrives as ::ffff:a.b.c.d and
		// its prefix is counted in IPv4 bits (/96+n gives EINVAL).
		sig.Addr.Family = unix.AF_INET6
		a := netip.AddrFrom16(p.Addr().As16()).As16()
		copy(sig.Addr.Data[6:22], a[:]) // sockaddr_in6: port, flowinfo, address
	default:
		sig.Addr.Family = unix.AF_INET6
		a := p.Addr().As16()
		copy(sig.Addr.Data[6:22], a[:])
	}
	sig.Prefixlen = uint8(p.Bits())
	opt := unix.TCP_MD5SIG
	if p.Bits() != p.Addr().BitLen() || k.Ifindex != 0 {
		opt = unix.TCP_MD5SIG_EXT
		sig.Flags = unix.TCP_MD5SIG_FLAG_PREFIX
		if k.Ifindex != 0 {
			sig.Flags |= unix.TCP_MD5SIG_FLAG_IFINDEX
			sig.Ifindex = int32(k.Ifindex)
		}
	}
	return sig, opt, nil
}

// explain turns the kernel's terse errno into the likely cause and the fix.
func explain(err error, k Key) error {
	switch {
	case errors.Is(err, unix.ENOPROTOOPT):
		return fmt.Errorf("%w: this kernel has no TCP-MD5 (CONFIG_TCP_MD5SIG), or the socket is MPTCP", err)
	case errors.Is(err, unix.ENOMEM):
		return tcpsig.ExplainOptmem(err)
	case errors.Is(err, unix.EINVAL) && k.Ifindex != 0:
		return tcpsig.ExplainNotVRF(err, k.Ifindex)
	case errors.Is(err, unix.EINVAL):
		return fmt.Errorf("%w: the kernel rejected prefix length %d or the address family", err, k.Prefix.Bits())
	case errors.Is(err, unix.ENOENT):
		return fmt.Errorf("%w: the socket has no such key", err)
	}
	return err
}

// DialControl returns a net.Dialer Control function that signs each
// connection attempt with secret, keyed to the exact address being dialled,
// before connect. An error aborts that attempt rather than let it go out
// unsigned.
func DialControl(secret Secret) func(network, address string, c syscall.RawConn) error {
	return func(network, address string, c syscall.RawConn) error {
		return tcpsig.DialSocket(address, c, func(s tcpsig.Socket, peer netip.Prefix) error {
			return Socket{s}.Set(Key{Prefix: peer, Secret: secret})
		})
	}
}

// ListenControl is tcpsig.ListenControl with TCP-MD5 keys.
func ListenControl(keys []Key) func(network, address string, c syscall.RawConn) error {
	return tcpsig.ListenControl(Backend, keys)
}

// Layout of struct tcp_md5sig, pinned by a test against the kernel ABI.
const sizeofTCPMD5Sig = int(unsafe.Sizeof(unix.TCPMD5Sig{}))

// ErrNotVRF means a key was to be bound to an interface that is not a VRF.
var ErrNotVRF = errors.New("is not an L3 master device (VRF), the only kind a TCP-MD5 key can be bound to")

// CheckBindable tells whether the kernel lets a key be bound to interface
// ifindex. Only an L3 master device (a VRF) qualifies, and the kernel says
// so only when a key is set, so this sets a throwaway key (no secret of
// anyone's) on a throwaway socket: the same verdict the listener would
// get, before any listener is touched.
func CheckBindable(ifindex int) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
	if err != nil {
		return nil // the real install reports what is wrong
	}
	defer unix.Close(fd)
	s := Socket{tcpsig.Socket{FD: fd, Family: unix.AF_INET, Takes4: true}}
	k := Key{Prefix: netip.MustParsePrefix("192.0.2.0/24"), Ifindex: ifindex, Secret: Secret("probe")}
	sig, opt, err := s.encode(k)
	if err != nil {
		return nil
	}
	sig.Keylen = uint16(copy(sig.Key[:], k.Secret))
	if err := unix.SetsockoptTCPMD5Sig(fd, unix.IPPROTO_TCP, opt, sig); errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("%s %w", tcpsig.IfaceName(ifindex), ErrNotVRF)
	}
	return nil
}

// Install puts every applicable key on a socket that has none yet, after
// checking that every peer family the socket takes is covered.
func (s Socket) Install(keys []Key) error { return tcpsig.Install(Backend, s.Socket, keys) }
