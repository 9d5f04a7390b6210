//go:build bench && linux

package bench

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sshmd5/sshmd5/internal/stealth"
	"github.com/sshmd5/sshmd5/internal/testnet"
)

const (
	stSection   = "SYN flood, stealth modes"
	stCtTimeout = 3 * time.Second
)

// stHostFirewall makes the server a host with a stateful firewall, so
// that conntrack runs in its namespace and the benchmark can show what a
// flood does to the conntrack table in each mode.
const stHostFirewall = `table inet hostct {
	chain input {
		type filter hook input priority filter; policy accept;
		ct state established,related accept
	}
}`

// BenchmarkStealthFlood: the SYN flood of BenchmarkSYNFlood, aimed at the
// shim's port in --stealth filtered and --stealth closed, on a server
// whose stateful firewall has conntrack running. The shim runs in
// filtered mode; closed mode is switched on and off between batches with
// the same stealth.Install and stealth.RemoveStale calls the shim makes, so
// that the modes alternate round by round without restarting anything.
func BenchmarkStealthFlood(b *testing.B) {
	testnet.RequireRoot(b)
	dir := b.TempDir()
	proxy := testnet.BuildBinary(b, "cmd/ssh-md5-proxy")
	shimBin := testnet.BuildBinary(b, "cmd/sshd-md5-socket")
	server := testnet.NewNS(b, "stsrv")
	client := testnet.NewNS(b, "stcli")
	attacker := testnet.NewNS(b, "statk")
	cl := testnet.Connect(b, client, server)
	al := testnet.Connect(b, attacker, server)
	fw := filepath.Join(dir, "hostct.nft")
	flWrite(b, fw, []byte(stHostFirewall))
	server.Run(b, "nft", "-f", fw)

	secret := flSecret(b)
	keyFile := filepath.Join(dir, "md5.key")
	flWrite(b, keyFile, secret)
	serverKeyring := filepath.Join(dir, "server.toml")
	testnet.Keyring{Peers: testnet.Both(keyFile)}.Write(b, serverKeyring)
	clientKeyring := filepath.Join(dir, "client.toml")
	testnet.Keyring{Hosts: []testnet.Entry{testnet.Host(cl.AddrB4.String(), keyFile)}}.Write(b, clientKeyring)
	sshd := testnet.NewSSHD(b, "SetEnv SHLVL=1")
	shim := startProc(b, server, filepath.Base(shimBin), secret, shimBin,
		append([]string{"-k", serverKeyring, "-l", "[::]:" + strconv.Itoa(flPort), "--stealth", "filtered", "--"}, sshd.InetdArgs()...)...)
	shim.WaitLog(`serving .* in inetd mode`, 20*time.Second)
	shimPID := shim.Cmd.Process.Pid
	sshArgs := append(sshd.SSHArgs(), "-p", strconv.Itoa(flPort),
		"-o", "ProxyCommand="+proxy+" -k "+clientKeyring+" %h %p",
		"root@"+cl.AddrB4.String(), "true")
	login := func() float64 { return flLogin(b, client, sshArgs, secret) }

	ls := []stealth.Listener{{Addr: netip.IPv6Unspecified(), Port: flPort, IPv4: true, IPv6: true}}
	// mode: 0 filtered, 1 closed, 2 closed with no effective rate limit
	// (to show what bounds the answers without one).
	setMode := func(mode int) {
		err := server.Do(func() error {
			switch mode {
			case 1:
				_, err := stealth.Install(ls, stealth.Options{})
				return err
			case 2:
				_, err := stealth.Install(ls, stealth.Options{Rate: 1 << 30, Burst: 1 << 30})
				return err
			}
			_, err := stealth.RemoveStale()
			return err
		})
		if err != nil {
			b.Fatalf("stealth mode %d: %v", mode, err)
		}
	}
	// SYN_SENT entries live 120 s by default; stCtTimeout here, and each
	// batch waits that long first, so that each batch's count is its own.
	server.Run(b, "sysctl", "-q", "-w", fmt.Sprintf("net.netfilter.nf_conntrack_tcp_timeout_syn_sent=%d", int(stCtTimeout/time.Second)))
	ctMax := strings.TrimSpace(server.Run(b, "cat", "/proc/sys/net/netfilter/nf_conntrack_max"))
	b.Cleanup(func() { _ = server.Do(func() error { _, err := stealth.RemoveStale(); return err }) })
	for i := 0; i < 2; i++ {
		login()
	}

	perBatch := 3
	if Quick() {
		perBatch = 2
	}
	type stats struct {
		ms, shimCPU, busy, soft, rstRate, ctNew, dropRate, sent []float64
	}
	var quiet, filtered, closed, unlimited stats
	batch := func(st *stats, flood bool, mode int) {
		setMode(mode)
		time.Sleep(stCtTimeout + 500*time.Millisecond) // the last batch's entries expire
		md0, rst0 := server.MD5Counters(b), stOutRsts(b, server)
		var h *flHping
		if flood {
			h = flStartHping(b, attacker, al.IfA, al.AddrB4.String(), flPort)
		}
		t0 := time.Now()
		time.Sleep(flSettle)
		c0, s0, w0 := flProcCPU(b, shimPID), flHostCPU(b), time.Now()
		time.Sleep(flCPUWindow)
		c1, s1, w1 := flProcCPU(b, shimPID), flHostCPU(b), time.Now()
		soft, busy := s1.sub(s0)
		for i := 0; i < perBatch; i++ {
			st.ms = append(st.ms, login())
		}
		el := time.Since(t0)
		if flood {
			n, e := h.stop(b)
			el = e
			st.sent = append(st.sent, float64(n))
		}
		md := server.MD5Counters(b).Sub(md0)
		st.shimCPU = append(st.shimCPU, float64(c1-c0)*1000/flClockTicks*(10/w1.Sub(w0).Seconds()))
		st.busy, st.soft = append(st.busy, busy), append(st.soft, soft)
		st.rstRate = append(st.rstRate, float64(stOutRsts(b, server)-rst0)/el.Seconds())
		st.ctNew = append(st.ctNew, float64(stLiveEntries(b, server, flPort)))
		st.dropRate = append(st.dropRate, float64(md.NotFound)/el.Seconds())
		setMode(0)
	}
	Alternate(b, Rounds(),
		func() float64 { batch(&quiet, false, 0); return 0 },
		func() float64 { batch(&filtered, true, 0); return 0 },
		func() float64 { batch(&closed, true, 1); return 0 },
		func() float64 { batch(&unlimited, true, 2); return 0 },
	)

	rec := func(c, unit string, xs []float64, against, note string) {
		Record(b, Result{Section: stSection, Link: flLink, Case: c, Unit: unit, Samples: xs, Against: against, Note: note})
	}
	rec("login, no flood", "ms", quiet.ms, "", "signed ssh login running `true` through ssh-md5-proxy and the shim, wall time")
	rec("login, flood, filtered", "ms", filtered.ms, "login, no flood", "")
	rec("login, flood, closed", "ms", closed.ms, "login, no flood", "")
	rec("login, flood, closed, no limit", "ms", unlimited.ms, "login, no flood", "")
	rec("host busy, no flood", "%", quiet.busy, "", "non-idle share of all CPU time from /proc/stat over the CPU window; hping3 runs on this host too")
	rec("host busy, flood, filtered", "%", filtered.busy, "host busy, no flood", "")
	rec("host busy, flood, closed", "%", closed.busy, "host busy, no flood", "")
	rec("host busy, flood, closed, no limit", "%", unlimited.busy, "host busy, no flood", "")
	rec("softirq, flood, filtered", "%", filtered.soft, "", "")
	rec("softirq, flood, closed", "%", closed.soft, "softirq, flood, filtered", "")
	rec("softirq, flood, closed, no limit", "%", unlimited.soft, "softirq, flood, filtered", "")
	rec("shim CPU, flood, filtered", "ms CPU/10 s", filtered.shimCPU, "", "")
	rec("shim CPU, flood, closed", "ms CPU/10 s", closed.shimCPU, "", "")
	rec("shim CPU, flood, closed, no limit", "ms CPU/10 s", unlimited.shimCPU, "", "")
	rec("RSTs sent, flood, filtered", "RST/s", filtered.rstRate, "", "server namespace's Tcp OutRsts over the flood, per second")
	rec("RSTs sent, flood, closed", "RST/s", closed.rstRate, "", fmt.Sprintf("bounded by the table's limit, %d/s with a burst of %d", stealth.DefaultRate, stealth.DefaultBurst))
	rec("RSTs sent, flood, closed, no limit", "RST/s", unlimited.rstRate, "", "the table's limit raised to 2^30/s: nothing else bounds the answers")
	rec("silently dropped, flood, filtered", "SYN/s", filtered.dropRate, "", "TCPMD5NotFound per second: SYNs that reached the keyed listener")
	rec("silently dropped, flood, closed", "SYN/s", closed.dropRate, "", "over the rate limit the SYN goes on to the listener, which drops it")
	rec("conntrack entries, no flood", "entries", quiet.ctNew, "", "live entries for the shim's port at the end of the batch (/proc/net/nf_conntrack, server namespace; nf_conntrack_max "+ctMax+")")
	rec("conntrack entries, flood, filtered", "entries", filtered.ctNew, "", "")
	rec("conntrack entries, flood, closed", "entries", closed.ctNew, "", "")
	rec("conntrack entries, flood, closed, no limit", "entries", unlimited.ctNew, "", "")
	rec("SYNs sent per flood, filtered", "SYNs", filtered.sent, "", "")
	rec("SYNs sent per flood, closed", "SYNs", closed.sent, "", "")
	rec("SYNs sent per flood, closed, no limit", "SYNs", unlimited.sent, "", "")
	SectionNote(stSection, fmt.Sprintf("Same three namespaces and flood as \"SYN flood\", but the server also runs a stateful firewall (`ct state established,related accept` in an input chain), so conntrack tracks what the host does not exempt. "+
		"Each round runs a quiet batch and flood batches in filtered mode, closed mode, and closed mode with the table's rate limit raised out of reach, rotating the order; closed mode is switched on for its batch with stealth.Install, as the shim does, and off after. "+
		"The server namespace's SYN_SENT timeout is %v here (default 120 s) and each batch waits that long first, so that its count is its own. "+
		"In filtered mode every unsigned SYN of the flood makes a conntrack entry (SYN_SENT, 120 s by default): %.0f live at the end of the flood (median; nf_conntrack_max %s; hping3 floods from one address and its source port wraps at 65536, so that is about one entry per distinct source port: a flood with forged sources makes one per SYN, up to nf_conntrack_max), against %.0f in closed mode, whose table marks unsigned segments untracked, the ones over the rate limit included; signed logins got through either way. "+
		"Closed mode answered a median %.0f RST/s (limit %d/s, burst %d). With the limit out of reach it answered %.0f RST/s, one per SYN that arrived: the kernel limits neither closed-port RSTs nor these (net.ipv4.icmp_ratelimit covers ICMP only), so without the table's limit the answers go out at the flood's rate, to whatever source addresses the flood forged.",
		stCtTimeout, Percentile(filtered.ctNew, 50), ctMax, Percentile(closed.ctNew, 50), Percentile(closed.rstRate, 50), stealth.DefaultRate, stealth.DefaultBurst, Percentile(unlimited.rstRate, 50)))
	rq := Percentile(quiet.ms, 50)
	SectionNote(stSection, fmt.Sprintf("Login latency during the flood as a ratio to quiet (medians): filtered %.2fx, closed %.2fx, closed without limit %.2fx. The flood and the attacker share this 2-CPU host with the logins (and with other work on the machine), so the ratios mostly measure CPU contention; read them against each other and against their spread, not as absolute costs.",
		Percentile(filtered.ms, 50)/rq, Percentile(closed.ms, 50)/rq, Percentile(unlimited.ms, 50)/rq))
	if strings.Contains(shim.Log(), "closed unsigned connection") {
		SectionNote(stSection, "The shim logged a closed unsigned connection during the run: investigate.")
	}
}

