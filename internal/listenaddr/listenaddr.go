//go:build linux

// Package listenaddr reads the -l addresses of sshd-md5-socket: the shim
// opens them, and check describes them without opening anything. Both
// call Parse, so that both refuse the same lists with the same words.
package listenaddr

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/sshmd5/sshmd5/internal/tcpsig"
)

// Addr is one -l address and the socket it makes.
type Addr struct {
	Arg string // as given, for messages
	// Network is what Go must listen with: "tcp" on [::] opens one
	// dual-stack socket (keyed for both families), a specific address a
	// socket of that family only. Go's "tcp" on 0.0.0.0 would silently
	// open a dual-stack socket too, hence "tcp4".
	Network  string
	AddrPort netip.AddrPort // IPv4 addresses unmapped
	// Socket says which peer families the socket takes; its FD is -1.
	Socket tcpsig.Socket
}

// String is the address in the form Go listens on.
func (a Addr) String() string { return a.AddrPort.String() }

// One reads a single -l address: IP:PORT, [IPv6]:PORT, or :PORT and PORT
// alone for every address of both families ([::]:PORT, one dual-stack
// socket), as sshd's ListenAddress and most servers take them.
func One(arg string) (Addr, error) {
	ap, err := parseAddrPort(arg)
	if err != nil {
		return Addr{}, fmt.Errorf("-l %q: %v", arg, err)
	}
	ip := ap.Addr().Unmap()
	switch {
	case ip.Zone() != "":
		return Addr{}, fmt.Errorf("-l %q: zoned addresses are not supported", arg)
	case ap.Port() == 0:
		return Addr{}, fmt.Errorf("-l %q: port 0 would pick a random port", arg)
	}
	a := Addr{Arg: arg, AddrPort: netip.AddrPortFrom(ip, ap.Port())}
	switch {
	case ip.Is4():
		a.Network, a.Socket = "tcp4", tcpsig.Socket{FD: -1, Family: unix.AF_INET, Takes4: true}
	case ip.IsUnspecified():
		a.Network, a.Socket = "tcp", tcpsig.Socket{FD: -1, Family: unix.AF_INET6, Takes4: true, Takes6: true}
	default:
		a.Network, a.Socket = "tcp6", tcpsig.Socket{FD: -1, Family: unix.AF_INET6, Takes6: true}
	}
	return a, nil
}

// Parse reads every -l address and refuses a list whose sockets could
// not all be opened: the same address twice, or two addresses of which
// one takes the other's peers on the same port (0.0.0.0 takes every IPv4
// address, [::] every address of both families). The kernel would give
// the second EADDRINUSE, which reads as if another server held the port.
//
// 0.0.0.0:PORT beside [::]:PORT is the one exception: the [::] socket is
// then IPv6-only, so that each family has a socket of its own (a keyring
// may sign IPv4 with TCP-MD5 and IPv6 with TCP-AO).
func Parse(args []string) ([]Addr, error) {
	all := make([]Addr, 0, len(args))
	any4 := map[uint16]bool{}
	for _, arg := range args {
		a, err := One(arg)
		if err != nil {
			return nil, err
		}
		if a.AddrPort.Addr() == netip.IPv4Unspecified() {
			any4[a.AddrPort.Port()] = true
		}
		all = append(all, a)
	}
	for i, a := range all {
		if a.Network == "tcp" && any4[a.AddrPort.Port()] {
			// Go opens "tcp6" on [::] with IPV6_V6ONLY set.
			all[i].Network, all[i].Socket.Takes4 = "tcp6", false
		}
	}
	out := make([]Addr, 0, len(args))
	for _, a := range all {
		for _, b := range out {
			if why := overlap(b, a); why != "" {
				return nil, fmt.Errorf("-l %q and -l %q: %s", b.Arg, a.Arg, why)
			}
		}
		out = append(out, a)
	}
	return out, nil
}

