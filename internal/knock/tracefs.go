//go:build linux

package knock

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// DefaultTracefs is where systemd (sys-kernel-tracing.mount) mounts tracefs.
const DefaultTracefs = "/sys/kernel/tracing"

// TracefsEnv names the environment variable the shim reads Config.Tracefs
// from: "ip netns exec" mounts a fresh /sys without tracefs, and a path
// without tracefs is how the tests force the counters fallback.
const TracefsEnv = "SSHD_MD5_TRACEFS"

// InstancePrefix names this program's tracefs instances: the prefix and
// the pid of the shim that made it.
const InstancePrefix = "sshd-md5-"

// bufferKB is the instance's ring buffer per CPU. An event takes about 130
// bytes, so this holds some 2,000 per CPU between two reads: plenty for
// knocks, and under a flood the overflow is counted, not stored. The
// default (1.4 MB per CPU) would cost 90 MB on a 64-CPU machine.
const bufferKB = 256

// instance is a tracefs instance of our own: its events and buffer are
// separate from the global ones and from every other tracer's.
type instance struct {
	dir    string
	events []event // the ones enabled
}

// unavailableError says why tracing cannot be used; the counters take over.
type unavailableError struct{ reason string }

func (e unavailableError) Error() string { return e.reason }

// openInstance makes the instance tracefs/instances/sshd-md5-PID with the
// events of namespace cookie and ports enabled, filtered in the kernel.
func openInstance(tracefs string, pid int, cookie uint64, ports []uint16) (*instance, error) {
	inst := filepath.Join(tracefs, "instances")
	if _, err := os.Stat(inst); err != nil {
		if tracefs == DefaultTracefs {
			return nil, unavailableError{fmt.Sprintf("tracefs is not mounted on %s (%v): mount it (mount -t tracefs nodev %[1]s; systemd's sys-kernel-tracing.mount does at boot), or, under ip netns exec, whose fresh /sys has none, name a tracefs mount in %s", tracefs, err, TracefsEnv)}
		}
		return nil, unavailableError{fmt.Sprintf("no tracefs at %s (%v)", tracefs, err)}
	}
	var have []event
	for _, e := range events {
		format, err := os.ReadFile(filepath.Join(tracefs, "events", "tcp", e.name, "format"))
		usable := err == nil && bytes.Contains(format, []byte(" net_cookie;")) && bytes.Contains(format, []byte(" dport;"))
		if !usable {
			if e.required {
				return nil, unavailableError{fmt.Sprintf("this kernel has no usable tcp:%s tracepoint (Linux 6.7 and later have it, with the network namespace)", e.name)}
			}
			continue
		}
		have = append(have, e)
	}
	cleanStale(inst, pid)
	dir := filepath.Join(inst, InstancePrefix+strconv.Itoa(pid))
	// Ours by name: a previous process with our pid died without removing
	// it (a pid is reused only after that process is gone).
	if err := unix.Rmdir(dir); err != nil && !errors.Is(err, unix.ENOENT) {
		return nil, unavailableError{fmt.Sprintf("removing the stale tracefs instance %s: %v", dir, err)}
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		return nil, unavailableError{fmt.Sprintf("creating a tracefs instance: %v", err)}
	}
	in := &instance{dir: dir}
	// Filter before enabling, or other namespaces' events get in first.
	filter := filterExpr(cookie, ports)
	var filtered []event
	for _, e := range have {
		ev := filepath.Join(dir, "events", "tcp", e.name)
		if err := writeFile(filepath.Join(ev, "filter"), filter); err != nil {
			if !e.required {
				continue // an optional event we cannot filter is not enabled
			}
			in.remove()
			return nil, unavailableError{fmt.Sprintf("tcp:%s: setting the filter %q: %v", e.name, filter, err)}
		}
		filtered = append(filtered, e)
	}
	for _, step := range []struct{ file, value string }{
		{"buffer_size_kb", strconv.Itoa(bufferKB)},
		// Lines without task, CPU and timestamp: less to format and read.
		{"options/context-info", "0"},
	} {
		if err := writeFile(filepath.Join(dir, step.file), step.value); err != nil {
			in.remove()
			return nil, unavailableError{fmt.Sprintf("tracefs instance %s: %s: %v", dir, step.file, err)}
		}
	}
	for _, e := range filtered {
		if err := writeFile(filepath.Join(dir, "events", "tcp", e.name, "enable"), "1"); err != nil {
			in.remove()
			return nil, unavailableError{fmt.Sprintf("enabling tcp:%s: %v", e.name, err)}
		}
		in.events = append(in.events, e)
	}
	return in, nil
}

// filterExpr keeps the events of one network namespace and our ports. A
// tracepoint is global: without the cookie, every namespace's rejected
// segments would reach us (containers, other shims, test namespaces).
func filterExpr(cookie uint64, ports []uint16) string {
	ps := append([]uint16(nil), ports...)
	sort.Slice(ps, func(i, j int) bool { return ps[i] < ps[j] })
	var or []string
	for i, p := range ps {
		if i > 0 && p == ps[i-1] {
			continue
		}
		or = append(or, fmt.Sprintf("dport == %d", p))
	}
	return fmt.Sprintf("net_cookie == %d && (%s)", cookie, strings.Join(or, " || "))
}

// names lists the enabled events, for the log.
func (in *instance) names() string {
	var n []string
	for _, e := range in.events {
		n = append(n, "tcp:"+e.name)
	}
	return strings.Join(n, ", ")
}

// remove deletes the instance; the kernel disables its events with it. It
// fails (EBUSY) while trace_pipe is open.
func (in *instance) remove() error {
	if err := unix.Rmdir(in.dir); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("removing the tracefs instance %s: %w", in.dir, err)
	}
	return nil
}

// cleanStale removes the instances of shims that died without removing
// theirs (SIGKILL, a crash): their events stay enabled and their buffers
// allocated until then. One of a live process is left alone, and one
// still read by anyone cannot be removed (the kernel says EBUSY).
func cleanStale(inst string, self int) {
	ents, err := os.ReadDir(inst)
	if err != nil {
		return
	}
	for _, ent := range ents {
		pid, ok := instancePid(ent.Name())
		if !ok || pid == self {
			continue
		}
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			continue
		}
		_ = unix.Rmdir(filepath.Join(inst, ent.Name()))
	}
}

// instancePid reads the pid out of an instance name of ours.
func instancePid(name string) (int, bool) {
	s, ok := strings.CutPrefix(name, InstancePrefix)
	if !ok {
		return 0, false
	}
	pid, err := strconv.Atoi(s)
	if err != nil || pid <= 0 || strconv.Itoa(pid) != s {
		return 0, false
	}
	return pid, true
}

// writeFile writes a tracefs control file. The kernel's reason for a
// refused write (a filter it cannot parse) is in error_log, not in errno.
func writeFile(path, value string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(value + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
