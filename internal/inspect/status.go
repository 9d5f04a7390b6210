//go:build linux

package inspect

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/sshmd5/sshmd5/internal/fingerprint"
	"github.com/sshmd5/sshmd5/internal/keyring"
	"github.com/sshmd5/sshmd5/internal/tcpsig"
	"github.com/sshmd5/sshmd5/internal/tcpsig/ao"
	"github.com/sshmd5/sshmd5/internal/tcpsig/md5"
)

// ProcNames are the processes whose listening sockets Status reports
// (as /proc/PID/comm shows them, at most 15 bytes).
var ProcNames = []string{"sshd-md5-socket", "sshd"}

// Listener is one listening TCP socket and the keys it carries.
type Listener struct {
	Local   string `json:"local"`
	PID     int    `json:"pid"`
	Process string `json:"process"`
	// Backend is "TCP-MD5" or "TCP-AO", as read from the socket.
	Backend  string   `json:"backend"`
	Keys     int      `json:"keys"`
	Prefixes []string `json:"prefixes"`
	// Fingerprints of the keys by prefix (as in Prefixes), read back
	// from the kernel: what the peers must sign with, never the key.
	Fingerprints map[string]string `json:"fingerprints,omitempty"`
	// Unprotected names what the socket takes unsigned: "" when every
	// peer family it takes is covered by a catch-all key.
	Unprotected string `json:"unprotected,omitempty"`
	// ProtectedPort: the shim, or a keyed listener, serves this port,
	// so a listener on it that takes peers unsigned is a hole. A plain
	// sshd on a port of its own (port 22 while trying the shim on 2222)
	// is not.
	ProtectedPort bool   `json:"protected_port"`
	Error         string `json:"error,omitempty"`
	port          uint16
	err           error // why inspectFD could not look
}

// Report is what Status finds.
type Report struct {
	Drops struct {
		NotFound   uint64 `json:"md5_not_found"`
		Failure    uint64 `json:"md5_failure"`
		Unexpected uint64 `json:"md5_unexpected"`
	} `json:"drops"`
	// AODrops: the TCP-AO counters, when a TCP-AO listener is found.
	AODrops *struct {
		Required    uint64 `json:"ao_required"`
		KeyNotFound uint64 `json:"ao_key_not_found"`
		Bad         uint64 `json:"ao_bad"`
	} `json:"ao_drops,omitempty"`
	Listeners []Listener `json:"listeners"`
	// OtherNetns counts matching processes in another network namespace,
	// whose keys sock_diag cannot read from here; they are skipped.
	OtherNetns int `json:"other_netns_processes"`
	// Warnings: ways plain sshd could take a protected port back, and
	// why the shim is not running.
	Warnings []string `json:"warnings"`
}

// RuntimeGlob finds the runtime directories of the sshd-md5 units, where
// a start that failed leaves its reason (shim.StateFile).
var RuntimeGlob = "/run/sshd-md5*/startup-error"

