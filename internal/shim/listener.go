//go:build linux

package shim

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// execListener drains what queued before the keys, then replaces this
// process with the command, passing the keyed listeners the systemd way
// (fd 3 on, LISTEN_FDS, LISTEN_PID = our pid, which exec keeps).
// Sockets keyed before listen() are not drained: everything queued on
// them is signed (key holders who connected across a restart), and sshd
// serves it.
func (s *server) execListener() error {
	for _, l := range s.lns {
		if l.own {
			continue
		}
		if err := s.drain(l); err != nil {
			return err
		}
	}
	path, err := exec.LookPath(s.cfg.Command[0])
	if err != nil {
		return fmt.Errorf("command %q: %w", s.cfg.Command[0], err)
	}
	argv := s.cfg.Command
	n := len(s.lns)
	inPlace := true
	for i, l := range s.lns {
		if l.sock.FD != 3+i {
			inPlace = false
		}
	}
	if inPlace {
		// systemd's own fds: already at 3..; only close-on-exec, which
		// activation.Files set, has to go.
		for _, l := range s.lns {
			if err := handOver(l.sock.FD); err != nil {
				return fmt.Errorf("%s: %w", l.name, err)
			}
		}
	} else {
		// Our own -l sockets sit above the Go runtime's fds (epoll at 3
		// and 4 from the start), and moving them onto 3.. here would pull
		// the netpoller's fds from under it while other threads run. A
		// POSIX shell does the move after this process image is gone; the
		// pid stays the same through both execs. dash takes single-digit
		// fds only, hence the limit.
		var script strings.Builder
		script.WriteString("exec")
		for i, l := range s.lns {
			src, err := unix.FcntlInt(uintptr(l.sock.FD), unix.F_DUPFD, 3+n)
			if err != nil {
				return fmt.Errorf("%s: duplicating the socket: %w", l.name, err)
			}
			if src > 9 {
				return fmt.Errorf("listener mode with -l passes at most 3 sockets (fd %d is past 9); let systemd open the sockets instead", src)
			}
			if err := handOver(src); err != nil {
				return fmt.Errorf("%s: %w", l.name, err)
			}
			fmt.Fprintf(&script, " %d<&%d %d<&-", 3+i, src, src)
		}
		script.WriteString(` "$0" "$@"`)
		argv = append([]string{"/bin/sh", "-c", script.String(), path}, argv[1:]...)
		path = "/bin/sh"
	}
	env := make([]string, 0, len(os.Environ())+2)
	for _, e := range os.Environ() {
		if strings.HasPrefix(e, "LISTEN_PID=") || strings.HasPrefix(e, "LISTEN_FDS=") || strings.HasPrefix(e, "LISTEN_FDNAMES=") {
			continue
		}
		env = append(env, e)
	}
	env = append(env, "LISTEN_FDS="+strconv.Itoa(n), "LISTEN_PID="+strconv.Itoa(os.Getpid()))
	s.log.Printf("handing %d keyed listener(s) to %s (listener mode; a SIGHUP to sshd drops them and binds unkeyed sockets: restart, never reload)", n, s.cfg.Command[0])
	err = unix.Exec(path, argv, env)
	return fmt.Errorf("exec %s: %w", path, err)
}

// handOver makes fd survive exec as a normal, blocking listening socket.
func handOver(fd int) error {
	if err := unix.SetNonblock(fd, false); err != nil {
		return fmt.Errorf("making the socket blocking: %w", err)
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFD, 0); err != nil {
		return fmt.Errorf("clearing close-on-exec: %w", err)
	}
	return nil
}

// drain accepts, without blocking, everything queued on l and closes it:
// connections that completed their handshake before the keys were on the
// socket carry no key and must never reach sshd. A signed one that slipped
// in during the drain is closed too, since only sshd can serve it; its
// client sees a reset and can retry.
func (s *server) drain(l *listener) error {
	fd := l.sock.FD
	if err := unix.SetNonblock(fd, true); err != nil {
		return fmt.Errorf("%s: %w", l.name, err)
	}
	for {
		cfd, _, err := unix.Accept4(fd, unix.SOCK_CLOEXEC)
		switch {
		case err == nil:
		case errors.Is(err, unix.EAGAIN):
			return nil
		case errors.Is(err, unix.EINTR), errors.Is(err, unix.ECONNABORTED):
			continue
		default:
			return fmt.Errorf("%s: draining the queue: %w", l.name, err)
		}
		_, who := peerOf(cfd)
		keyed, kerr := connKeyed(cfd)
		unix.Close(cfd)
		switch {
		case kerr != nil:
			s.log.Printf("closed connection from %s: cannot check its TCP-MD5 key: %v", who, kerr)
		case !keyed:
			s.log.Printf("closed unsigned connection from %s queued before the keys were set", who)
		default:
			s.log.Printf("closed signed connection from %s that arrived while handing over to sshd; the client may retry", who)
		}
	}
}
