//go:build linux

// Package fdstore keeps listening sockets in systemd's file descriptor
// store (FileDescriptorStoreMax=), so that a keyed socket outlives the
// process that keyed it: systemd hands it back in LISTEN_FDS, under the
// name given here in LISTEN_FDNAMES, after a restart or a crash.
//
// go-systemd's daemon.SdNotify cannot pass descriptors, hence this small
// sendmsg of our own.
package fdstore

import (
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// Prefix starts the name of every socket this project stores, so that
// its sockets can be told from the ones a .socket unit passes.
const Prefix = "sshd-md5-listen-"

// Name is the store name of a listener on addr, e.g. "[::]:22" gives
// "sshd-md5-listen-[__]_22": systemd refuses ':' in names, since it
// separates the names in LISTEN_FDNAMES.
func Name(addr string) string {
	return Prefix + strings.ReplaceAll(addr, ":", "_")
}

// Enabled reports whether a service manager listens for notifications.
func Enabled() bool { return os.Getenv("NOTIFY_SOCKET") != "" }

// Store asks systemd to keep a copy of fd under name. Without
// NOTIFY_SOCKET it does nothing and returns nil. systemd takes the fd only
// where the unit sets FileDescriptorStoreMax=; otherwise it logs and
// closes its copy, and the socket lives as long as this process.
func Store(name string, fd int) error {
	return notify(fmt.Sprintf("FDSTORE=1\nFDNAME=%s", name), fd)
}

// Remove asks systemd to close its copies stored under name.
func Remove(name string) error {
	return notify(fmt.Sprintf("FDSTOREREMOVE=1\nFDNAME=%s", name), -1)
}

func notify(state string, fd int) error {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return nil
	}
	// An unconnected datagram socket and sendmsg: net's connected
	// UnixConn refuses WriteMsgUnix, and x/sys maps a leading '@' to the
	// abstract namespace itself.
	s, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	defer unix.Close(s)
	var oob []byte
	if fd >= 0 {
		oob = unix.UnixRights(fd)
	}
	if err := unix.Sendmsg(s, []byte(state), oob, &unix.SockaddrUnix{Name: path}, 0); err != nil {
		return fmt.Errorf("sd_notify %s to %s: %w", strings.SplitN(state, "\n", 2)[0], path, err)
	}
	return nil
}
