//go:build linux

// Package e2e holds end-to-end scenarios: real Debian OpenSSH (ssh with
// ssh-md5-proxy as ProxyCommand, sshd -i behind sshd-md5-socket), real
// network namespaces on one Ethernet segment, and assertions on the wire
// (tcpdump, signatures checked with -M) and on the kernel's TCPMD5*
// counters. See README.md.
package e2e

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sshmd5/sshmd5/internal/testnet"
)

// Ports used inside the test's own namespaces.
const (
	protectedPort = 2222 // sshd-md5-socket, keyed for 0.0.0.0/0 and ::/0
	plainPort     = 2022 // unkeyed listener with sshd -i: the control
	closedPort    = 2999 // nothing listens
)

// host is one namespace plugged into the lab's bridge.
type host struct {
	ns     *testnet.NS
	ifc    string // interface name inside ns
	a4, a6 netip.Addr
}

// lab is one Ethernet segment (a Linux bridge in its own namespace "lan")
// with a client, a server and an attacker on it, all in one /24 and one
// ULA /64. The bridge floods every frame (ageing_time 0, a hub), so the
// attacker sees the client's and the server's traffic as an attacker on a
// shared segment (or a tapped link) would.
type lab struct {
	t                        *testing.T
	lan                      *testnet.NS
	client, server, attacker *host
	sshd                     *testnet.SSHD
	dir                      string
	secret                   []byte // server and client key; never printed
	serverKeyring            string
	clientKeyring            string
	proxy                    string // ssh-md5-proxy binary
	shimBin                  string // sshd-md5-socket binary
	shim                     *testnet.Proc
	nextHost                 byte
	net4                     [2]byte
}

func newLab(t *testing.T) *lab {
	t.Helper()
	testnet.RequireRoot(t)
	for _, b := range []string{"hping3", "tcpdump", "ssh", "ip"} {
		if _, err := exec.LookPath(b); err != nil {
			t.Fatalf("required program %s not found: %v", b, err)
		}
	}
	l := &lab{t: t, dir: t.TempDir(), nextHost: 1}
	// 10.150.0.0 - 10.199.255.0: apart from testnet.Connect's range.
	var r [2]byte
	rand.Read(r[:])
	l.net4 = [2]byte{150 + r[0]%50, r[1]}
	l.proxy = testnet.BuildBinary(t, "cmd/ssh-md5-proxy")
	l.shimBin = testnet.BuildBinary(t, "cmd/sshd-md5-socket")
	l.lan = testnet.NewNS(t, "lan")
	l.lan.Run(t, "ip", "link", "add", "br0", "type", "bridge", "stp_state", "0", "ageing_time", "0")
	l.lan.Run(t, "ip", "link", "set", "br0", "up")
	l.client = l.plug(testnet.NewNS(t, "client"))
	l.server = l.plug(testnet.NewNS(t, "server"))
	l.attacker = l.plug(testnet.NewNS(t, "attacker"))
	l.sshd = testnet.NewSSHD(t)
	l.secret = newSecret()
	l.serverKeyring = l.writeKeyring("server", "peers", l.secret, "0.0.0.0/0", "::/0")
	l.clientKeyring = l.writeKeyring("client", "hosts", l.secret, l.server.a4.String(), l.server.a6.String())
	return l
}

