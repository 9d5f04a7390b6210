//go:build linux

package e2e

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sshmd5/sshmd5/internal/stealth"
)

// scans are nmap's scans the issue names, and what each reports for a
// port that answers every probe with a RST.
var scans = []struct{ flag, closed string }{
	{"-sS", "closed"}, {"-sT", "closed"}, {"-sA", "unfiltered"},
	{"-sF", "closed"}, {"-sN", "closed"}, {"-sX", "closed"},
}

var (
	nmapPortRE   = regexp.MustCompile(`(\d+)/([a-z|]+)/tcp`)
	ownerComment = regexp.MustCompile(`comment "sshd-md5-socket pid [^"]*"`)
)

// nmapStates runs one nmap scan of the protected and the closed port of
// dst from the attacker and returns each port's state.
func (l *lab) nmapStates(t *testing.T, scan string, dst netip.Addr) map[int]string {
	t.Helper()
	args := []string{"-n", "-Pn", "-T4", "--max-retries", "1", "-e", l.attacker.ifc, scan,
		"-p", fmt.Sprintf("%d,%d", protectedPort, closedPort), "-oG", "-"}
	if dst.Is6() {
		args = append(args, "-6")
	}
	args = append(args, dst.String())
	cmd := l.attacker.ns.Cmd("nmap", args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("nmap %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	states := map[int]string{}
	for _, m := range nmapPortRE.FindAllStringSubmatch(string(out), -1) {
		p, _ := strconv.Atoi(m[1])
		states[p] = m[2]
	}
	if len(states) != 2 {
		t.Fatalf("nmap %s: no state for both ports in:\n%s", strings.Join(args, " "), out)
	}
	return states
}

// checkScans runs every scan over IPv4 and IPv6 and fails unless the
// protected port reads exactly like the closed port; want, if not nil,
// gives the state expected of both per scan flag.
func (l *lab) checkScans(t *testing.T, want func(scan string) string) {
	t.Helper()
	for _, dst := range []netip.Addr{l.server.a4, l.server.a6} {
		for _, sc := range scans {
			st := l.nmapStates(t, sc.flag, dst)
			prot, closed := st[protectedPort], st[closedPort]
			t.Logf("nmap %s %s: protected port %d %s, closed port %d %s", sc.flag, dst, protectedPort, prot, closedPort, closed)
			if prot != closed {
				t.Errorf("nmap %s %s tells the ports apart: protected %s, closed %s", sc.flag, dst, prot, closed)
			}
			if w := want(sc.flag); w != "" && closed != w {
				t.Errorf("nmap %s %s: closed port %s, want %s", sc.flag, dst, closed, w)
			}
		}
	}
}

// probeScript sends the same probes to both ports with scapy and prints
// every field of each answer as JSON. The probes carry a DSCP with an ECN
// bit, an IPv6 flow label and options, so that reflected fields show.
const probeScript = `
import json, sys
from scapy.all import IP, IPv6, TCP, sr1, conf
conf.verb = 0
conf.iface = sys.argv[3]
dst, ports = sys.argv[1], [int(p) for p in sys.argv[2].split(",")]
kinds = [("SYN", "S"), ("ACK", "A"), ("FIN", "F"), ("NULL", ""), ("XMAS", "FPU"), ("SYN-ECE-CWR", "SEC"), ("PSH-ACK", "PA"),
         ("SYN+MD5-option", "S"), ("SYN+AO-option", "S")]
sig = {"SYN+MD5-option": [(19, b"\x00" * 16)], "SYN+AO-option": [(29, b"\x01\x01" + b"\x00" * 12)]}
out = []
for i, (kind, fl) in enumerate(kinds):
    for port in ports:
        if ":" in dst:
            ip = IPv6(dst=dst, tc=0xb9, fl=0x12345, hlim=61)
        else:
            ip = IP(dst=dst, tos=0xb9, ttl=61, id=4242)
        seg = TCP(sport=41000 + i, dport=port, flags=fl, seq=1000, ack=5000 if "A" in fl else 0, window=1024,
                  options=sig.get(kind, [("MSS", 1460), ("SAckOK", b""), ("WScale", 7)]))
        r = sr1(ip / seg / (b"x" * 10 if "P" in fl else b""), timeout=2)
        rec = {"probe": kind, "port": port}
        if r is not None and TCP in r:
            t = r[TCP]
            rec.update(flags=str(t.flags), seq=t.seq, ack=t.ack, window=t.window, options=str(t.options),
                       urgptr=t.urgptr, dataofs=t.dataofs, payload=len(t.payload))
            if IP in r:
                rec.update(ttl=r[IP].ttl, ipid=r[IP].id, df=bool(r[IP].flags.DF), tos=r[IP].tos, iplen=r[IP].len)
            else:
                rec.update(hlim=r[IPv6].hlim, tclass=r[IPv6].tc, flowlabel=r[IPv6].fl, plen=r[IPv6].plen)
        out.append(rec)
json.dump(out, sys.stdout)
`

// differsByDesign are the fields README.md ("Looking like a closed port")
// names as different, with the reason: the IPv6 flow label is a keyed
// hash over addresses and ports, and the kernel computes it over port 0.
var differsByDesign = map[string]bool{"flowlabel": true}

// compareAnswers prints a field-by-field table of the kernel's answers to
// the same probes of the protected and the closed port, and fails on any
// difference README.md does not name.
func (l *lab) compareAnswers(t *testing.T, dst netip.Addr) {
	t.Helper()
	py := "/usr/bin/python3" // Debian's, with python3-scapy
	script := filepath.Join(l.dir, "probe.py")
	if err := os.WriteFile(script, []byte(probeScript), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := l.attacker.ns.Cmd(py, script, dst.String(), fmt.Sprintf("%d,%d", protectedPort, closedPort), l.attacker.ifc)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("scapy probes (needs python3-scapy): %v\n%s", err, stderr.String())
	}
	if e := strings.TrimSpace(stderr.String()); e != "" {
		t.Logf("scapy stderr: %s", e)
	}
	var recs []map[string]any
	if err := json.Unmarshal(out, &recs); err != nil {
		t.Fatalf("scapy output: %v\n%s", err, out)
	}
	byProbe := map[string]map[int]map[string]any{}
	var order []string
	for _, r := range recs {
		p := r["probe"].(string)
		if byProbe[p] == nil {
			byProbe[p] = map[int]map[string]any{}
			order = append(order, p)
		}
		byProbe[p][int(r["port"].(float64))] = r
	}
	var b strings.Builder
	fmt.Fprintf(&b, "answers from %s, protected port %d vs closed port %d:\n", dst, protectedPort, closedPort)
	for _, p := range order {
		prot, closed := byProbe[p][protectedPort], byProbe[p][closedPort]
		pa, ca := len(prot) > 2, len(closed) > 2 // answered at all
		switch {
		case !pa && !ca:
			// A segment with a (here bogus) TCP-MD5 option: the kernel
			// drops it at a closed port too; the table leaves it alone.
			fmt.Fprintf(&b, "  %s probe: no answer from either port: equal\n", p)
			continue
		case p == "SYN+AO-option" && !pa && ca:
			// Named in README.md: the table never touches a segment that
			// claims a signature; a kernel without TCP-AO answers it at a
			// closed port.
			fmt.Fprintf(&b, "  %s probe: protected port silent, closed port %v: DIFFERS (named in README.md)\n", p, closed["flags"])
			continue
		case !ca:
			t.Errorf("%s probe of %s: the closed port did not answer", p, dst)
			continue
		case !pa:
			t.Errorf("%s probe of %s: the protected port did not answer, the closed port did (%v)", p, dst, closed["flags"])
			continue
		}
		var fields []string
		for k := range closed {
			if k != "probe" && k != "port" {
				fields = append(fields, k)
			}
		}
		sort.Strings(fields)
		fmt.Fprintf(&b, "  %s probe:\n", p)
		for _, f := range fields {
			a, c := jsonText(prot[f]), jsonText(closed[f])
			verdict := "equal"
			switch {
			case a != c && differsByDesign[f]:
				verdict = "DIFFERS (named in README.md)"
				if (a == "0") != (c == "0") {
					t.Errorf("%s probe of %s: %s is %s from the protected port, %s from the closed one: the hash must be there or absent in both", p, dst, f, a, c)
				}
			case a != c:
				verdict = "DIFFERS"
				t.Errorf("%s probe of %s: %s differs: protected %s, closed %s", p, dst, f, a, c)
			}
			fmt.Fprintf(&b, "    %-9s %-14s %-14s %s\n", f, a, c, verdict)
		}
	}
	t.Log(b.String())
}

// jsonText prints a JSON value, numbers as integers where they are.
func jsonText(v any) string {
	if f, ok := v.(float64); ok {
		return strconv.FormatFloat(f, 'f', -1, 64)
	}
	return fmt.Sprint(v)
}

func (l *lab) tableCount(t *testing.T) int {
	t.Helper()
	var n int
	if err := l.server.ns.Do(func() (err error) { n, err = stealth.Count(); return }); err != nil {
		t.Fatal(err)
	}
	return n
}

func (l *lab) signedLogin(t *testing.T, dst netip.Addr) {
	t.Helper()
	out, errb, err := l.runSSH(l.client.ns, l.sshArgs(true, dst, "-k "+l.clientKeyring, "echo", "login-ok"), 60*time.Second)
	if err != nil || out != "login-ok\n" {
		t.Fatalf("signed login to %s: %v; stdout %q; stderr:\n%s", dst, err, out, errb)
	}
}

// TestStealthClosed: with --stealth closed, nmap's six scans from an
// attacker report the protected port exactly as a closed port of the
// same host, over IPv4 and IPv6, the answers are the kernel's own field by
// field, and key holders log in as before over both families.
func TestStealthClosed(t *testing.T) {
	l := newLab(t)
	shim := l.startShim("--stealth", "closed")
	shim.WaitLog(`stealth closed: closed: unsigned segments to \[::\]:2222 get the kernel's closed-port answer`, 10*time.Second)
	if n := l.tableCount(t); n != 1 {
		t.Fatalf("%d tables inet %s, want 1", n, stealth.TableName)
	}
	l.signedLogin(t, l.server.a4)
	l.signedLogin(t, l.server.a6)
	before := l.server.ns.MD5Counters(t)
	l.checkScans(t, func(scan string) string {
		for _, sc := range scans {
			if sc.flag == scan {
				return sc.closed
			}
		}
		return ""
	})
	l.compareAnswers(t, l.server.a4)
	l.compareAnswers(t, l.server.a6)
	// The rewritten probes never reached the listener: only the two
	// SYNs with a TCP-AO option (one per family), which the table leaves
	// alone and the listener counts as lacking their MD5 option.
	d := l.server.ns.MD5Counters(t).Sub(before)
	t.Logf("server TCPMD5 counters during the scans: +%+v", d)
	if d.NotFound != 2 {
		t.Errorf("TCPMD5NotFound +%d during the scans, want 2 (the TCP-AO probes): an unsigned probe reached the listener instead of the closed-port answer, or a probe went missing", d.NotFound)
	}
	l.signedLogin(t, l.server.a4)
	// Stopped cleanly, the shim takes its table away.
	shim.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-shim.Done:
	case <-time.After(20 * time.Second):
		t.Fatal("shim did not stop on SIGTERM")
	}
	if n := l.tableCount(t); n != 0 {
		t.Errorf("after SIGTERM: %d tables inet %s, want 0", n, stealth.TableName)
	}
}

// hostFirewall is a host whose own firewall drops what it does not serve:
// the protected port is allowed, the closed port is not.
const hostFirewall = `table inet hostfw {
	chain input {
		type filter hook input priority filter; policy drop;
		ct state established,related accept
		iif lo accept
		meta l4proto { icmp, ipv6-icmp } accept
		tcp dport %d accept
	}
}`

// TestStealthDroppingHost: on a host whose firewall drops, the protected
// port reads "filtered" like every closed port, in filtered mode and in
// closed mode alike: closed mode hands the rewritten probe to the host's
// firewall as one to a closed port, and the firewall drops it.
func TestStealthDroppingHost(t *testing.T) {
	for _, mode := range []string{"filtered", "closed"} {
		t.Run(mode, func(t *testing.T) {
			l := newLab(t)
			fw := filepath.Join(l.dir, "hostfw.nft")
			if err := os.WriteFile(fw, []byte(fmt.Sprintf(hostFirewall, protectedPort)), 0o600); err != nil {
				t.Fatal(err)
			}
			l.server.ns.Run(t, "nft", "-f", fw)
			l.startShim("--stealth", mode)
			l.signedLogin(t, l.server.a4)
			l.signedLogin(t, l.server.a6)
			l.checkScans(t, func(scan string) string {
				switch scan {
				case "-sS", "-sT", "-sA":
					return "filtered"
				}
				return "open|filtered" // FIN, NULL, Xmas: no answer
			})
		})
	}
}

// TestStealthKill9: the shim killed with SIGKILL in closed mode leaves its
// table, which touches no signed segment; a restart replaces it (exactly
// one copy) and key holders log in.
func TestStealthKill9(t *testing.T) {
	l := newLab(t)
	shim := l.startShim("--stealth", "closed")
	l.signedLogin(t, l.server.a4)
	syscall.Kill(-shim.Cmd.Process.Pid, syscall.SIGKILL)
	<-shim.Done
	if n := l.tableCount(t); n != 1 {
		t.Fatalf("after kill -9: %d tables inet %s, want the one left behind", n, stealth.TableName)
	}
	// The rules, without the comment naming the owner's pid.
	listing := func() string {
		out := l.server.ns.Run(t, "nft", "list", "table", "inet", stealth.TableName)
		return ownerComment.ReplaceAllString(out, `comment "OWNER"`)
	}
	left := listing()
	for _, name := range []string{"first", "second"} {
		p := l.startShim("--stealth", "closed")
		if n := l.tableCount(t); n != 1 {
			t.Fatalf("%s restart: %d tables inet %s, want 1", name, n, stealth.TableName)
		}
		if now := listing(); now != left {
			t.Errorf("%s restart: the table is not the same one (rules added twice?):\n%s\nwant:\n%s", name, now, left)
		}
		l.signedLogin(t, l.server.a4)
		l.signedLogin(t, l.server.a6)
		st := l.nmapStates(t, "-sS", l.server.a4)
		if st[protectedPort] != "closed" {
			t.Errorf("%s restart: nmap -sS says %s for the protected port, want closed", name, st[protectedPort])
		}
		syscall.Kill(-p.Cmd.Process.Pid, syscall.SIGKILL)
		<-p.Done
	}
	// A filtered-mode start clears the table a killed closed-mode run
	// left: the mode in force is the one asked for.
	p := l.startShim("--stealth", "filtered")
	p.WaitLog(`stealth filtered: removed the table`, 10*time.Second)
	if n := l.tableCount(t); n != 0 {
		t.Errorf("filtered start after a killed closed one: %d tables, want 0", n)
	}
	l.signedLogin(t, l.server.a4)
}

// TestStealthTwoShims: closed mode serves one port per network namespace
// (the answers leave from port 0, and only one table can put a port back
// on them). A second shim asking for closed mode while the first runs
// refuses to start and says why, instead of taking the first one's table;
// a filtered one starts and leaves that table alone, an auto one falls
// back to filtered and says why; the first one's stop removes the table,
// and then auto installs closed mode.
func TestStealthTwoShims(t *testing.T) {
	l := newLab(t)
	first := l.startShim("--stealth", "closed")
	second := l.server.ns.StartProc(t, [][]byte{l.secret}, l.shimBin, "-k", l.serverKeyring, "-l", "[::]:2223", "--stealth", "closed", "--", "/bin/true")
	select {
	case <-second.Done:
	case <-time.After(20 * time.Second):
		t.Fatal("a second closed-mode shim is still running")
	}
	if !strings.Contains(second.Log(), "already has closed mode in this network namespace") || second.Err == nil {
		t.Errorf("second closed-mode shim: %v, want a refusal naming the first:\n%s", second.Err, second.Log())
	}
	filtered := l.server.ns.StartProc(t, [][]byte{l.secret}, l.shimBin, "-k", l.serverKeyring, "-l", "[::]:2224", "--stealth", "filtered", "--", "/bin/true")
	filtered.WaitLog(`serving .* in inetd mode`, 20*time.Second)
	// auto falls back to filtered, says why, and serves.
	auto := l.server.ns.StartProc(t, [][]byte{l.secret}, l.shimBin, "-k", l.serverKeyring, "-l", "[::]:2225", "--stealth", "auto", "--", "/bin/true")
	auto.WaitLog(`stealth auto: filtered \(unsigned segments get no answer\), because closed mode could not be installed: --stealth closed: sshd-md5-socket pid \d+ start \d+ already has closed mode`, 20*time.Second)
	auto.WaitLog(`serving .* in inetd mode`, 20*time.Second)
	if n := l.tableCount(t); n != 1 {
		t.Fatalf("with a closed and a filtered shim: %d tables, want the closed one's", n)
	}
	if st := l.nmapStates(t, "-sS", l.server.a4); st[protectedPort] != "closed" {
		t.Errorf("after the other shims started, nmap -sS says %s for the closed-mode port, want closed", st[protectedPort])
	}
	l.signedLogin(t, l.server.a4)
	first.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-first.Done:
	case <-time.After(20 * time.Second):
		t.Fatal("shim did not stop on SIGTERM")
	}
	if n := l.tableCount(t); n != 0 {
		t.Errorf("after the closed-mode shim stopped: %d tables, want 0", n)
	}
	// With the namespace free, auto installs closed mode.
	auto2 := l.server.ns.StartProc(t, [][]byte{l.secret}, l.shimBin, "-k", l.serverKeyring, "-l", "[::]:2226", "--stealth", "auto", "--", "/bin/true")
	auto2.WaitLog(`stealth auto: closed: unsigned segments to \[::\]:2226 get the kernel's closed-port answer`, 20*time.Second)
	if n := l.tableCount(t); n != 1 {
		t.Errorf("auto with the namespace free: %d tables, want 1", n)
	}
}
