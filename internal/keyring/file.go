package keyring

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"
)

var errBadGlob = errors.New(`bad glob: syntax error in pattern; use * ? [a-z] and \ as in path.Match, e.g. "*.corp.example"`)

// openHint is the fix for a file that cannot be opened, as "; ..." to
// append, or "" when the error says enough.
func openHint(err error, notExist string) string {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "; " + notExist
	case errors.Is(err, fs.ErrPermission):
		return "; run as the file's owner or root"
	}
	return ""
}

// maxFileSize bounds what we read: a keyring is small, and a key file
// larger than this is a mistake the length check reports anyway.
const maxFileSize = 1 << 20

// readSecretFile reads a keyring or key file after the checks ssh makes
// for private keys. Errors do not repeat the path except in the fix; the
// caller names the file.
func readSecretFile(path string) ([]byte, error) {
	// O_NONBLOCK so that a FIFO cannot hang us before Stat rejects it.
	// Checking the open file, not the path, follows symlinks without a
	// window for the target to change.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if err := checkSecretFile(path, fi); err != nil {
		return nil, err
	}
	b, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, err
	}
	if len(b) > maxFileSize {
		return nil, fmt.Errorf("larger than %d bytes; is this the right file?", maxFileSize)
	}
	return b, nil
}

func checkSecretFile(path string, fi fs.FileInfo) error {
	if fi.IsDir() {
		return fmt.Errorf("is a directory; name the file itself")
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("is not a regular file (mode %s); name a regular file", fi.Mode())
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		euid := os.Geteuid()
		if int(st.Uid) != euid && st.Uid != 0 {
			return fmt.Errorf("is owned by uid %d, not you (uid %d) or root; run chown %d %s", st.Uid, euid, euid, path)
		}
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return fmt.Errorf("permissions %04o are too open: the file holds secrets; run chmod 600 %s", perm, path)
	}
	return nil
}