// Status reads the drop counters and the keys of every listening TCP
// socket held by a process named in ProcNames, and prints them as text
// or JSON. It fails when it finds no listener or cannot read one.
//
// The kernel knows no key names: TCP-AO keys that the server keyring at
// keyringPath ("" = keyring.DefaultServerPath()) holds, the very same key,
// are shown with their name.
func Status(w io.Writer, asJSON bool, keyringPath string) error {
	if keyringPath == "" {
		keyringPath = keyring.DefaultServerPath()
	}
	aoNamesPath = keyringPath
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
	for _, l := range r.Listeners {
		if l.Backend != "TCP-AO" {
			continue
		}
		if c, err := ao.ReadCounters(); err == nil {
			r.AODrops = &struct {
				Required    uint64 `json:"ao_required"`
				KeyNotFound uint64 `json:"ao_key_not_found"`
				Bad         uint64 `json:"ao_bad"`
			}{c.Required, c.KeyNotFound, c.Bad}
		}
		break
	}
	var failed, open []string
	protected := 0
	for _, l := range r.Listeners {
		switch {
		case l.Error != "":
			failed = append(failed, fmt.Sprintf("pid %d (%s) %s: %s", l.PID, l.Process, l.Local, l.Error))
		case l.Unprotected != "" && l.ProtectedPort:
			open = append(open, fmt.Sprintf("%s (pid %d, %s) takes %s", l.Local, l.PID, l.Process, l.Unprotected))
		}
		if l.ProtectedPort {
			protected++
		}
	}
	r.Warnings = append(startupErrors(), UnmaskedSSH(UnitRoot)...)
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
		if d := r.AODrops; d != nil {
			fmt.Fprintf(w, "TCP-AO drops in this network namespace: %d unsigned (TCPAORequired), %d unknown key ID (TCPAOKeyNotFound), %d bad MAC (TCPAOBad)\n",
				d.Required, d.KeyNotFound, d.Bad)
		}
		for _, l := range r.Listeners {
			fmt.Fprintf(w, "%s  pid %d (%s)  ", l.Local, l.PID, l.Process)
			switch {
			case l.Error != "":
				fmt.Fprintf(w, "keys unknown: %s\n", l.Error)
			case l.Keys == 0 && l.Backend == "TCP-AO" && l.Unprotected == "":
				fmt.Fprintf(w, "TCP-AO, sealed, 0 keys: takes no one\n")
			case l.Keys == 0 && !l.ProtectedPort:
				fmt.Fprintf(w, "0 keys: takes unsigned connections (a port sshd-md5-socket does not serve)\n")
			case l.Keys == 0:
				fmt.Fprintf(w, "0 keys: UNPROTECTED: takes unsigned connections on a protected port\n")
			case l.Unprotected != "":
				fmt.Fprintf(w, "%d keys: %s; UNPROTECTED: takes %s\n", l.Keys, strings.Join(l.Prefixes, ", "), l.Unprotected)
			default:
				const show = 20
				ps := l.Prefixes
				more := ""
				if len(ps) > show {
					more = fmt.Sprintf(", ... %d more", len(ps)-show)
					ps = ps[:show]
				}
				kind := ""
				if l.Backend == "TCP-AO" {
					kind = " TCP-AO" // TCP-MD5 keys print as before
				}
				fmt.Fprintf(w, "%d%s keys: %s%s\n", l.Keys, kind, strings.Join(ps, ", "), more)
			}
			printFingerprints(w, l)
		}
	}
	if !asJSON {
		if r.OtherNetns > 0 {
			fmt.Fprintf(w, "(skipped %d %s process(es) in other network namespaces; run status there, e.g. with ip netns exec or nsenter -n -t PID)\n", r.OtherNetns, strings.Join(ProcNames, "/"))
		}
		for _, warn := range r.Warnings {
			fmt.Fprintf(w, "warning: %s\n", warn)
		}
	}
	var problems []string
	if protected == 0 {
		if os.Geteuid() != 0 {
			problems = append(problems, "found no listener: reading other processes' sockets (/proc/PID/fd) needs root; run sshd-md5-socket status as root")
		} else {
			problems = append(problems, fmt.Sprintf("no listening TCP socket of a process named %s found in /proc; is the service running (in this network namespace)?", strings.Join(ProcNames, " or ")))
		}
	}
	if len(open) > 0 {
		problems = append(problems, "unprotected listener(s): "+strings.Join(open, "; "))
	}
	if len(failed) > 0 {
		problems = append(problems, "could not read the keys of "+strings.Join(failed, "; "))
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "\n"))
	}
	return nil
}

// printFingerprints lists a listener's keys one a line with their
// fingerprints, as many as the summary line names.
func printFingerprints(w io.Writer, l Listener) {
	const show = 20
	for i, p := range l.Prefixes {
		if i == show {
			fmt.Fprintf(w, "    ... %d more (--json lists them all)\n", len(l.Prefixes)-show)
			break
		}
		if fp, ok := l.Fingerprints[p]; ok {
			fmt.Fprintf(w, "    %-20s  %s\n", p, fp)
		}
	}
}

// startupErrors reports the reason a unit's last start failed, if the
// shim left one (it removes it once it serves).
func startupErrors() []string {
	var out []string
	files, _ := filepath.Glob(RuntimeGlob)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		msg := strings.TrimSpace(string(b))
		if len(msg) > 2000 {
			msg = msg[:2000] + "..."
		}
		out = append(out, fmt.Sprintf("the last start of the shim failed, so nothing listens and the port is closed (%s): %s", filepath.Dir(f), msg))
	}
	return out
}