// stOutRsts reads Tcp OutRsts from the namespace's /proc/net/snmp.
func stOutRsts(b *testing.B, ns *testnet.NS) uint64 {
	b.Helper()
	out := ns.Run(b, "cat", "/proc/net/snmp")
	var head []string
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) == 0 || f[0] != "Tcp:" {
			continue
		}
		if head == nil {
			head = f
			continue
		}
		for i, h := range head {
			if h == "OutRsts" && i < len(f) {
				n, _ := strconv.ParseUint(f[i], 10, 64)
				return n
			}
		}
	}
	b.Fatalf("no Tcp OutRsts in /proc/net/snmp of %s", ns.Name)
	return 0
}

// stLiveEntries counts the live conntrack entries whose original
// destination port is port (the procfs listing skips expired entries,
// which nf_conntrack_count still counts until garbage collection).
func stLiveEntries(b *testing.B, ns *testnet.NS, port int) int {
	b.Helper()
	out := ns.Run(b, "sh", "-c", fmt.Sprintf("grep -c ' dport=%d ' /proc/net/nf_conntrack || true", port))
	n, err := strconv.Atoi(strings.TrimSpace(out))
	if err != nil {
		b.Fatalf("counting conntrack entries in %s: %q", ns.Name, out)
	}
	return n
}
