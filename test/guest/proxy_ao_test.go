//go:build linux

package guest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net"
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

	"golang.org/x/sys/unix"

	"github.com/sshmd5/sshmd5/internal/fingerprint"
	"github.com/sshmd5/sshmd5/internal/proxy"
	"github.com/sshmd5/sshmd5/internal/tcpsig"
	"github.com/sshmd5/sshmd5/internal/tcpsig/ao"
	"github.com/sshmd5/sshmd5/internal/testnet"
)

// ssh-md5-proxy's TCP-AO dials against a plain Go listener keyed with
// ao.Backend (sealed: ao_required), in two namespaces joined by a veth
// pair. Keys are named as the server names them; the client's send_id is
// the server's recv_id and the other way round.

// aoUser is one TCP-AO key as both ends hold it.
type aoUser struct {
	name                   string
	secret                 []byte
	clientSend, clientRecv uint8
}

func newAOUser(name string, clientSend, clientRecv uint8) aoUser {
	return aoUser{name: name, secret: testnet.NewSecret(), clientSend: clientSend, clientRecv: clientRecv}
}

func (u aoUser) ao(send, recv uint8) *tcpsig.AO {
	return &tcpsig.AO{Name: u.name, SendID: send, RecvID: recv, Algorithm: tcpsig.AODefaultAlgorithm, MACLen: tcpsig.AODefaultMACLen}
}

// server is the key the listener holds for every peer of its family.
func (u aoUser) server(v6 bool) tcpsig.Key {
	p := netip.MustParsePrefix("0.0.0.0/0")
	if v6 {
		p = netip.MustParsePrefix("::/0")
	}
	return tcpsig.Key{Prefix: p, Secret: u.secret, AO: u.ao(u.clientRecv, u.clientSend)}
}

// client is the key the proxy dials with.
func (u aoUser) client() tcpsig.Key {
	return tcpsig.Key{Secret: u.secret, AO: u.ao(u.clientSend, u.clientRecv)}
}

// toml is the key as an item of a [hosts] entry's ao list.
func (u aoUser) toml() string {
	return fmt.Sprintf("{ name = %q, send_id = %d, recv_id = %d, key = %q }", u.name, u.clientSend, u.clientRecv, u.secret)
}

// proxyNet is a server namespace with a TCP-AO listener and a client one.
type proxyNet struct {
	server, client *testnet.NS
	link           *testnet.Link
	srvAddr        netip.Addr // the listener's address
	ln             *net.TCPListener
	dir            string
	proxy          string // ssh-md5-proxy
}

// newProxyNet listens on the server end of the link, on its IPv4 address
// or with v6 its IPv6 one, holding users' keys for every peer.
func newProxyNet(t *testing.T, v6 bool, users ...aoUser) *proxyNet {
	t.Helper()
	if err := ao.Supported(); err != nil {
		t.Fatalf("ao.Supported in the guest: %v", err)
	}
	n := &proxyNet{server: testnet.NewNS(t, "srv"), client: testnet.NewNS(t, "cli"), dir: t.TempDir(),
		proxy: testnet.BuildBinary(t, "cmd/ssh-md5-proxy")}
	n.link = testnet.Connect(t, n.server, n.client)
	network, keys := "tcp4", make([]tcpsig.Key, len(users))
	n.srvAddr = n.link.AddrA4
	if v6 {
		network, n.srvAddr = "tcp6", n.link.AddrA6
	}
	for i, u := range users {
		keys[i] = u.server(v6)
	}
	var ln net.Listener
	if err := n.server.Do(func() error {
		lc := net.ListenConfig{Control: tcpsig.ListenControl(ao.Backend, keys)}
		lc.SetMultipathTCP(false)
		var err error
		ln, err = lc.Listen(context.Background(), network, netip.AddrPortFrom(n.srvAddr, port).String())
		return err
	}); err != nil {
		t.Fatalf("TCP-AO listener: %v", err)
	}
	t.Cleanup(func() { ln.Close() })
	n.ln = ln.(*net.TCPListener)
	return n
}

// hashServer answers each connection with the SHA-256 of what it read up
// to EOF (the client's half-close).
func (n *proxyNet) hashServer(t *testing.T) {
	go func() {
		for {
			c, err := n.ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				h := sha256.New()
				if _, err := io.Copy(h, c); err != nil {
					return
				}
				fmt.Fprintf(c, "%x\n", h.Sum(nil))
			}()
		}
	}()
}