// overlap says why a and b cannot both be listened on, or "".
func overlap(a, b Addr) string {
	if a.AddrPort.Port() != b.AddrPort.Port() {
		return ""
	}
	if a.AddrPort == b.AddrPort {
		return "the same address twice; give it once"
	}
	for _, p := range [][2]Addr{{a, b}, {b, a}} {
		wide, narrow := p[0], p[1]
		ip := wide.AddrPort.Addr()
		if !ip.IsUnspecified() {
			continue
		}
		if ip.Is6() {
			if !wide.Socket.Takes4 {
				// IPv6-only, beside 0.0.0.0.
				if narrow.AddrPort.Addr().Is4() {
					continue
				}
				return fmt.Sprintf("%s takes every IPv6 address on port %d (IPv6 only, as 0.0.0.0:%d is given too), %s included; drop one of them",
					wide, wide.AddrPort.Port(), wide.AddrPort.Port(), narrow.AddrPort.Addr())
			}
			fam := "IPv6"
			if narrow.AddrPort.Addr().Is4() {
				fam = "IPv4"
			}
			return fmt.Sprintf("%s is one dual-stack socket that takes IPv4 and IPv6 peers on port %d, %s included; drop -l %q (or listen on specific addresses only)",
				wide, wide.AddrPort.Port(), fam+" "+narrow.AddrPort.Addr().String(), narrow.Arg)
		}
		if narrow.AddrPort.Addr().Is4() {
			return fmt.Sprintf("%s takes every IPv4 address on port %d, %s included; drop one of them", wide, wide.AddrPort.Port(), narrow.AddrPort.Addr())
		}
	}
	return ""
}

const forms = "want IP:PORT, [IPv6]:PORT or :PORT, e.g. 0.0.0.0:22, [::1]:22 or :22 (every address, IPv4 and IPv6)"

// parseAddrPort reads arg in one of the forms One takes. Its errors say
// which form was meant and how to write it, never netip's internals.
func parseAddrPort(arg string) (netip.AddrPort, error) {
	if arg == "" {
		return netip.AddrPort{}, errors.New("empty; " + forms)
	}
	if strings.Contains(arg, "%") {
		return netip.AddrPort{}, errors.New("zoned addresses are not supported")
	}
	if port, ok := strings.CutPrefix(arg, ":"); ok && !strings.Contains(port, ":") {
		p, err := parsePort(port)
		return netip.AddrPortFrom(netip.IPv6Unspecified(), p), err
	}
	if isDigits(arg) {
		p, err := parsePort(arg)
		return netip.AddrPortFrom(netip.IPv6Unspecified(), p), err
	}
	// An address with no port: say where the port goes.
	if a, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(arg, "["), "]")); err == nil {
		if a.Is6() {
			return netip.AddrPort{}, fmt.Errorf("no port; write [%s]:22 (brackets around an IPv6 address, then the port)", a)
		}
		return netip.AddrPort{}, fmt.Errorf("no port; write %s:22", a)
	}
	host, port, ok := cutPort(arg)
	if !ok {
		return netip.AddrPort{}, errors.New("not an address and port; " + forms)
	}
	p, err := parsePort(port)
	if err != nil {
		return netip.AddrPort{}, err
	}
	if h, ok := strings.CutPrefix(host, "["); ok {
		h, ok = strings.CutSuffix(h, "]")
		a, err := netip.ParseAddr(h)
		if !ok || err != nil || !a.Is6() {
			return netip.AddrPort{}, fmt.Errorf("brackets hold an IPv6 address; %s", forms)
		}
		return netip.AddrPortFrom(a, p), nil
	}
	a, err := netip.ParseAddr(host)
	switch {
	case err == nil && a.Is6():
		return netip.AddrPort{}, fmt.Errorf("put brackets around an IPv6 address: [%s]:%d", a, p)
	case err == nil:
		return netip.AddrPortFrom(a, p), nil
	default:
		// A name would need resolving, and could change under the keys.
		return netip.AddrPort{}, fmt.Errorf("not an IP address (host names are not resolved); %s", forms)
	}
}

// cutPort splits at the last colon, as in HOST:PORT.
func cutPort(s string) (host, port string, ok bool) {
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return "", "", false
	}
	return s[:i], s[i+1:], true
}

func parsePort(s string) (uint16, error) {
	if !isDigits(s) {
		return 0, fmt.Errorf("port %q is not a number from 1 to 65535; %s", s, forms)
	}
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil {
		return 0, fmt.Errorf("port %s is not a number from 1 to 65535", s)
	}
	return uint16(n), nil
}

func isDigits(s string) bool { return s != "" && strings.Trim(s, "0123456789") == "" }
