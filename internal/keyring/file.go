package keyring

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
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

// readSecretFile reads a keyring or key file after the checks ssh makes
// for private keys. Errors do not repeat the path except in the fix; the
// caller names the file.
func readSecretFile(path string) ([]byte, error) {
	// O_NONBLOCK so that a FIFO cannot hang us before Stat rejects it.
	// Checking the open file, not the path, follows symlinks without a
	// window for the target to change.
	f, err := os.OpenFile(path, os.O_RDONLY|oNonblock, 0)
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
	if err := checkFolders(path); err != nil {
		return nil, err
	}
	b, err := io.ReadAll(io.LimitReader(f, MaxSize+1))
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, err
	}
	if len(b) > MaxSize {
		return nil, fmt.Errorf("larger than %d bytes; is this the right file?", MaxSize)
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
	if uid, _, ok := owner(fi); ok {
		euid := os.Geteuid()
		if int(uid) != euid && uid != 0 {
			return fmt.Errorf("is owned by uid %d, not you (uid %d) or root; run chown %d %s", uid, euid, euid, path)
		}
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return fmt.Errorf("permissions %04o are too open: the file holds secrets; run chmod 600 %s", perm, path)
	}
	return nil
}

// checkFolders refuses a file that someone else could replace, as ssh's
// StrictModes does: whoever can write to a folder on the way can swap the
// file, or a symlink to it, for one of their choosing (say, a root-owned
// file with guessable content, which passes checkSecretFile). Every
// folder up to / must be owned by the user or root and not writable by
// group or others; for a symlink, both the link's folders and the
// target's. Unlike ssh, a sticky folder owned by root (/tmp) is allowed:
// no one but its owner can rename or remove an entry there.
func checkFolders(path string) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	if err := checkFolderChain(filepath.Dir(abs)); err != nil {
		return err
	}
	real, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return fmt.Errorf("resolving symbolic links: %w", err)
	}
	if real != abs {
		if err := checkFolderChain(filepath.Dir(real)); err != nil {
			return fmt.Errorf("(a symbolic link to %s) %w", real, err)
		}
	}
	return nil
}

func checkFolderChain(dir string) error {
	euid := os.Geteuid()
	for {
		fi, err := os.Stat(dir)
		if err != nil {
			return fmt.Errorf("folder %s: %w", dir, err)
		}
		if uid, mode, ok := owner(fi); ok {
			mode &= 0o7777
			switch {
			case int(uid) != euid && uid != 0:
				return fmt.Errorf("folder %s is owned by uid %d, not you (uid %d) or root, who could replace the file; move the file to a folder of yours, or chown %d %s", dir, uid, euid, euid, dir)
			case mode&0o022 != 0 && !(mode&0o1000 != 0 && uid == 0):
				return fmt.Errorf("folder %s is writable by group or others (mode %04o), who could replace the file; run chmod go-w %s", dir, mode, dir)
			}
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return nil
		}
		dir = parent
	}
}
