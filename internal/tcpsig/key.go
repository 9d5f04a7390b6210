// Package tcpsig holds what every TCP signature backend (TCP-MD5 today)
// shares: the key and its secret. It talks to no kernel, so the keyring
// parser and the plan can use it on any system.
package tcpsig

import (
	"fmt"
	"net"
	"net/netip"
)

// MaxKeyLen is the longest secret a backend takes (TCP_MD5SIG_MAXKEYLEN;
// TCP-AO's TCP_AO_MAXKEYLEN is the same 80).
const MaxKeyLen = 80

// Secret is key material. It formats as a placeholder so that a stray %v in
// a log line or an error cannot print it.
type Secret []byte

// String implements fmt.Stringer without revealing the secret.
func (Secret) String() string { return "[secret]" }

// GoString implements fmt.GoStringer without revealing the secret.
func (Secret) GoString() string { return "tcpsig.Secret([secret])" }

// Format makes every verb, %x and %q included, print the placeholder.
func (s Secret) Format(f fmt.State, _ rune) { fmt.Fprint(f, s.String()) }

// Equal reports whether two secrets hold the same bytes.
func (s Secret) Equal(t Secret) bool { return string(s) == string(t) }

// Key is one key: the peers it signs for and the secret.
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
