// Package md5 is the only code in this module that talks to the kernel's
// TCP-MD5 signature API (RFC 2385, TCP_MD5SIG and TCP_MD5SIG_EXT on Linux).
//
// A Key names the peers it is for as a netip.Prefix in its natural family.
// The socket decides the wire form: an AF_INET6 socket that also takes IPv4
// peers needs IPv4 prefixes as v4-mapped addresses with the prefix length
// counted in IPv4 bits, which Socket.Set does by itself.
package md5

import (
	"fmt"
	"net"
	"net/netip"
)

// MaxKeyLen is the longest secret the kernel takes (TCP_MD5SIG_MAXKEYLEN).
const MaxKeyLen = 80

// Secret is key material. It formats as a placeholder so that a stray %v in
// a log line or an error cannot print it.
type Secret []byte

// String implements fmt.Stringer without revealing the secret.
func (Secret) String() string { return "[secret]" }

// GoString implements fmt.GoStringer without revealing the secret.
func (Secret) GoString() string { return "md5.Secret([secret])" }

// Format makes every verb, %x and %q included, print the placeholder.
func (s Secret) Format(f fmt.State, _ rune) { fmt.Fprint(f, s.String()) }

// Equal reports whether two secrets hold the same bytes.
func (s Secret) Equal(t Secret) bool { return string(s) == string(t) }

// Key is one TCP-MD5 key: the peers it signs for and the secret.
type Key struct {
	// Prefix is the peer prefix, masked; a single host is a /32 or /128.
	Prefix netip.Prefix
	// Ifindex binds the key to one interface (an L3 master device such as a
	// VRF); 0 means any.
	Ifindex int
	Secret  Secret
}

// String describes the key without its secret.
func (k Key) String() string {
	if k.Ifindex != 0 {
		if ifi, err := net.InterfaceByIndex(k.Ifindex); err == nil {
			return fmt.Sprintf("%s%%%s", k.Prefix, ifi.Name)
		}
		return fmt.Sprintf("%s%%if%d", k.Prefix, k.Ifindex)
	}
	return k.Prefix.String()
}

// Validate checks what the kernel would reject, with a message that says
// which field is wrong.
func (k Key) Validate() error {
	if !k.Prefix.IsValid() {
		return fmt.Errorf("md5 key: invalid peer prefix")
	}
	if k.Prefix.Addr().Is4In6() {
		return fmt.Errorf("md5 key %s: write IPv4 peers as IPv4 (a.b.c.d/n), not v4-mapped", k.Prefix)
	}
	if k.Prefix.Addr().Zone() != "" {
		return fmt.Errorf("md5 key %s: peer prefix may not carry a zone", k.Prefix)
	}
	if n := len(k.Secret); n < 1 || n > MaxKeyLen {
		return fmt.Errorf("md5 key %s: secret is %d bytes, the kernel takes 1 to %d", k, n, MaxKeyLen)
	}
	if k.Ifindex < 0 {
		return fmt.Errorf("md5 key %s: negative interface index", k)
	}
	return nil
}
