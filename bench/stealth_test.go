//go:build bench

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

const stSection = "SYN flood, stealth modes"

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
// the same stealth.Install and stealth.RemoveAny calls the shim makes, so
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
	flWrite(b, serverKeyring, []byte(fmt.Sprintf("[peers.\"0.0.0.0/0\"]\nkey_file = %q\n[peers.\"::/0\"]\nkey_file = %q\n", keyFile, keyFile)))
	clientKeyring := filepath.Join(dir, "client.toml")
	flWrite(b, clientKeyring, []byte(fmt.Sprintf("[hosts.%q]\nkey_file = %q\n", cl.AddrB4.String(), keyFile)))
	sshd := testnet.NewSSHD(b, "SetEnv SHLVL=1")
	shim := startProc(b, server, filepath.Base(shimBin), secret, shimBin,
		append([]string{"-k", serverKeyring, "-l", "[::]:" + strconv.Itoa(flPort), "--stealth", "filtered", "--"}, sshd.InetdArgs()...)...)
	shim.waitLog(`serving .* in inetd mode`, 20*time.Second)
	shimPID := shim.cmd.Process.Pid
	sshArgs := append(sshd.SSHArgs(), "-p", strconv.Itoa(flPort),
		"-o", "ProxyCommand="+proxy+" -k "+clientKeyring+" %h %p",
		"root@"+cl.AddrB4.String(), "true")
	login := func() float64 { return flLogin(b, client, sshArgs, secret) }

	ls := []stealth.Listener{{Addr: netip.IPv6Unspecified(), Port: flPort, IPv4: true, IPv6: true}}
	setClosed := func(on bool) {
		err := server.Do(func() error {
			if on {
				_, err := stealth.Install(ls, stealth.Options{})
				return err
			}
			return stealth.RemoveAny()
		})
		if err != nil {
			b.Fatalf("stealth closed=%v: %v", on, err)
		}
	}
	b.Cleanup(func() { _ = server.Do(stealth.RemoveAny) })
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
	var quiet, filtered, closed stats
	batch := func(st *stats, flood, closedMode bool) {
		setClosed(closedMode)
		md0, rst0, ct0 := server.MD5Counters(b), stOutRsts(b, server), stConntrack(b, server)
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
		st.ctNew = append(st.ctNew, float64(stConntrack(b, server))-float64(ct0))
		st.dropRate = append(st.dropRate, float64(md.NotFound)/el.Seconds())
		setClosed(false)
	}
	Alternate(b, Rounds(),
		func() float64 { batch(&quiet, false, false); return 0 },
		func() float64 { batch(&filtered, true, false); return 0 },
		func() float64 { batch(&closed, true, true); return 0 },
	)

	rec := func(c, unit string, xs []float64, against, note string) {
		Record(b, Result{Section: stSection, Link: flLink, Case: c, Unit: unit, Samples: xs, Against: against, Note: note})
	}
	rec("login, no flood", "ms", quiet.ms, "", "signed ssh login running `true` through ssh-md5-proxy and the shim, wall time")
	rec("login, flood, filtered", "ms", filtered.ms, "login, no flood", "")
	rec("login, flood, closed", "ms", closed.ms, "login, no flood", "")
	rec("host busy, no flood", "%", quiet.busy, "", "non-idle share of all CPU time from /proc/stat over the CPU window; hping3 runs on this host too")
	rec("host busy, flood, filtered", "%", filtered.busy, "host busy, no flood", "")
	rec("host busy, flood, closed", "%", closed.busy, "host busy, no flood", "")
	rec("softirq, flood, filtered", "%", filtered.soft, "", "")
	rec("softirq, flood, closed", "%", closed.soft, "softirq, flood, filtered", "")
	rec("shim CPU, flood, filtered", "ms CPU/10 s", filtered.shimCPU, "", "")
	rec("shim CPU, flood, closed", "ms CPU/10 s", closed.shimCPU, "", "")
	rec("RSTs sent, flood, filtered", "RST/s", filtered.rstRate, "", "server namespace's Tcp OutRsts over the flood, per second")
	rec("RSTs sent, flood, closed", "RST/s", closed.rstRate, "", fmt.Sprintf("bounded by the table's limit, %d/s with a burst of %d", stealth.DefaultRate, stealth.DefaultBurst))
	rec("silently dropped, flood, filtered", "SYN/s", filtered.dropRate, "", "TCPMD5NotFound per second: SYNs that reached the keyed listener")
	rec("silently dropped, flood, closed", "SYN/s", closed.dropRate, "", "over the rate limit the SYN goes on to the listener, which drops it")
	rec("new conntrack entries, flood, filtered", "entries", filtered.ctNew, "", "nf_conntrack_count after minus before the flood, server namespace")
	rec("new conntrack entries, flood, closed", "entries", closed.ctNew, "", "")
	rec("SYNs sent per flood, filtered", "SYNs", filtered.sent, "", "")
	rec("SYNs sent per flood, closed", "SYNs", closed.sent, "", "")
	SectionNote(stSection, fmt.Sprintf("Same three namespaces and flood as \"SYN flood\", but the server also runs a stateful firewall (`ct state established,related accept` in an input chain), so conntrack sees every segment the host tracks. "+
		"Each round runs a quiet batch, a flood batch in filtered mode and a flood batch in closed mode, rotating the order; closed mode is switched on for its batch with stealth.Install, as the shim does, and off after. "+
		"In filtered mode every unsigned SYN of the flood gets a conntrack entry (SYN_SENT, 120 s): median %.0f new entries per flood, against %.0f in closed mode, whose table marks unsigned segments untracked, the ones over the rate limit included. "+
		"Closed mode answered a median %.0f RST/s (limit %d/s, burst %d); the kernel itself limits neither closed-port RSTs nor these (net.ipv4.icmp_ratelimit covers ICMP only), so without the limit the answers would go out at the flood's rate, to whatever source addresses the flood forged.",
		Percentile(filtered.ctNew, 50), Percentile(closed.ctNew, 50), Percentile(closed.rstRate, 50), stealth.DefaultRate, stealth.DefaultBurst))
	if strings.Contains(shim.log(), "closed unsigned connection") {
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

// stConntrack reads the namespace's conntrack entry count.
func stConntrack(b *testing.B, ns *testnet.NS) uint64 {
	b.Helper()
	out := ns.Run(b, "cat", "/proc/sys/net/netfilter/nf_conntrack_count")
	n, err := strconv.ParseUint(strings.TrimSpace(out), 10, 64)
	if err != nil {
		b.Fatalf("nf_conntrack_count of %s: %q", ns.Name, out)
	}
	return n
}