// keyring writes a client keyring whose [hosts.srv] entry lists users'
// keys, newest first, for the server's address.
func (n *proxyNet) keyring(t *testing.T, users ...aoUser) string {
	t.Helper()
	items := make([]string, len(users))
	for i, u := range users {
		items[i] = "  " + u.toml() + ",\n"
	}
	p := filepath.Join(n.dir, "client.toml")
	testnet.WriteFile(t, p, fmt.Sprintf("[hosts.srv]\nhostname = %q\nao = [\n%s]\n", n.srvAddr, strings.Join(items, "")))
	return p
}

func (n *proxyNet) addr() string { return n.srvAddr.String() }

// aoCounters reads a namespace's TcpExt TCPAO* counters.
func aoCounters(t *testing.T, ns *testnet.NS) ao.Counters {
	t.Helper()
	var c ao.Counters
	if err := ns.Do(func() error {
		var err error
		c, err = ao.ReadCountersAt("/proc/thread-self/net/netstat")
		return err
	}); err != nil {
		t.Fatalf("TCP-AO counters of %s: %v", ns.Name, err)
	}
	return c
}

func noSecrets(t *testing.T, what string, out []byte, users ...aoUser) {
	t.Helper()
	for _, u := range users {
		if bytes.Contains(out, u.secret) {
			t.Errorf("%s shows %s's secret", what, u.name)
		}
	}
}

// TestProxyAODialInProcess is proxy.DialAny itself with one TCP-AO key:
// the connection is signed with that key (ao.Current) and relays a MiB
// both ways through Copy, half-close included. It needs no keyring.
func TestProxyAODialInProcess(t *testing.T) {
	alice := newAOUser("alice", 1, 101)
	n := newProxyNet(t, false, alice)
	n.hashServer(t)
	var conn *net.TCPConn
	if err := n.client.Do(func() error {
		var err error
		conn, _, err = proxy.DialAny(context.Background(), proxy.Options{Host: n.addr(), Port: strconv.Itoa(port),
			Timeout: 10 * time.Second, Keys: []tcpsig.Key{alice.client()}, KeyName: "test"})
		return err
	}); err != nil {
		t.Fatalf("DialAny with the TCP-AO key: %v", err)
	}
	checkCurrent(t, conn, alice)
	data := bytes.Repeat([]byte("0123456789abcdef"), 1<<16)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	go func() {
		w.Write(data)
		w.Close()
	}()
	var out bytes.Buffer
	if err := proxy.Copy(conn, r, &out); err != nil {
		t.Fatalf("Copy: %v", err)
	}
	if want := fmt.Sprintf("%x\n", sha256.Sum256(data)); out.String() != want {
		t.Errorf("server answered %q, want %q", out.String(), want)
	}
}

// checkCurrent: the kernel signs conn with u's key.
func checkCurrent(t *testing.T, conn syscall.Conn, u aoUser) {
	t.Helper()
	rc, err := conn.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var send, recv uint8
	var cerr error
	if err := rc.Control(func(fd uintptr) { send, recv, cerr = ao.Current(int(fd)) }); err != nil {
		t.Fatal(err)
	}
	if cerr != nil {
		t.Fatalf("ao.Current: %v", cerr)
	}
	if send != u.clientSend || recv != u.clientRecv {
		t.Errorf("the connection's current key is send_id %d, recv_id %d; want %s's, %d and %d", send, recv, u.name, u.clientSend, u.clientRecv)
	}
}