// listeners finds the listening TCP sockets of the ProcNames processes,
// each once (a socket shared by the shim and sshd is listed for the
// lowest pid), and then every socket of any other process (systemd with a
// .socket unit, a plain sshd) that listens on one of their ports: the
// kernel lets such a socket's peers in unsigned on a port meant to be
// protected.
func listeners(ports ...uint16) ([]Listener, int, error) {
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
		ours bool
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
		ours := slices.Contains(ProcNames, comm)
		if id, err := netnsID(e.Name()); err != nil {
			continue // gone, or a kernel thread
		} else if id != self {
			if ours {
				other++
			}
			continue
		}
		ps = append(ps, proc{pid, comm, ours})
	}
	// Ours first, so that a socket shared with systemd's fd store is
	// listed for the shim or sshd, not for pid 1.
	slices.SortFunc(ps, func(a, b proc) int {
		if a.ours != b.ours {
			if a.ours {
				return -1
			}
			return 1
		}
		return a.pid - b.pid
	})
	seen := map[string]bool{}
	protected := map[uint16]bool{}
	for _, p := range ports {
		protected[p] = true
	}
	// Only listening sockets are worth a pidfd_getfd, and knowing them
	// from /proc/net lets a socket whose copy is refused (a seccomp
	// filter, as systemd-nspawn's without CAP_SYS_PTRACE) be reported
	// instead of silently missing.
	listening := listeningInodes()
	var out []Listener
	for _, p := range ps {
		dir := fmt.Sprintf("/proc/%d/fd", p.pid)
		fds, err := os.ReadDir(dir)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) || !p.ours {
				continue
			}
			return nil, 0, fmt.Errorf("listing %s: %w (reading another process's sockets needs root: run sshd-md5-socket status as root)", dir, err)
		}
		var pidfd = -1
		for _, e := range fds {
			link, err := os.Readlink(filepath.Join(dir, e.Name()))
			if err != nil || !strings.HasPrefix(link, "socket:[") || seen[link] {
				continue
			}
			local, isListening := listening[strings.TrimSuffix(strings.TrimPrefix(link, "socket:["), "]")]
			if !isListening {
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
			if errors.Is(l.err, unix.EPERM) && p.ours {
				l = Listener{Local: local.String(), port: local.Port(), Error: fmt.Sprintf("cannot copy the socket to read its keys (pidfd_getfd: %v); run status as root, with CAP_SYS_PTRACE", l.err)}
				ok = true
			}
			if !ok || (!p.ours && !protected[l.port]) {
				continue
			}
			if p.ours && (l.Keys > 0 || p.comm == ProcNames[0]) {
				protected[l.port] = true
			}
			seen[link] = true
			l.PID, l.Process = p.pid, p.comm
			out = append(out, l)
		}
		if pidfd >= 0 {
			unix.Close(pidfd)
		}
	}
	for i := range out {
		out[i].ProtectedPort = protected[out[i].port]
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
		return Listener{err: err}, false
	}
	defer unix.Close(dup)
	if acc, err := unix.GetsockoptInt(dup, unix.SOL_SOCKET, unix.SO_ACCEPTCONN); err != nil || acc == 0 {
		return Listener{}, false
	}
	ts, err := tcpsig.Inspect(dup)
	if err != nil {
		return Listener{}, false // not TCP, or MPTCP: not keyable
	}
	s := md5.Socket{Socket: ts}
	var l Listener
	if sa, err := unix.Getsockname(dup); err == nil {
		l.Local = "?"
		if ap := tcpsig.AddrPortOf(sa); ap.IsValid() {
			l.Local = ap.String()
			l.port = ap.Port()
		}
	}
	keys, err := s.Keys()
	if err != nil {
		l.Error = err.Error()
		return l, true
	}
	l.Backend = "TCP-MD5"
	sealed := false
	if len(keys) == 0 {
		// No TCP-MD5 key: a TCP-AO socket, if it is sealed
		// (ao_required) or has TCP-AO keys.
		aoKeys, err := ao.Backend.Keys(ts)
		switch {
		case err == nil:
			sealed = ao.Backend.Uncovered(ts, nil) == nil
			if sealed || len(aoKeys) > 0 {
				l.Backend, keys = "TCP-AO", aoKeys
			}
		case !ao.NoKey(err):
			l.Error = err.Error()
			return l, true
		}
	}
	l.Keys = len(keys)
	l.Prefixes = []string{}
	l.Fingerprints = map[string]string{}
	nameAO(keys)
	for _, k := range keys {
		l.Prefixes = append(l.Prefixes, k.String())
		if k.AO != nil {
			l.Fingerprints[k.String()] = fingerprint.OfAO(k.Secret)
		} else {
			l.Fingerprints[k.String()] = fingerprint.Of(k.Secret)
		}
		clear(k.Secret)
	}
	if l.Backend == "TCP-AO" {
		if !sealed {
			l.Unprotected = "peers without a TCP-AO key unsigned (not sealed with ao_required)"
		}
		return l, true
	}
	if _, unc := s.Cover(keys); len(unc) > 0 {
		var names []string
		for _, u := range unc {
			fam := "IPv4"
			if u.Addr().Is6() {
				fam = "IPv6"
			}
			names = append(names, fam)
		}
		l.Unprotected = strings.Join(names, " and ") + " peers unsigned (no catch-all key)"
	}
	return l, true
}

