//go:build linux

// Package md5 is the only code in this module that talks to the kernel's
// TCP-MD5 signature API (RFC 2385, TCP_MD5SIG and TCP_MD5SIG_EXT on Linux).
//
// A Key names the peers it is for as a netip.Prefix in its natural family.
// The socket decides the wire form: an AF_INET6 socket that also takes IPv4
// peers needs IPv4 prefixes as v4-mapped addresses with the prefix length
// counted in IPv4 bits, which Socket.Set does by itself.
package md5

import "github.com/sshmd5/sshmd5/internal/tcpsig"

// MaxKeyLen is the longest secret the kernel takes (TCP_MD5SIG_MAXKEYLEN).
const MaxKeyLen = tcpsig.MaxKeyLen

// Secret is tcpsig.Secret: key material that never prints.
type Secret = tcpsig.Secret

// Key is tcpsig.Key: the peers a key signs for and the secret.
type Key = tcpsig.Key
