//go:build linux

package fdstore

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// The message and the descriptor reach NOTIFY_SOCKET as systemd reads
// them: one datagram, the fd in SCM_RIGHTS; the received fd is the same
// open file (same inode).
func TestStoreSendsFD(t *testing.T) {
	for _, abstract := range []bool{false, true} {
		path := filepath.Join(t.TempDir(), "notify")
		if abstract {
			path = "@sshmd5-fdstore-test-" + filepath.Base(t.TempDir())
		}
		srv, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(srv)
		if err := unix.Bind(srv, &unix.SockaddrUnix{Name: path}); err != nil {
			t.Fatal(err)
		}
		t.Setenv("NOTIFY_SOCKET", path)
		f, err := os.CreateTemp(t.TempDir(), "fd")
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		name := Name("tcp-[::]:22")
		if name != "sshd-md5-listen-tcp-[__]_22" {
			t.Errorf("Name = %q: it must carry no ':'", name)
		}
		if err := Store(name, int(f.Fd())); err != nil {
			t.Fatalf("Store (abstract %v): %v", abstract, err)
		}
		buf, oob := make([]byte, 256), make([]byte, unix.CmsgSpace(4))
		n, oobn, _, _, err := unix.Recvmsg(srv, buf, oob, 0)
		if err != nil {
			t.Fatal(err)
		}
		if got := string(buf[:n]); got != "FDSTORE=1\nFDNAME="+name {
			t.Errorf("message %q", got)
		}
		msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
		if err != nil || len(msgs) != 1 {
			t.Fatalf("control messages: %v, %v", msgs, err)
		}
		fds, err := unix.ParseUnixRights(&msgs[0])
		if err != nil || len(fds) != 1 {
			t.Fatalf("rights: %v, %v", fds, err)
		}
		var a, b unix.Stat_t
		unix.Fstat(int(f.Fd()), &a)
		unix.Fstat(fds[0], &b)
		unix.Close(fds[0])
		if a.Ino != b.Ino {
			t.Errorf("received another file (inode %d, want %d)", b.Ino, a.Ino)
		}
		if err := Remove(name); err != nil {
			t.Fatal(err)
		}
		n, _, _, _, _ = unix.Recvmsg(srv, buf, oob, 0)
		if got := string(buf[:n]); got != "FDSTOREREMOVE=1\nFDNAME="+name {
			t.Errorf("remove message %q", got)
		}
	}
	t.Setenv("NOTIFY_SOCKET", "")
	if err := Store("x", 0); err != nil || Enabled() {
		t.Errorf("without NOTIFY_SOCKET: Store = %v, Enabled = %v; want nil, false", err, Enabled())
	}
}
