package proxy

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// Copy relays stdin to conn and conn to stdout until the server closes the
// connection. At EOF on stdin it half-closes conn (ssh closing our stdin
// does not mean the server has said everything) and keeps reading.
//
// io.Copy between *os.File and *net.TCPConn lets Go use splice(2), so bulk
// data need not pass through user space.
func Copy(conn *net.TCPConn, stdin io.Reader, stdout io.Writer) error {
	upErr := make(chan error, 1)
	go func() {
		_, err := io.Copy(conn, stdin)
		if err != nil {
			upErr <- fmt.Errorf("relaying to the server: %w", err)
			return
		}
		if err := conn.CloseWrite(); err != nil {
			upErr <- fmt.Errorf("half-closing the connection: %w", err)
			return
		}
		upErr <- nil
	}()
	downErr := make(chan error, 1)
	go func() {
		_, err := io.Copy(stdout, conn)
		if err != nil {
			err = fmt.Errorf("relaying from the server: %w", err)
		}
		downErr <- err
	}()
	// The server closing its side ends the session; stdin may stay open
	// (ssh keeps it until it sees our EOF), so do not wait for it then.
	for {
		select {
		case err := <-upErr:
			if err != nil {
				conn.Close()
				return err
			}
			upErr = nil // a nil channel blocks: wait for the server now
		case err := <-downErr:
			conn.Close()
			return err
		}
	}
}

// CheckFDPass reports whether f can carry a file descriptor, which only a
// unix socket can: ssh gives the proxy one on stdout only with
// ProxyUseFdpass yes.
func CheckFDPass(f *os.File) error {
	sc, err := f.SyscallConn()
	if err != nil {
		return fmt.Errorf("--fdpass: stdout: %w", err)
	}
	var dom int
	var serr error
	if err := sc.Control(func(fd uintptr) {
		dom, serr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_DOMAIN)
	}); err != nil {
		return fmt.Errorf("--fdpass: stdout: %w", err)
	}
	if errors.Is(serr, unix.ENOTSOCK) || (serr == nil && dom != unix.AF_UNIX) {
		return errors.New("--fdpass: stdout is not a unix socket, so the connection cannot be passed to ssh; set ProxyUseFdpass yes in ssh_config (or -o ProxyUseFdpass=yes), or drop --fdpass")
	}
	if serr != nil {
		return fmt.Errorf("--fdpass: stdout: %w", serr)
	}
	return nil
}

// SendFD hands the connected socket to ssh the way ProxyUseFdpass expects:
// exactly one byte with one SCM_RIGHTS descriptor on stdout. The TCP-MD5
// key lives on the socket, so ssh's session stays signed after we exit.
func SendFD(stdout *os.File, conn syscall.Conn) error {
	if err := CheckFDPass(stdout); err != nil {
		return err
	}
	out, err := stdout.SyscallConn()
	if err != nil {
		return fmt.Errorf("--fdpass: stdout: %w", err)
	}
	rc, err := conn.SyscallConn()
	if err != nil {
		return fmt.Errorf("--fdpass: connection: %w", err)
	}
	var serr error
	cerr := rc.Control(func(sock uintptr) {
		rights := unix.UnixRights(int(sock))
		// Write, not Control: it waits for the socket to be writable
		// should stdout be non-blocking and full.
		werr := out.Write(func(o uintptr) bool {
			serr = unix.Sendmsg(int(o), []byte{0}, rights, nil, 0)
			return !errors.Is(serr, unix.EAGAIN)
		})
		if serr == nil {
			serr = werr
		}
	})
	if cerr != nil {
		return fmt.Errorf("--fdpass: %w", cerr)
	}
	if serr != nil {
		return fmt.Errorf("--fdpass: sending the connection to ssh: %w", serr)
	}
	return nil
}
