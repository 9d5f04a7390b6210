// Package fingerprint names a TCP-MD5 or TCP-AO key without revealing it,
// so that an operator can tell whether a client and a server hold the same
// key by comparing two short strings, as with ssh-keygen -l.
//
// A fingerprint is
//
//	MD5KEY:SHA256:<unpadded standard base64 of SHA-256(Context || key)>
//	AOKEY:SHA256:<unpadded standard base64 of SHA-256(AOContext || key)>
//
// The context string keeps the hash apart from any other SHA-256 of the
// same bytes (a key file's checksum, another tool's fingerprint): equal
// strings from two programs cannot be mistaken for one another. Each kind
// has its own, so the same bytes as a TCP-MD5 and as a TCP-AO key differ
// in the hash too, not only in the prefix. A TCP-AO fingerprint covers
// the secret only: the IDs and the algorithm are shown beside it in
// plain text. It is a
// plain hash, not a MAC: anyone holding a fingerprint can test a guessed
// key against it, so the key's own entropy is what protects it (keygen's
// keys are 256 random bits). That adds nothing to what a passive observer
// already has: every TCP-MD5 segment on the wire carries an MD5 over
// known data and the key, which tests a guess faster still (DESIGN.md,
// "Key fingerprints").
package fingerprint

import (
	"crypto/sha256"
	"encoding/base64"
)

// Context is hashed before the key; the version lets a later format
// change its hash without two formats ever colliding.
const Context = "sshmd5 key fingerprint v1\x00"

// Prefix starts every fingerprint: the kind of key, then the hash.
const Prefix = "MD5KEY:SHA256:"

// AOContext and AOPrefix are Context and Prefix for a TCP-AO key.
const (
	AOContext = "sshmd5 ao key fingerprint v1\x00"
	AOPrefix  = "AOKEY:SHA256:"
)

// Of returns the fingerprint of key as a TCP-MD5 key.
func Of(key []byte) string {
	h := sha256.New()
	h.Write([]byte(Context))
	h.Write(key)
	return Prefix + base64.RawStdEncoding.EncodeToString(h.Sum(nil))
}

// OfAO returns the fingerprint of key as a TCP-AO key.
func OfAO(key []byte) string {
	h := sha256.New()
	h.Write([]byte(AOContext))
	h.Write(key)
	return AOPrefix + base64.RawStdEncoding.EncodeToString(h.Sum(nil))
}
