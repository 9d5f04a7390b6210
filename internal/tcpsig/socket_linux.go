//go:build linux

package tcpsig

import (
	"fmt"
	"net/netip"
	"syscall"

	"golang.org/x/sys/unix"
)

// Inspect reads the family, protocol and binding of a socket. It refuses
// sockets the kernel cannot sign: non-TCP ones and MPTCP, which Go uses by
// default for listeners since 1.24.
func Inspect(fd int) (Socket, error) {
	dom, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DOMAIN)
	if err != nil {
		return Socket{}, fmt.Errorf("socket %d: reading its family: %w", fd, err)
	}
	proto, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PROTOCOL)
	if err != nil {
		return Socket{}, fmt.Errorf("socket %d: reading its protocol: %w", fd, err)
	}
	switch {
	case proto == unix.IPPROTO_MPTCP:
		return Socket{}, fmt.Errorf("socket %d is MPTCP, which cannot carry TCP-MD5 or TCP-AO keys; use plain TCP (for a systemd socket, drop SocketProtocol=mptcp from its .socket unit)", fd)
	case proto != unix.IPPROTO_TCP:
		return Socket{}, fmt.Errorf("socket %d is not a TCP socket (protocol %d)", fd, proto)
	}
	s := Socket{FD: fd, Family: dom}
	switch dom {
	case unix.AF_INET:
		s.Takes4 = true
	case unix.AF_INET6:
		v6only, err := unix.GetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY)
		if err != nil {
			return Socket{}, fmt.Errorf("socket %d: reading IPV6_V6ONLY: %w", fd, err)
		}
		s.Takes4, s.Takes6 = v6only == 0, true
		// A socket bound to one address takes only that address's family.
		if sa, err := unix.Getsockname(fd); err == nil {
			if a, ok := sa.(*unix.SockaddrInet6); ok {
				addr := netip.AddrFrom16(a.Addr)
				switch {
				case addr.Is4In6():
					s.Takes6 = false
				case !addr.IsUnspecified():
					s.Takes4 = false
				}
			}
		}
	default:
		return Socket{}, fmt.Errorf("socket %d has address family %d, not IPv4 or IPv6", fd, dom)
	}
	return s, nil
}

// FromConn returns the Socket behind a raw connection, for use in
// net.Dialer.Control and net.ListenConfig.Control.
func FromConn(c syscall.RawConn) (s Socket, err error) {
	cerr := c.Control(func(fd uintptr) { s, err = Inspect(int(fd)) })
	if cerr != nil {
		return Socket{}, cerr
	}
	return s, err
}

// AddrPortOf converts an IPv4 or IPv6 socket address; anything else gives
// the zero AddrPort.
func AddrPortOf(sa unix.Sockaddr) netip.AddrPort {
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port))
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(a.Addr), uint16(a.Port))
	}
	return netip.AddrPort{}
}

// DialSocket is the socket a dial Control function signs, and the single
// host prefix of the address dialled.
func DialSocket(address string, c syscall.RawConn, sign func(s Socket, peer netip.Prefix) error) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("signing dial to %q: %w", address, err)
	}
	addr := ap.Addr().Unmap().WithZone("")
	peer := netip.PrefixFrom(addr, addr.BitLen())
	var serr error
	cerr := c.Control(func(fd uintptr) {
		var s Socket
		if s, serr = Inspect(int(fd)); serr == nil {
			serr = sign(s, peer)
		}
	})
	if cerr != nil {
		return cerr
	}
	return serr
}

// ListenControl returns a net.ListenConfig Control function that puts keys
// on a listening socket before bind and listen (Install), and fails (so
// the listener is never opened) when the keys leave a peer family of the
// socket uncovered.
func ListenControl(b Backend, keys []Key) func(network, address string, c syscall.RawConn) error {
	return func(network, address string, c syscall.RawConn) error {
		var err error
		cerr := c.Control(func(fd uintptr) {
			var s Socket
			if s, err = Inspect(int(fd)); err != nil {
				return
			}
			// Before bind the socket cannot tell from its address which
			// families it will take; judge by the address asked for.
			if ap, perr := netip.ParseAddrPort(address); perr == nil && s.Family == unix.AF_INET6 {
				a := ap.Addr()
				if a.Is4In6() {
					s.Takes6 = false
				} else if !a.IsUnspecified() {
					s.Takes4 = false
				}
			}
			err = Install(b, s, keys)
		})
		if cerr != nil {
			return fmt.Errorf("listen %s: %w", address, cerr)
		}
		if err != nil {
			return fmt.Errorf("listen %s: %w", address, err)
		}
		return nil
	}
}