// TestProxyAOCopy is the command in copy mode, as a ProxyCommand runs it,
// over IPv4 and IPv6: stdin to the server, the server's answer on stdout,
// exit 0; the server's TCPAOGood counter grows and nothing went unsigned
// (TCPAORequired stays).
func TestProxyAOCopy(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		t.Run(map[bool]string{false: "v4", true: "v6"}[v6], func(t *testing.T) {
			alice := newAOUser("alice", 1, 101)
			n := newProxyNet(t, v6, alice)
			n.hashServer(t)
			kr := n.keyring(t, alice)
			before := aoCounters(t, n.server)
			data := bytes.Repeat([]byte("ssh-md5-proxy over TCP-AO\n"), 40000)
			cmd := n.client.Cmd(n.proxy, "-k", kr, "-t", "10s", "-n", "srv", n.addr(), strconv.Itoa(port))
			cmd.Stdin = bytes.NewReader(data)
			var out, errb bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &errb
			if err := cmd.Run(); err != nil {
				t.Fatalf("ssh-md5-proxy: %v\n%s", err, errb.Bytes())
			}
			noSecrets(t, "the proxy's output", append(out.Bytes(), errb.Bytes()...), alice)
			if want := fmt.Sprintf("%x\n", sha256.Sum256(data)); out.String() != want {
				t.Errorf("stdout %q, want the server's hash %q", out.String(), want)
			}
			after := aoCounters(t, n.server)
			if after.Good <= before.Good || after.Required != before.Required {
				t.Errorf("server counters before %v, after %v: want TCPAOGood up, TCPAORequired unchanged", before, after)
			}
			t.Logf("copied %d bytes to %s; server TCPAOGood %d -> %d, TCPAORequired %d", len(data), n.addr(), before.Good, after.Good, after.Required)
		})
	}
}

// fdpass runs the command with --fdpass and returns the socket it passes
// (as ssh receives it: one byte, one descriptor) and its exit.
func (n *proxyNet) fdpass(t *testing.T, kr string) (*net.TCPConn, []byte) {
	t.Helper()
	sp, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	theirs := os.NewFile(uintptr(sp[1]), "proxy-stdout")
	defer unix.Close(sp[0])
	cmd := n.client.Cmd(n.proxy, "--fdpass", "-k", kr, "-t", "10s", "-n", "srv", n.addr(), strconv.Itoa(port))
	var errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = theirs, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	theirs.Close()
	buf, oob := make([]byte, 16), make([]byte, unix.CmsgSpace(4*4))
	nb, oobn, _, _, rerr := unix.Recvmsg(sp[0], buf, oob, 0)
	werr := cmd.Wait()
	if rerr != nil || werr != nil {
		t.Fatalf("ssh-md5-proxy --fdpass: recvmsg %v, exit %v\n%s", rerr, werr, errb.Bytes())
	}
	if nb != 1 {
		t.Errorf("got %d data bytes, ssh wants exactly 1", nb)
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		t.Fatalf("control messages: %d, %v", len(msgs), err)
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		t.Fatalf("rights: %v, %v", fds, err)
	}
	f := os.NewFile(uintptr(fds[0]), "passed")
	c, err := net.FileConn(f)
	f.Close()
	if err != nil {
		t.Fatalf("the passed descriptor: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn), errb.Bytes()
}

// exchange sends data on c, half-closes and checks the server's hash.
func exchange(t *testing.T, c *net.TCPConn, data []byte) {
	t.Helper()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	go func() {
		c.Write(data)
		c.CloseWrite()
	}()
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("reading the server's answer: %v", err)
	}
	if want := fmt.Sprintf("%x\n", sha256.Sum256(data)); line != want {
		t.Errorf("server answered %q, want %q", line, want)
	}
}

// TestProxyAOFDPass: with --fdpass the proxy passes the TCP-AO socket and
// exits; the socket still carries the key (ao.Current) and talks to the
// server with no proxy left.
func TestProxyAOFDPass(t *testing.T) {
	alice := newAOUser("alice", 1, 101)
	n := newProxyNet(t, false, alice)
	n.hashServer(t)
	c, errOut := n.fdpass(t, n.keyring(t, alice))
	noSecrets(t, "the proxy's stderr", errOut, alice)
	checkCurrent(t, c, alice)
	exchange(t, c, bytes.Repeat([]byte("fdpass "), 100000))
}

// TestProxyAORollover: the entry lists a new key and the old one, the
// server holds only the old one (a rollover the server has not made
// yet). Both are dialled at once; the old one's connection is the one
// passed, and it is signed with the old key. The new key's SYN is dropped
// for its unknown KeyID (the server's TCPAOKeyNotFound grows).
func TestProxyAORollover(t *testing.T) {
	oldKey, newKey := newAOUser("alice-old", 1, 101), newAOUser("alice-new", 2, 102)
	n := newProxyNet(t, false, oldKey)
	n.hashServer(t)
	before := aoCounters(t, n.server)
	c, errOut := n.fdpass(t, n.keyring(t, newKey, oldKey))
	noSecrets(t, "the proxy's stderr", errOut, oldKey, newKey)
	checkCurrent(t, c, oldKey)
	exchange(t, c, []byte("rollover"))
	after := aoCounters(t, n.server)
	if after.KeyNotFound <= before.KeyNotFound {
		t.Errorf("server counters before %v, after %v: want TCPAOKeyNotFound up for the new key's SYN", before, after)
	}
	t.Logf("rollover: connected with the old key; server TCPAOKeyNotFound %d -> %d", before.KeyNotFound, after.KeyNotFound)

	// Neither key on the server: no answer, and the message names both
	// keys by name and IDs and what a silent drop means.
	other := newAOUser("bob", 3, 103)
	n2 := newProxyNet(t, false, other)
	cmd := n2.client.Cmd(n2.proxy, "-k", n2.keyring(t, newKey, oldKey), "-t", "2s", "-n", "srv", n2.addr(), strconv.Itoa(port))
	out, err := cmd.CombinedOutput()
	noSecrets(t, "the proxy's output", out, oldKey, newKey)
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != 255 {
		t.Fatalf("no key on the server: %v, want exit 255\n%s", err, out)
	}
	t.Logf("no key on the server: %s", out)
	for _, want := range []string{
		"no answer within 2s from " + n2.addr(),
		"TCP-AO key alice-new, send_id 2, recv_id 102; TCP-AO key alice-old, send_id 1, recv_id 101)",
		"no key with recv_id 2 or 1 (our send_id)",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("no key on the server: output lacks %q:\n%s", want, out)
		}
	}
}

