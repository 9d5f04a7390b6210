//go:build linux

package md5

import "golang.org/x/sys/unix"

// The internals that the external tests (package md5_test, which can use
// internal/testnet: testnet imports md5) pin down.

// SizeofTCPMD5Sig is the size of the struct the kernel reads.
const SizeofTCPMD5Sig = sizeofTCPMD5Sig

// Encode is encode, the struct and option a key is set with.
func (s Socket) Encode(k Key) (*unix.TCPMD5Sig, int, error) { return s.encode(k) }
