//go:build linux

// Package nodump keeps the process's memory, which holds keys, out of core
// dumps and away from other users' ptrace and /proc/PID/mem.
package nodump

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// Set marks the process not dumpable (PR_SET_DUMPABLE 0): no core file on
// a crash, whatever RLIMIT_CORE and GOTRACEBACK=crash say, and its /proc
// files owned by root. Call it first thing in main, before any key is
// read. It exits the process if the kernel refuses, rather than go on
// with keys that a crash could write to disk. An exec (sshd) gets the
// kernel's default again.
func Set() {
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		fmt.Fprintf(os.Stderr, "%s: cannot turn off core dumps (prctl PR_SET_DUMPABLE): %v; refusing to run with keys in a dumpable process\n", os.Args[0], err)
		os.Exit(1)
	}
}