// TestProxyAOProbe: probe against real sshd -i behind the TCP-AO
// listener: banner and host key, the backend and the key that worked
// (name and IDs, no bytes), and the sealed listener ignores the unsigned
// dial.
func TestProxyAOProbe(t *testing.T) {
	oldKey, newKey := newAOUser("alice-old", 1, 101), newAOUser("alice-new", 2, 102)
	n := newProxyNet(t, false, oldKey)
	sshd := testnet.NewSSHD(t)
	testnet.ServeInetd(t, n.ln, sshd.InetdArgs())
	kr := n.keyring(t, newKey, oldKey)

	cmd := n.client.Cmd(n.proxy, "probe", "-u", "1s", "-k", kr, "-n", "srv", n.addr(), strconv.Itoa(port))
	out, err := cmd.CombinedOutput()
	noSecrets(t, "probe's output", out, oldKey, newKey)
	if err != nil {
		t.Fatalf("probe: %v\n%s", err, out)
	}
	t.Logf("probe:\n%s", out)
	for _, re := range []string{
		`(?m)^probe \S+ port \d+ \(TCP-AO key from hosts\.srv\)$`,
		`(?m)^          banner SSH-2\.0-OpenSSH_`,
		`(?m)^          host key ssh-ed25519 SHA256:\S+\n          TCP-AO key 2 of 2: alice-old \(send_id 1, recv_id 101, hmac\(sha256\), 12-byte MAC\) ` + regexp.QuoteMeta(fingerprint.OfAO(oldKey.secret)) + `$`,
		`(?m)^unsigned: no answer within 1s, as it should be`,
		`(?m)^ok: the server takes signed connections only$`,
	} {
		if !regexp.MustCompile(re).Match(out) {
			t.Errorf("probe output does not match %s:\n%s", re, out)
		}
	}

	cmd = n.client.Cmd(n.proxy, "probe", "-u", "1s", "--json", "-k", kr, "-n", "srv", n.addr(), strconv.Itoa(port))
	out, err = cmd.Output()
	noSecrets(t, "probe --json's output", out, oldKey, newKey)
	if err != nil {
		t.Fatalf("probe --json: %v\n%s", err, out)
	}
	var r proxy.ProbeResult
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("probe --json: %v\n%s", err, out)
	}
	if !r.OK || r.Backend != "TCP-AO" || r.KeyIndex != 2 || r.Keys != 2 || r.AO == nil ||
		r.AO.Name != "alice-old" || r.AO.SendID != 1 || r.AO.RecvID != 101 || r.KeyFingerprint != fingerprint.OfAO(oldKey.secret) {
		t.Errorf("probe --json: %s; want ok, TCP-AO, key 2 of 2 alice-old 1/101 with its AOKEY fingerprint", out)
	}
}
