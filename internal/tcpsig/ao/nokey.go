//go:build linux

package ao

import (
	"errors"

	"golang.org/x/sys/unix"
)

// NoKey reports whether err, from Current or Keys, means only that the
// socket carries no TCP-AO key: the kernel says ENOENT when a socket has
// no TCP-AO state at all.
func NoKey(err error) bool { return errors.Is(err, unix.ENOENT) }