// plug connects ns to the bridge and addresses it with the next host
// number.
func (l *lab) plug(ns *testnet.NS) *host {
	t := l.t
	t.Helper()
	n := l.nextHost
	l.nextHost++
	id := "e2" + testnet.RandHex(4)
	h := &host{
		ns:  ns,
		ifc: "eth0",
		a4:  netip.AddrFrom4([4]byte{10, l.net4[0], l.net4[1], n}),
		a6:  netip.MustParseAddr(fmt.Sprintf("fd00:e2e:%x:%x::%x", l.net4[0], l.net4[1], n)),
	}
	if out, err := exec.Command("ip", "link", "add", id+"p", "netns", l.lan.Name,
		"type", "veth", "peer", "name", id+"h", "netns", ns.Name).CombinedOutput(); err != nil {
		t.Fatalf("create veth: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "-n", l.lan.Name, "link", "del", id+"p").Run() })
	ns.Run(t, "ip", "link", "set", id+"h", "name", h.ifc)
	l.lan.Run(t, "ip", "link", "set", id+"p", "master", "br0")
	l.lan.Run(t, "ip", "link", "set", id+"p", "up")
	ns.Run(t, "ip", "addr", "add", h.a4.String()+"/24", "dev", h.ifc)
	ns.Run(t, "ip", "-6", "addr", "add", h.a6.String()+"/64", "dev", h.ifc, "nodad")
	ns.Run(t, "ip", "link", "set", h.ifc, "up")
	deadline := time.Now().Add(10 * time.Second)
	for {
		out := ns.Run(t, "ip", "-o", "link", "show", h.ifc)
		if strings.Contains(out, "state UP") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s in %s not up after 10s: %s", h.ifc, ns.Name, out)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return h
}

// newSecret returns a random printable secret (tcpdump -M takes a string).
func newSecret() []byte { return testnet.NewSecret() }

// writeKeyring writes a 0600 key file and a 0600 keyring with one table
// per name in section ("peers" for the shim, "hosts" for the proxy).
func (l *lab) writeKeyring(label, section string, secret []byte, names ...string) string {
	l.t.Helper()
	kf := filepath.Join(l.dir, label+".key")
	writeAtomic(l.t, kf, secret)
	var kr testnet.Keyring
	for _, n := range names {
		if section == "peers" {
			kr.Peers = append(kr.Peers, testnet.Peer(n, kf))
		} else {
			kr.Hosts = append(kr.Hosts, testnet.Host(n, kf))
		}
	}
	p := filepath.Join(l.dir, label+"-keyring.toml")
	kr.Write(l.t, p)
	return p
}

func writeAtomic(t *testing.T, path string, data []byte) {
	t.Helper()
	testnet.WriteFile(t, path, string(data))
}

// startShim runs sshd-md5-socket on [::]:protectedPort in the server
// namespace with sshd -i behind it; extra goes before the "--" (e.g.
// "--stealth", "closed").
func (l *lab) startShim(extra ...string) *testnet.Proc {
	l.t.Helper()
	args := append([]string{"-k", l.serverKeyring, "-l", "[::]:" + strconv.Itoa(protectedPort)}, extra...)
	args = append(append(args, "--"), l.sshd.InetdArgs()...)
	p := l.server.ns.StartProc(l.t, [][]byte{l.secret}, l.shimBin, args...)
	p.WaitLog(`serving .* in inetd mode`, 20*time.Second)
	l.shim = p
	return p
}

// startPlain serves sshd -i on an unkeyed listener at plainPort in the
// server namespace: the unprotected control.
func (l *lab) startPlain() {
	l.t.Helper()
	ln := l.server.ns.Listen(l.t, "tcp", "[::]:"+strconv.Itoa(plainPort), nil)
	testnet.ServeInetd(l.t, ln, l.sshd.InetdArgs())
}

// sshArgs returns ssh's arguments for the protected (through
// ssh-md5-proxy) or the plain port of the server.
func (l *lab) sshArgs(protected bool, dst netip.Addr, proxyArgs string, command ...string) []string {
	args := l.sshd.SSHArgs()
	if protected {
		args = append(args, "-p", strconv.Itoa(protectedPort),
			"-o", "ProxyCommand="+l.proxy+" "+proxyArgs+" %h %p")
	} else {
		args = append(args, "-p", strconv.Itoa(plainPort))
	}
	args = append(args, "root@"+dst.String())
	return append(args, command...)
}

// sshArgsOpts is sshArgs with extra ssh options (e.g. "-o",
// "ProxyUseFdpass=yes") placed before the destination.
func (l *lab) sshArgsOpts(protected bool, dst netip.Addr, proxyArgs string, opts []string, command ...string) []string {
	args := l.sshArgs(protected, dst, proxyArgs)
	dest := args[len(args)-1]
	args = append(append(args[:len(args)-1:len(args)-1], opts...), dest)
	return append(args, command...)
}

// runSSH runs one ssh command from ns and returns stdout, stderr.
func (l *lab) runSSH(ns *testnet.NS, args []string, limit time.Duration) (string, string, error) {
	return l.runSSHStdin(ns, args, nil, limit)
}

// runSSHStdin is runSSH with ssh's stdin read from stdin (nil: none).
func (l *lab) runSSHStdin(ns *testnet.NS, args []string, stdin io.Reader, limit time.Duration) (string, string, error) {
	return l.runSSHEnv(ns, nil, args, stdin, limit)
}

// runSSHEnv is runSSHStdin with env added to ssh's environment.
func (l *lab) runSSHEnv(ns *testnet.NS, env, args []string, stdin io.Reader, limit time.Duration) (string, string, error) {
	cmd := ns.Cmd("ssh", args...)
	cmd.Stdin = stdin
	cmd.Env = append(append(os.Environ(), "SHELL=/bin/sh"), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		return "", "", err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return out.String(), errb.String(), err
	case <-time.After(limit):
		cmd.Process.Kill()
		<-done
		return out.String(), errb.String(), fmt.Errorf("ssh still running after %v, killed", limit)
	}
}

// openSession logs in from the client and keeps the session open, an
// echo loop on the server (testnet.Session).
func (l *lab) openSession(protected bool) *testnet.Session {
	l.t.Helper()
	return l.client.ns.StartSession(l.t, l.sshArgs(protected, l.server.a4, "-k "+l.clientKeyring), 30*time.Second)
}

// --- sniffing from the attacker ---

// sniffer is tcpdump on the attacker's interface, recording to a file.
type sniffer struct {
	p    *testnet.Proc
	file string
}

func (l *lab) sniff(filter string) *sniffer {
	l.t.Helper()
	f := filepath.Join(t2dir(l.t), "sniff.pcap")
	p := l.attacker.ns.StartProc(l.t, nil, "tcpdump", "-i", l.attacker.ifc, "-nn", "-Z", "root",
		"--immediate-mode", "-U", "-w", f, filter)
	p.WaitLog("listening on", 20*time.Second)
	return &sniffer{p: p, file: f}
}

func t2dir(t *testing.T) string { return t.TempDir() }

// flow is what the attacker learnt about one direction of a connection.
type flow struct {
	src, dst         netip.AddrPort
	nextSeq, nextAck uint32 // the sender's next sequence number, its last ack
	haveSeq          bool
}

var segRE = regexp.MustCompile(`IP6? (\S+)\.(\d+) > (\S+)\.(\d+): Flags \[([^\]]*)\](?:, seq (\d+)(?::(\d+))?)?(?:, ack (\d+))?`)

// stop waits (up to 20s) until the capture file holds a quiescent round
// trip on each of ports (see settled), ends tcpdump and returns, per
// direction, the last sequence numbers seen (absolute, tcpdump -S).
func (s *sniffer) stop(t *testing.T, client, server netip.Addr, ports ...int) map[string]*flow {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		flows := s.read(t)
		if settled(flows, client, server, ports) {
			break
		}
		if time.Now().After(deadline) {
			t.Logf("sniffer: no settled round trip after 20s; using what was seen")
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.p.Cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-s.p.Done:
	case <-time.After(10 * time.Second):
		t.Fatalf("tcpdump did not stop")
	}
	return s.read(t)
}

// settled: for each port, both directions carried data and each side has
// acknowledged everything the other sent, so the segments seen last are
// the connection's current state (ordering on one link is preserved).
func settled(flows map[string]*flow, client, server netip.Addr, ports []int) bool {
	for _, port := range ports {
		var c2s *flow
		for _, f := range flows {
			if f.src.Addr() == client && f.dst.Addr() == server && int(f.dst.Port()) == port {
				c2s = f
			}
		}
		if c2s == nil {
			return false
		}
		s2c := flows[c2s.dst.String()+">"+c2s.src.String()]
		if s2c == nil || !c2s.haveSeq || !s2c.haveSeq || c2s.nextAck != s2c.nextSeq || s2c.nextAck != c2s.nextSeq {
			return false
		}
	}
	return true
}

// read parses the capture file so far (tcpdump -U writes whole packets).
func (s *sniffer) read(t *testing.T) map[string]*flow {
	t.Helper()
	out, err := exec.Command("tcpdump", "-r", s.file, "-nn", "-S").CombinedOutput()
	if err != nil {
		t.Fatalf("tcpdump -r: %v\n%s", err, out)
	}
	flows := map[string]*flow{}
	for _, line := range strings.Split(string(out), "\n") {
		m := segRE.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		sp, _ := strconv.Atoi(m[2])
		dp, _ := strconv.Atoi(m[4])
		src := netip.AddrPortFrom(netip.MustParseAddr(m[1]), uint16(sp))
		dst := netip.AddrPortFrom(netip.MustParseAddr(m[3]), uint16(dp))
		key := src.String() + ">" + dst.String()
		f := flows[key]
		if f == nil {
			f = &flow{src: src, dst: dst}
			flows[key] = f
		}
		if m[6] != "" {
			end, _ := strconv.ParseUint(m[6], 10, 32)
			if m[7] != "" {
				end, _ = strconv.ParseUint(m[7], 10, 32)
			}
			if strings.ContainsAny(m[5], "SF") {
				end++
			}
			if !f.haveSeq || int32(uint32(end)-f.nextSeq) > 0 {
				f.nextSeq = uint32(end)
			}
			f.haveSeq = true
		}
		if m[8] != "" {
			a, _ := strconv.ParseUint(m[8], 10, 32)
			f.nextAck = uint32(a)
		}
	}
	return flows
}

// clientFlow picks the one client->server flow to dst port.
func clientFlow(t *testing.T, flows map[string]*flow, client, server netip.Addr, port int) (c2s, s2c *flow) {
	t.Helper()
	for _, f := range flows {
		if f.src.Addr() == client && f.dst.Addr() == server && int(f.dst.Port()) == port {
			if c2s != nil {
				t.Fatalf("more than one client flow to port %d sniffed", port)
			}
			c2s = f
		}
	}
	if c2s == nil || !c2s.haveSeq {
		t.Fatalf("attacker sniffed no client data to port %d: %v", port, flows)
	}
	s2c = flows[c2s.dst.String()+">"+c2s.src.String()]
	if s2c == nil || !s2c.haveSeq {
		t.Fatalf("attacker sniffed no server data from port %d", port)
	}
	return c2s, s2c
}

// hping runs hping3 in the attacker namespace, sending exactly one segment.
func (l *lab) hping(args ...string) {
	l.t.Helper()
	args = append([]string{"-I", l.attacker.ifc, "-c", "1"}, args...)
	out, err := l.attacker.ns.Cmd("hping3", args...).CombinedOutput()
	// hping3 exits 1 when no reply came back, the normal case for a RST
	// or a dropped segment; what matters is that it sent.
	if !strings.Contains(string(out), "1 packets transmitted") {
		l.t.Fatalf("hping3 %s did not send its segment: %v\n%s", strings.Join(args, " "), err, out)
	}
}
