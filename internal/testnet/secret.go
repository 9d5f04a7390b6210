//go:build linux

package testnet

// NewSecret returns a fresh random TCP-MD5 key for a test: printable,
// because tcpdump -M takes its key as an argument string and key files
// are text, and marked "SECRET-" so that a leak into output is easy to
// search for. Tests compare keys; they never print them.
func NewSecret() []byte {
	return []byte("SECRET-" + RandHex(16))
}
