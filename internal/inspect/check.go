//go:build linux

// Package inspect reports on a server's TCP-MD5 setup for operators:
// what a keyring would install (Check) and what the running listeners
// carry (Status). It never prints key material.
package inspect

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strconv"
	"strings"

	"github.com/sshmd5/sshmd5/internal/fingerprint"
	"github.com/sshmd5/sshmd5/internal/keyring"
	"github.com/sshmd5/sshmd5/internal/listenaddr"
	"github.com/sshmd5/sshmd5/internal/plan"
	"github.com/sshmd5/sshmd5/internal/tcpsig"
	"github.com/sshmd5/sshmd5/internal/tcpsig/md5"
)

// KeyMemEstimate is roughly what one key costs in the socket's option
// memory (net.core.optmem_max): about 960 keys fit in 128 KiB.
const KeyMemEstimate = 136

// DefaultListen is the listener Check assumes when given none: one
// dual-stack socket, as -l [::]:22 opens.
const DefaultListen = "[::]:22"

// Paths of the sysctls Check reads; variables so tests can point them
// elsewhere.
var (
	OptmemMaxPath  = "/proc/sys/net/core/optmem_max"
	BindV6OnlyPath = "/proc/sys/net/ipv6/bindv6only"
)

// Check loads the keyring at path, prints what sshd-md5-socket would
// install on each of the listen addresses (DefaultListen if none), and
// returns an error naming every reason it would refuse to start.
func Check(w io.Writer, path string, listen []string) error {
	if path == "" {
		path = keyring.DefaultServerPath()
	}
	if len(listen) == 0 {
		listen = []string{DefaultListen}
	}
	addrs, err := listenaddr.Parse(listen)
	if err != nil {
		return err
	}
	socks := make([]tcpsig.Socket, len(addrs))
	for i, a := range addrs {
		socks[i] = a.Socket
	}
	pl, err := plan.Load(path)
	if err != nil {
		return err // names the file and the fix
	}
	kr := pl.Ring
	var nAO int
	aoEntry := map[bool]string{} // IPv4? -> a TCP-AO entry of that family
	for _, p := range kr.Peers {
		nAO += len(p.AO)
		if is4 := p.Prefix.Addr().Is4(); p.IsAO() && aoEntry[is4] == "" {
			aoEntry[is4] = p.Where(path)
		}
	}
	if nAO > 0 {
		fmt.Fprintf(w, "keyring %s: %d [peers] entries, %d TCP-AO keys\n", path, len(kr.Peers), nAO)
	} else {
		fmt.Fprintf(w, "keyring %s: %d [peers] entries\n", path, len(kr.Peers))
	}
	// Client-side entries do not stop the shim; say what is wrong with
	// them all the same.
	for _, warn := range kr.Warnings {
		fmt.Fprintf(w, "warning: %v (ignored: sshd-md5-socket uses only [peers])\n", warn)
	}
	// The shim stops at the first of these; check names them all.
	var problems []string
	for _, r := range pl.Refusals {
		problems = append(problems, r.Error())
	}
	for _, p := range pl.Peers {
		fam := "IPv6"
		if p.Prefix.Addr().Is4() {
			fam = "IPv4"
		}
		iface := "any interface"
		if p.Interface != "" {
			iface = "interface " + p.Interface
		}
		if p.Err != nil {
			if errors.Is(p.Err, md5.ErrNotVRF) {
				iface += " (NOT A VRF)"
			} else {
				iface += " (MISSING)"
			}
		}
		if !p.IsAO() {
			fmt.Fprintf(w, "  %-4s  %-20s  %-20s  %s  %s\n", fam, p.Prefix, iface, fingerprint.Of(p.Secret), p.Source)
			continue
		}
		// One line per user's key: who, the IDs the peer must use (its
		// send_id is our recv_id) and the MAC, never the key.
		for _, a := range p.AO {
			fmt.Fprintf(w, "  %-4s  %-20s  %-20s  %s  %s: send_id %d, recv_id %d, %s, %d-byte MAC  %s\n",
				fam, p.Prefix, iface, fingerprint.OfAO(a.Secret), a.Name, a.SendID, a.RecvID, a.Algorithm, a.MACLen, a.Source)
		}
	}

	optmem, optErr := readInt(OptmemMaxPath)
	for i, s := range socks {
		lp := pl.For(s)
		apply, uncovered := lp.Apply, lp.Uncovered
		var n4, n6 int
		for _, k := range apply {
			if k.Prefix.Addr().Is4() {
				n4++
			} else {
				n6++
			}
		}
		isAO := lp.Backend != nil && lp.Backend.Name() == "TCP-AO"
		kind := "" // TCP-MD5 listeners print as they always have
		if isAO {
			kind = "TCP-AO, "
		}
		fmt.Fprintf(w, "listener %s (%s peers): %s%d keys", addrs[i], s.Families(), kind, len(apply))
		var counts, cover []string
		if s.Takes4 {
			counts = append(counts, fmt.Sprintf("IPv4 %d", n4))
		}
		if s.Takes6 {
			counts = append(counts, fmt.Sprintf("IPv6 %d", n6))
		}
		fmt.Fprintf(w, " (%s)\n", strings.Join(counts, ", "))
		for _, fam := range []struct {
			takes bool
			name  string
			all   netip.Prefix
		}{{s.Takes4, "IPv4", netip.MustParsePrefix("0.0.0.0/0")}, {s.Takes6, "IPv6", netip.MustParsePrefix("::/0")}} {
			if !fam.takes {
				continue
			}
			state := "covered by " + fam.all.String()
			if isAO {
				state = "sealed (ao_required): a peer without one of its TCP-AO keys gets no answer"
			}
			for _, u := range uncovered {
				if u == fam.all {
					state = "NOT COVERED: peers outside the listed prefixes would connect unsigned"
				}
			}
			cover = append(cover, fmt.Sprintf("    %s: %s", fam.name, state))
		}
		fmt.Fprintln(w, strings.Join(cover, "\n"))
		if lp.Err != nil {
			problems = append(problems, fmt.Sprintf("listener %s: %v", addrs[i], lp.Err))
		}
		// The keyring allows one backend per family; a plan that gives a
		// listener of a TCP-AO family another one would leave it unsealed
		// or unkeyed: never "ok".
		for _, fam := range []struct {
			takes, is4 bool
			name       string
		}{{s.Takes4, true, "IPv4"}, {s.Takes6, false, "IPv6"}} {
			if fam.takes && aoEntry[fam.is4] != "" && (lp.Backend == nil || lp.Backend.Name() != "TCP-AO") {
				backend := "no backend"
				if lp.Backend != nil {
					backend = lp.Backend.Name()
				}
				problems = append(problems, fmt.Sprintf("listener %s: its %s peers have TCP-AO keys (%s) but it would get %s; this sshd-md5-socket cannot serve TCP-AO entries: use TCP-MD5 ones (key_file) for %s", addrs[i], fam.name, aoEntry[fam.is4], backend, fam.name))
				break
			}
		}
		mem := len(apply) * KeyMemEstimate
		switch {
		case optErr != nil:
			fmt.Fprintf(w, "    key memory: about %d bytes; net.core.optmem_max unknown (%v)\n", mem, optErr)
		case mem > optmem:
			fmt.Fprintf(w, "    key memory: about %d bytes > net.core.optmem_max %d: TOO SMALL\n", mem, optmem)
			problems = append(problems, fmt.Sprintf("listener %s: %d keys need about %d bytes of net.core.optmem_max (%d); raise it, e.g. sysctl -w net.core.optmem_max=%d", addrs[i], len(apply), mem, optmem, roundUp(2*mem)))
		default:
			fmt.Fprintf(w, "    key memory: about %d bytes of net.core.optmem_max %d: ok\n", mem, optmem)
		}
		if isAO {
			// TCP_AO_GET_KEYS reports any number of keys.
			fmt.Fprintf(w, "    read-back: %d keys: ok\n", len(apply))
		} else if len(apply) > md5.MaxReadableKeys {
			fmt.Fprintf(w, "    read-back: %d keys > %d that sock_diag can report: reloads compare with what the shim installed;\n"+
				"      under systemd, restart the .socket unit together with the service (a restart of the service alone is refused)\n", len(apply), md5.MaxReadableKeys)
		} else {
			fmt.Fprintf(w, "    read-back: %d keys of at most %d: ok\n", len(apply), md5.MaxReadableKeys)
		}
	}
	if v, err := readInt(BindV6OnlyPath); err != nil {
		fmt.Fprintf(w, "net.ipv6.bindv6only: unknown (%v)\n", err)
	} else {
		what := "0: a [::] socket passed by systemd takes IPv4 peers too (unless BindIPv6Only=ipv6-only)"
		if v != 0 {
			what = strconv.Itoa(v) + ": a [::] socket passed by systemd takes IPv6 peers only (unless BindIPv6Only=both); -l [::] takes both anyway"
		}
		fmt.Fprintf(w, "net.ipv6.bindv6only = %s\n", what)
	}
	for _, warn := range hostWarnings(listen) {
		fmt.Fprintf(w, "warning: %s\n", warn)
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "\n"))
	}
	fmt.Fprintln(w, "ok: sshd-md5-socket would start with this keyring")
	return nil
}

func readInt(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	return n, nil
}

// roundUp rounds n up to a multiple of 64 KiB, for a sysctl suggestion.
func roundUp(n int) int {
	const step = 64 << 10
	return (n + step - 1) / step * step
}
