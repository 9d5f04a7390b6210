package inspect

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/sshmd5/sshmd5/internal/md5"
)

// ProcNames are the processes whose listening sockets Status reports
// (as /proc/PID/comm shows them, at most 15 bytes).
var ProcNames = []string{"sshd-md5-socket", "sshd"}

// Listener is one listening TCP socket and the keys it carries.
type Listener struct {
	Local    string   `json:"local"`
	PID      int      `json:"pid"`
	Process  string   `json:"process"`
	Keys     int      `json:"keys"`
	Prefixes []string `json:"prefixes"`
	Error    string   `json:"error,omitempty"`
}

// Report is what Status finds.
type Report struct {
	Drops struct {
		NotFound   uint64 `json:"md5_not_found"`
		Failure    uint64 `json:"md5_failure"`
		Unexpected uint64 `json:"md5_unexpected"`
	} `json:"drops"`
	Listeners []Listener `json:"listeners"`
	// OtherNetns counts matching processes in another network namespace,
	// whose keys sock_diag cannot read from here; they are skipped.
	OtherNetns int `json:"other_netns_processes"`
}

// Status reads the drop counters and the keys of every listening TCP
// socket held by a process named in ProcNames, and prints them as text
// or JSON. It fails when it finds no listener or cannot read one.
func Status(w io.Writer, asJSON bool) error {
	var r Report
	c, err := md5.ReadCounters()
	if err != nil {
		return fmt.Errorf("reading the TCP-MD5 drop counters: %w", err)
	}
	r.Drops.NotFound, r.Drops.Failure, r.Drops.Unexpected = c.NotFound, c.Failure, c.Unexpected
	r.Listeners, r.OtherNetns, err = listeners()
	if err != nil {
		return err
	}
	var failed []string
	for _, l := range r.Listeners {
		if l.Error != "" {
			failed = append(failed, fmt.Sprintf("pid %d (%s) %s: %s", l.PID, l.Process, l.Local, l.Error))
		}
	}
	if asJSON {
		if r.Listeners == nil {
			r.Listeners = []Listener{}
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		if err := enc.Encode(r); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(w, "TCP-MD5 drops in this network namespace: %d unsigned (TCPMD5NotFound), %d bad signature (TCPMD5Failure), %d unexpected signature (TCPMD5Unexpected)\n",
			c.NotFound, c.Failure, c.Unexpected)
		for _, l := range r.Listeners {
			fmt.Fprintf(w, "%s  pid %d (%s)  ", l.Local, l.PID, l.Process)
			switch {
			case l.Error != "":
				fmt.Fprintf(w, "keys unknown: %s\n", l.Error)
			case l.Keys == 0:
				fmt.Fprintf(w, "0 keys: takes unsigned connections\n")
			default:
				const show = 20
				ps := l.Prefixes
				more := ""
				if len(ps) > show {
					more = fmt.Sprintf(", ... %d more", len(ps)-show)
					ps = ps[:show]
				}
				fmt.Fprintf(w, "%d keys: %s%s\n", l.Keys, strings.Join(ps, ", "), more)
			}
		}
	}
	if r.OtherNetns > 0 && !asJSON {
		fmt.Fprintf(w, "(skipped %d %s process(es) in other network namespaces; run status there, e.g. with ip netns exec or nsenter -n -t PID)\n", r.OtherNetns, strings.Join(ProcNames, "/"))
	}
	if len(r.Listeners) == 0 {
		return fmt.Errorf("no listening TCP socket of a process named %s found in /proc; is the service running (in this network namespace)?", strings.Join(ProcNames, " or "))
	}
	if len(failed) > 0 {
		return fmt.Errorf("could not read the keys of %s", strings.Join(failed, "; "))
	}
	return nil
}

// listeners finds the listening TCP sockets of the ProcNames processes,
// each once (a socket shared by the shim and sshd is listed for the
// lowest pid).
func listeners() ([]Listener, int, error) {
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return nil, 0, fmt.Errorf("listing /proc: %w", err)
	}
	self, err := netnsID("self")
	if err != nil {
		return nil, 0, fmt.Errorf("reading own network namespace: %w", err)
	}
	other := 0
	type proc struct {
		pid  int
		comm string
	}
	var ps []proc
	for _, e := range procs {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "comm"))
		if err != nil {
			continue // gone
		}
		comm := strings.TrimSpace(string(b))
		if !slices.Contains(ProcNames, comm) {
			continue
		}
		if id, err := netnsID(e.Name()); err != nil {
			continue // gone, or a kernel thread
		} else if id != self {
			other++
			continue
		}
		ps = append(ps, proc{pid, comm})
	}
	slices.SortFunc(ps, func(a, b proc) int { return a.pid - b.pid })
	seen := map[string]bool{}
	var out []Listener
	for _, p := range ps {
		dir := fmt.Sprintf("/proc/%d/fd", p.pid)
		fds, err := os.ReadDir(dir)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			return nil, 0, fmt.Errorf("listing %s: %w (run as root)", dir, err)
		}
		var pidfd = -1
		for _, e := range fds {
			link, err := os.Readlink(filepath.Join(dir, e.Name()))
			if err != nil || !strings.HasPrefix(link, "socket:[") || seen[link] {
				continue
			}
			target, err := strconv.Atoi(e.Name())
			if err != nil {
				continue
			}
			if pidfd < 0 {
				if pidfd, err = unix.PidfdOpen(p.pid, 0); err != nil {
					pidfd = -1
					break // gone
				}
			}
			l, ok := inspectFD(pidfd, target)
			if !ok {
				continue
			}
			seen[link] = true
			l.PID, l.Process = p.pid, p.comm
			out = append(out, l)
		}
		if pidfd >= 0 {
			unix.Close(pidfd)
		}
	}
	return out, other, nil
}

// netnsID identifies the network namespace of /proc/PID.
func netnsID(pid string) (string, error) {
	var st unix.Stat_t
	if err := unix.Stat("/proc/"+pid+"/ns/net", &st); err != nil {
		return "", err
	}
	return fmt.Sprintf("%d:%d", st.Dev, st.Ino), nil
}

// inspectFD duplicates fd of the process behind pidfd and, if it is a
// listening TCP socket, reads its address and keys.
func inspectFD(pidfd, fd int) (Listener, bool) {
	dup, err := unix.PidfdGetfd(pidfd, fd, 0)
	if err != nil {
		return Listener{}, false
	}
	defer unix.Close(dup)
	if acc, err := unix.GetsockoptInt(dup, unix.SOL_SOCKET, unix.SO_ACCEPTCONN); err != nil || acc == 0 {
		return Listener{}, false
	}
	s, err := md5.Inspect(dup)
	if err != nil {
		return Listener{}, false // not TCP, or MPTCP: not keyable
	}
	var l Listener
	if sa, err := unix.Getsockname(dup); err == nil {
		l.Local = "?"
		if ap := md5.AddrPortOf(sa); ap.IsValid() {
			l.Local = ap.String()
		}
	}
	keys, err := s.Keys()
	if err != nil {
		l.Error = err.Error()
		return l, true
	}
	l.Keys = len(keys)
	l.Prefixes = []string{}
	for _, k := range keys {
		l.Prefixes = append(l.Prefixes, k.String())
	}
	return l, true
}
