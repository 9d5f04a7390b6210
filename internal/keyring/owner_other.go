//go:build !unix

package keyring

import "io/fs"

// Only Linux signs connections; elsewhere the keyring is parsed (for
// tests and tools) without the ownership checks, which need Unix owners.
const oNonblock = 0

func owner(fs.FileInfo) (uid uint32, mode uint32, ok bool) { return 0, 0, false }
