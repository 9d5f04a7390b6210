// Package tcpsig holds what every TCP signature backend (TCP-MD5, RFC 2385,
// and TCP-AO, RFC 5925) shares: the key and its secret, the socket and the
// peer families it takes, the Backend interface and the generic reconcile.
// Its portable part talks to no kernel, so the keyring parser and the plan
// can use it on any system.
package tcpsig

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
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
	// AO is set on a TCP-AO key and nil on a TCP-MD5 key.
	AO *AO
}

// AO is what a TCP-AO key has beyond a TCP-MD5 one: a name for logs, its
// two key IDs and its MAC. A listener holds many keys for one prefix, told
// apart by RecvID (the KeyID a peer's segments carry).
type AO struct {
	// Name says whose key it is (a user, "bastion"); never secret.
	Name string
	// SendID is the KeyID this side puts on its segments; RecvID the one
	// it expects on the peer's. Each is unique among keys for overlapping
	// prefixes, so one range holds at most 256 keys.
	SendID, RecvID uint8
	// Algorithm is the MAC: "hmac(sha1)", "hmac(sha256)" or
	// "cmac(aes128)".
	Algorithm string
	// MACLen is the MAC's length in bytes on the wire.
	MACLen int
}

// TCP-AO MACs the kernel offers (Linux 6.7+ takes no others).
const (
	AOHMACSHA1   = "hmac(sha1)"
	AOHMACSHA256 = "hmac(sha256)"
	AOCMACAES128 = "cmac(aes128)"
	// AODefaultAlgorithm is the MAC an AO key gets when the keyring names
	// none.
	AODefaultAlgorithm = AOHMACSHA256
	// AODefaultMACLen is the MAC length on the wire: 12 bytes (96 bits),
	// the length RFC 5926 gives HMAC-SHA-1-96 and AES-128-CMAC-96 and the
	// one BGP implementations use with hmac(sha256) too.
	AODefaultMACLen = 12
)

// AOAlgorithms lists the MACs, for messages.
var AOAlgorithms = []string{AOHMACSHA1, AOHMACSHA256, AOCMACAES128}

// Backend names the key's kind for messages and logs: "TCP-MD5" or
// "TCP-AO".
func (k Key) Backend() string {
	if k.AO != nil {
		return "TCP-AO"
	}
	return "TCP-MD5"
}

// ID is what tells keys on one socket apart: the kernel replaces a TCP-MD5
// key with the same prefix and interface, and a TCP-AO key is one of many
// for its prefix, named by its IDs.
type ID struct {
	Prefix  netip.Prefix
	Ifindex int
	AO      bool
	// SendID and RecvID: TCP-AO only.
	SendID, RecvID uint8
}

// ID returns the key's identity on a socket.
func (k Key) ID() ID {
	id := ID{Prefix: k.Prefix, Ifindex: k.Ifindex}
	if k.AO != nil {
		id.AO, id.SendID, id.RecvID = true, k.AO.SendID, k.AO.RecvID
	}
	return id
}

// Public is the key without its secret, for diffs and logs.
func (k Key) Public() Key {
	k.Secret = nil
	if k.AO != nil {
		ao := *k.AO
		k.AO = &ao
	}
	return k
}

// Same reports whether k and o are the same key: same identity, secret and
// MAC.
func (k Key) Same(o Key) bool {
	if k.ID() != o.ID() || !k.Secret.Equal(o.Secret) {
		return false
	}
	return k.AO == nil || k.AO.Algorithm == o.AO.Algorithm && k.AO.MACLen == o.AO.MACLen
}

// String describes the key without its secret: the prefix (with its
// interface), and for TCP-AO the name and IDs.
func (k Key) String() string {
	s := k.Prefix.String()
	if k.Ifindex != 0 {
		if ifi, err := net.InterfaceByIndex(k.Ifindex); err == nil {
			s = fmt.Sprintf("%s%%%s", k.Prefix, ifi.Name)
		} else {
			s = fmt.Sprintf("%s%%if%d", k.Prefix, k.Ifindex)
		}
	}
	if k.AO != nil {
		name := k.AO.Name
		if name == "" {
			name = "AO key"
		}
		s = fmt.Sprintf("%s %s (send_id %d, recv_id %d)", name, s, k.AO.SendID, k.AO.RecvID)
	}
	return s
}

// Validate checks what the kernel would reject, with a message that says
// which field is wrong.
func (k Key) Validate() error {
	kind := k.Backend()
	if !k.Prefix.IsValid() {
		return fmt.Errorf("%s key: invalid peer prefix", kind)
	}
	if k.Prefix.Addr().Is4In6() {
		return fmt.Errorf("%s key %s: write IPv4 peers as IPv4 (a.b.c.d/n), not v4-mapped", kind, k.Prefix)
	}
	if k.Prefix.Addr().Zone() != "" {
		return fmt.Errorf("%s key %s: peer prefix may not carry a zone", kind, k.Prefix)
	}
	if n := len(k.Secret); n < 1 || n > MaxKeyLen {
		return fmt.Errorf("%s key %s: secret is %d bytes, the kernel takes 1 to %d", kind, k, n, MaxKeyLen)
	}
	if k.Ifindex < 0 {
		return fmt.Errorf("%s key %s: negative interface index", kind, k)
	}
	if k.AO != nil {
		if !slices.Contains(AOAlgorithms, k.AO.Algorithm) {
			return fmt.Errorf("%s key %s: algorithm %q is not one the kernel offers (%s)", kind, k, k.AO.Algorithm, strings.Join(AOAlgorithms, ", "))
		}
		if k.AO.MACLen < 4 || k.AO.MACLen > 20 {
			return fmt.Errorf("%s key %s: MAC length %d is outside 4 to 20 bytes", kind, k, k.AO.MACLen)
		}
	}
	return nil
}
