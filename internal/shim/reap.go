//go:build linux

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
// without blocking. exited runs once the process has exited and before
// it is reaped: until then its pid cannot be reused, so whoever reads
// /proc/PID about it can stop doing so safely.
func reap(p *os.Process, exited func()) {
	defer p.Release()
	pfd, err := unix.PidfdOpen(p.Pid, unix.PIDFD_NONBLOCK)
	if err != nil {
		// Before Linux 5.10 (PIDFD_NONBLOCK): a thread per child.
		_, _ = p.Wait()
		exited()
		return
	}
	// The child is ours and unreaped, so its pid cannot have been reused
	// between Start and PidfdOpen.
	f := os.NewFile(uintptr(pfd), "pidfd")
	defer f.Close()
	if rc, err := f.SyscallConn(); err == nil {
		var werr error
		err = rc.Read(func(fd uintptr) bool {
			var done bool
			done, werr = waitNoHang(int(fd), unix.WNOWAIT)
			return done || werr != nil
		})
		if err == nil && werr == nil {
			exited()
			_, _ = waitNoHang(pfd, 0)
			return
		}
	}
	// Not pollable after all: wait the blocking way.
	for {
		var info unix.Siginfo
		err := unix.Waitid(unix.P_PIDFD, pfd, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	exited()
	_, _ = waitNoHang(pfd, 0)
}

// waitNoHang reaps the process behind pidfd if it has exited; with
// WNOWAIT in flags it only tells.
func waitNoHang(pidfd int, flags int) (bool, error) {
	for {
		var info unix.Siginfo
		err := unix.Waitid(unix.P_PIDFD, pidfd, &info, unix.WEXITED|unix.WNOHANG|flags, nil)
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
