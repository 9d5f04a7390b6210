//go:build linux

package ao

import (
	"errors"

	"golang.org/x/sys/unix"
)

// NoKey reports whether err, from Current or Keys, means only that the
// socket carries no TCP-AO key: the kernel says ENOENT when a socket has
// no TCP-AO state at all, and a kernel without TCP-AO knows no option
// (ENOPROTOOPT), so no socket there has a key.
func NoKey(err error) bool {
	return errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOPROTOOPT) || errors.Is(err, ErrNoKernel)
}