// listeningInodes reads /proc/net/tcp and tcp6 of this network namespace:
// the inode of every listening TCP socket, with its local address.
func listeningInodes() map[string]netip.AddrPort {
	out := map[string]netip.AddrPort{}
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			fs := strings.Fields(line)
			// sl local rem st tx:rx tr:when retr uid timeout inode
			if len(fs) < 10 || fs[3] != "0A" { // TCP_LISTEN
				continue
			}
			out[fs[9]] = procNetAddr(fs[1])
		}
	}
	return out
}

// procNetAddr parses /proc/net/tcp's "0100007F:0016": the address in
// 32-bit words of host byte order (little-endian here), the port in hex.
func procNetAddr(s string) netip.AddrPort {
	a, p, ok := strings.Cut(s, ":")
	port, err := strconv.ParseUint(p, 16, 16)
	if !ok || err != nil || (len(a) != 8 && len(a) != 32) {
		return netip.AddrPort{}
	}
	raw, err := hex.DecodeString(a)
	if err != nil {
		return netip.AddrPort{}
	}
	for i := 0; i < len(raw); i += 4 {
		raw[i], raw[i+1], raw[i+2], raw[i+3] = raw[i+3], raw[i+2], raw[i+1], raw[i]
	}
	addr, _ := netip.AddrFromSlice(raw)
	return netip.AddrPortFrom(addr, uint16(port))
}

// aoNames are the names of the server keyring's TCP-AO keys, by identity
// and secret, to label the keys the kernel reports (it knows no names).
// Loaded once; a keyring that does not load names nothing.
var aoNames = sync.OnceValue(func() map[string]string {
	kr, err := keyring.Load(aoNamesPath, keyring.Server)
	if err != nil {
		return nil
	}
	m := map[string]string{}
	for _, p := range kr.Peers {
		for _, k := range p.Keys(0) {
			if k.AO != nil {
				m[aoLabel(k)] = k.AO.Name
			}
			clear(k.Secret)
		}
	}
	return m
})

// aoNamesPath is the keyring aoNames reads (Status sets it).
var aoNamesPath string

// aoLabel identifies a key by prefix, IDs and secret (as a fingerprint):
// a name is given only to the very key the keyring holds.
func aoLabel(k tcpsig.Key) string {
	return fmt.Sprintf("%s %d %d %s", k.Prefix, k.AO.SendID, k.AO.RecvID, fingerprint.OfAO(k.Secret))
}

// nameAO names the TCP-AO keys in keys that the server keyring holds.
func nameAO(keys []tcpsig.Key) {
	for i, k := range keys {
		if k.AO == nil || k.AO.Name != "" {
			continue
		}
		if n, ok := aoNames()[aoLabel(k)]; ok {
			ao := *k.AO
			ao.Name = n
			keys[i].AO = &ao
		}
	}
}
