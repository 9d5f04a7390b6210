//go:build linux

package inspect

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// UnitRoot is the root under which UnmaskedSSH looks for unit files; a
// variable so that tests can point it at a scratch tree.
var UnitRoot = "/"

// UnmaskedSSH warns about each of Debian's plain sshd units that exists
// under root but is not masked. Conflicts= works both ways: a habitual
// `systemctl restart ssh` would stop sshd-md5 and put an unsigned sshd on
// the port. Only a mask (a link to /dev/null in /etc or /run) stops that.
func UnmaskedSSH(root string) []string {
	var out []string
	for _, u := range []string{"ssh.service", "ssh.socket"} {
		if !unitExists(root, u) || masked(root, u) {
			continue
		}
		out = append(out, fmt.Sprintf("%s is not masked: `systemctl restart ssh` (or an openssh-server upgrade) would stop sshd-md5 (Conflicts=) and start plain, unsigned sshd on port 22; run: systemctl mask ssh.service ssh.socket", u))
	}
	return out
}

func unitExists(root, unit string) bool {
	for _, d := range []string{"etc/systemd/system", "run/systemd/system", "lib/systemd/system", "usr/lib/systemd/system"} {
		if _, err := os.Lstat(filepath.Join(root, d, unit)); err == nil {
			return true
		}
	}
	return false
}

func masked(root, unit string) bool {
	for _, d := range []string{"etc/systemd/system", "run/systemd/system"} {
		if t, err := os.Readlink(filepath.Join(root, d, unit)); err == nil && t == "/dev/null" {
			return true
		}
	}
	return false
}

// hostWarnings names what, on this host, could let plain sshd or another
// unkeyed socket take the ports in listen: unmasked ssh units, and
// listening sockets on those ports that take peers unsigned, with the pid
// that holds them. Reading other processes' sockets needs root; without
// it that part is left out.
func hostWarnings(listen []string) []string {
	out := UnmaskedSSH(UnitRoot)
	var ports []uint16
	for _, a := range listen {
		if ap, err := netip.ParseAddrPort(a); err == nil {
			ports = append(ports, ap.Port())
		}
	}
	if os.Geteuid() != 0 || len(ports) == 0 {
		return out
	}
	ls, _, err := listeners(ports...)
	if err != nil {
		return out
	}
	for _, l := range ls {
		if l.Unprotected != "" && slices.Contains(ports, l.port) {
			out = append(out, fmt.Sprintf("%s is held by pid %d (%s) and takes %s: the port is not protected while it listens", l.Local, l.PID, l.Process, l.Unprotected))
		}
	}
	return out
}

// PortOwners names the processes ("sshd (pid 812)") holding a listening
// TCP socket on port in this network namespace, for messages about a
// port in use. Without root it sees only the caller's own processes.
func PortOwners(port uint16) []string {
	inodes := map[string]bool{}
	for ino, ap := range listeningInodes() {
		if ap.Port() == port {
			inodes["socket:["+ino+"]"] = true
		}
	}
	if len(inodes) == 0 {
		return nil
	}
	procs, _ := os.ReadDir("/proc")
	var out []string
	for _, e := range procs {
		if e.Name()[0] < '0' || e.Name()[0] > '9' {
			continue
		}
		dir := filepath.Join("/proc", e.Name(), "fd")
		fds, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, fd := range fds {
			if l, err := os.Readlink(filepath.Join(dir, fd.Name())); err == nil && inodes[l] {
				comm, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "comm"))
				out = append(out, fmt.Sprintf("%s (pid %s)", strings.TrimSpace(string(comm)), e.Name()))
				break
			}
		}
	}
	return out
}
