//go:build unix

package keyring

import (
	"io/fs"
	"syscall"
)

const oNonblock = syscall.O_NONBLOCK

// owner gives a file's owner and raw mode bits (setuid, sticky and the
// permissions), as the StrictModes checks need them.
func owner(fi fs.FileInfo) (uid uint32, mode uint32, ok bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, 0, false
	}
	return st.Uid, uint32(st.Mode), true
}
