package shim

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// reap waits for p to exit and reaps it without holding an OS thread.
//
// Process.Wait (and so exec.Cmd.Wait) blocks in waitid, and a goroutine
// blocked in a system call keeps its thread: one thread per concurrent
// session, which the runtime keeps after the session ends, and at
// debug.SetMaxThreads (10,000 by default) the whole process aborts. A
// pidfd becomes readable when its process exits, so the netpoller's one
// thread waits for all children; waitid(P_PIDFD, WNOHANG) then reaps
// without blocking.
func reap(p *os.Process) {
	defer p.Release()
	pfd, err := unix.PidfdOpen(p.Pid, unix.PIDFD_NONBLOCK)
	if err != nil {
		// Before Linux 5.10 (PIDFD_NONBLOCK): a thread per child.
		_, _ = p.Wait()
		return
	}
	// The child is ours and unreaped, so its pid cannot have been reused
	// between Start and PidfdOpen.
	f := os.NewFile(uintptr(pfd), "pidfd")
	defer f.Close()
	rc, err := f.SyscallConn()
	if err == nil {
		var werr error
		err = rc.Read(func(fd uintptr) bool {
			var done bool
			done, werr = waitNoHang(int(fd))
			return done || werr != nil
		})
		if err == nil {
			err = werr
		}
	}
	if err != nil {
		// Not pollable after all: wait the blocking way.
		for {
			var info unix.Siginfo
			if werr := unix.Waitid(unix.P_PIDFD, pfd, &info, unix.WEXITED, nil); !errors.Is(werr, unix.EINTR) {
				return
			}
		}
	}
}

// waitNoHang reaps the process behind pidfd if it has exited.
func waitNoHang(pidfd int) (bool, error) {
	for {
		var info unix.Siginfo
		err := unix.Waitid(unix.P_PIDFD, pidfd, &info, unix.WEXITED|unix.WNOHANG, nil)
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case err != nil:
			return false, err
		}
		// With WNOHANG and nothing to reap the kernel leaves si_signo 0.
		return info.Signo != 0, nil
	}
}
