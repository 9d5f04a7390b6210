//go:build bench && linux

package guest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/sshmd5/sshmd5/internal/tcpsig"
	"github.com/sshmd5/sshmd5/internal/tcpsig/ao"
	"github.com/sshmd5/sshmd5/internal/tcpsig/md5"
	"github.com/sshmd5/sshmd5/internal/testnet"
)

const (
	bkSection = "TCP-AO bulk throughput (test guest)"
	bkNone    = "unsigned"
	bkMD5     = "TCP-MD5"
	bkAO      = "TCP-AO"
	// Through ssh-md5-proxy, copy mode.
	bkProxyMD5 = "ssh-md5-proxy copy, TCP-MD5"
	bkProxyAO  = "ssh-md5-proxy copy, TCP-AO"
	bkBuf      = 128 << 10
	bkPort     = 2301 // + 0, 1, 2: unsigned, MD5, AO listener
)

// bkArm is one way of sending: a listener keyed for it in the server
// namespace, the sender, and what the accepted socket must carry.
type bkArm struct {
	name  string
	ln    *net.TCPListener
	send  func(addr string, n int64) error // sends n bytes to addr and half-closes
	check func(c *net.TCPConn) error       // on the accepted connection, after the transfer
}

// BenchmarkBulk sends n bytes per round to a Go receiver in the server
// namespace over a veth pair, unsigned, signed with TCP-MD5 and signed
// with TCP-AO: from a Go sender whose socket the project's backends key
// (internal/tcpsig/md5 and .../ao), and through the real ssh-md5-proxy in
// copy mode, with a TCP-MD5 and a TCP-AO keyring.
func BenchmarkBulk(b *testing.B) {
	testnet.RequireRoot(b)
	cs0 := clocksource(b)
	n := int64(32 << 20)
	if *flagQuick {
		n = 4 << 20
	}
	srv, cli := testnet.NewNS(b, "bksrv"), testnet.NewNS(b, "bkcli")
	link := testnet.Connect(b, srv, cli)
	proxy := testnet.BuildBinary(b, "cmd/ssh-md5-proxy")
	kr := writeKeyrings(b, b.TempDir())
	all4 := netip.MustParsePrefix("0.0.0.0/0")
	server := netip.PrefixFrom(link.AddrA4, 32)
	md5Keys := []tcpsig.Key{{Prefix: all4, Secret: kr.md5Key}}
	aoKeys := []tcpsig.Key{{Prefix: all4, Secret: kr.aoKey, AO: &tcpsig.AO{
		Name: "alice", SendID: aoServerSend, RecvID: aoServerRecv,
		Algorithm: tcpsig.AODefaultAlgorithm, MACLen: tcpsig.AODefaultMACLen,
	}}}
	aoClient := tcpsig.Key{Prefix: server, Secret: kr.aoKey, AO: &tcpsig.AO{
		SendID: aoServerRecv, RecvID: aoServerSend,
		Algorithm: tcpsig.AODefaultAlgorithm, MACLen: tcpsig.AODefaultMACLen,
	}}
	plainLn := bkListen(b, srv, link.AddrA4, bkPort, nil, nil)
	md5Ln := bkListen(b, srv, link.AddrA4, bkPort+1, md5.Backend, md5Keys)
	aoLn := bkListen(b, srv, link.AddrA4, bkPort+2, ao.Backend, aoKeys)
	// The proxy cases use the same keyed listeners, one connection a round.
	arms := []bkArm{
		{bkNone, plainLn, bkDirect(cli, nil), func(*net.TCPConn) error { return nil }},
		{bkMD5, md5Ln, bkDirect(cli, md5.Backend.DialControl(tcpsig.Key{Prefix: server, Secret: kr.md5Key})), bkHasMD5},
		{bkAO, aoLn, bkDirect(cli, ao.Backend.DialControl(aoClient)), bkHasAO},
		{bkProxyMD5, md5Ln, bkProxy(cli, proxy, kr.md5Client, kr.secrets()), bkHasMD5},
		{bkProxyAO, aoLn, bkProxy(cli, proxy, kr.aoClient, kr.secrets()), bkHasAO},
	}
	good0 := aoGood(b, srv)
	fns := make([]func() float64, len(arms))
	for i, a := range arms {
		fns[i] = func() float64 { return bkTransfer(b, srv, a, n) }
	}
	s := alternate(rounds(5, 1), fns...)
	// An independent check that TCP-AO signed the segments: the server's
	// kernel counted good TCP-AO segments, at least one per MiB sent.
	aoMiB := uint64(len(s[2])+len(s[4])) * uint64(n>>20)
	if d := aoGood(b, srv) - good0; d < aoMiB {
		b.Fatalf("TCP-AO: the server counted %d good TCP-AO segments over %d MiB sent with TCP-AO; the transfers were not signed", d, aoMiB)
	}
	emit(b, result{Section: bkSection, Link: guestLink, Case: bkNone, Unit: "MB/s", Samples: s[0]})
	emit(b, result{Section: bkSection, Link: guestLink, Case: bkMD5, Unit: "MB/s", Samples: s[1], Against: bkNone})
	emit(b, result{Section: bkSection, Link: guestLink, Case: bkAO, Unit: "MB/s", Samples: s[2], Against: bkMD5, Also: []string{bkNone}})
	emit(b, result{Section: bkSection, Link: guestLink, Case: bkProxyMD5, Unit: "MB/s", Samples: s[3], Against: bkMD5})
	emit(b, result{Section: bkSection, Link: guestLink, Case: bkProxyAO, Unit: "MB/s", Samples: s[4], Against: bkProxyMD5, Also: []string{bkAO, bkNone}})
	note(b, bkSection, fmt.Sprintf("%d MiB per transfer to a Go receiver in one namespace of the guest that discards it (%d KiB reads), from another namespace over a veth pair; "+
		"MB/s = 10^6 bytes/s from the receiver's first read to EOF, so connecting and starting the proxy are not counted. "+
		"The direct cases write from a Go socket keyed by the project's backends: TCP-MD5 (internal/tcpsig/md5; the listener has a key for 0.0.0.0/0) and TCP-AO (internal/tcpsig/ao, %s with %d-byte MACs; the listener sealed with ao_required). "+
		"The proxy cases run the real ssh-md5-proxy in copy mode with a TCP-MD5 or a TCP-AO keyring and write into its stdin pipe, as ssh does, to the same listeners. "+
		"Checked after each transfer: the accepted socket carries the TCP-MD5 key, or its current TCP-AO key is the user's (send_id %d, recv_id %d); and over the run the server's TCPAOGood counter grew by at least one per MiB sent with TCP-AO.",
		n>>20, bkBuf>>10, tcpsig.AODefaultAlgorithm, tcpsig.AODefaultMACLen, aoServerSend, aoServerRecv))
	guestNote(b, bkSection, cs0)
}

// bkListen opens a listener on addr:port in ns, keyed before listen with
// keys by backend (nil: unsigned): testnet.NS.Listen for any backend, as
// that one keys with TCP-MD5 only.
func bkListen(b *testing.B, ns *testnet.NS, addr netip.Addr, port int, be tcpsig.Backend, keys []tcpsig.Key) *net.TCPListener {
	b.Helper()
	var ln net.Listener
	err := ns.Do(func() error {
		lc := net.ListenConfig{}
		if be != nil {
			lc.Control = tcpsig.ListenControl(be, keys)
		}
		lc.SetMultipathTCP(false)
		var err error
		ln, err = lc.Listen(context.Background(), "tcp4", netip.AddrPortFrom(addr, uint16(port)).String())
		return err
	})
	if err != nil {
		b.Fatalf("listen on port %d in %s: %v", port, ns.Name, err)
	}
	b.Cleanup(func() { ln.Close() })
	return ln.(*net.TCPListener)
}

// bkTransfer sends n bytes to arm's listener and returns the receiver's
// MB/s.
func bkTransfer(b *testing.B, srv *testnet.NS, a bkArm, n int64) float64 {
	type got struct {
		bytes int64
		d     time.Duration
		err   error
	}
	limit := bkLimit(n)
	done := make(chan got, 1)
	go func() {
		a.ln.SetDeadline(time.Now().Add(time.Minute))
		c, err := a.ln.AcceptTCP()
		if err != nil {
			done <- got{err: fmt.Errorf("accept: %w", err)}
			return
		}
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(limit))
		buf := make([]byte, bkBuf)
		m, err := io.ReadFull(c, buf[:1])
		t0 := time.Now()
		var rest int64
		if err == nil {
			rest, err = io.CopyBuffer(io.Discard, c, buf)
		}
		g := got{bytes: int64(m) + rest, d: time.Since(t0), err: err}
		if g.err == nil {
			// sock_diag answers about its own socket's namespace.
			g.err = srv.Do(func() error { return a.check(c) })
		}
		done <- g
	}()
	werr := a.send(a.ln.Addr().String(), n)
	var g got
	select {
	case g = <-done:
	case <-time.After(limit + time.Minute):
		b.Fatalf("%s: the receiver has not finished after %v", a.name, limit+time.Minute)
	}
	switch {
	case werr != nil:
		b.Fatalf("%s: send: %v", a.name, werr)
	case g.err != nil:
		b.Fatalf("%s: receive: %v", a.name, g.err)
	case g.bytes != n:
		b.Fatalf("%s: the receiver got %d bytes, sent %d", a.name, g.bytes, n)
	}
	return float64(n) / 1e6 / g.d.Seconds()
}

// bkLimit bounds one transfer of n bytes: generous, as TCG is slow.
func bkLimit(n int64) time.Duration { return 5*time.Minute + time.Duration(n>>10)*time.Millisecond }

// bkDirect is a sender that dials from cli itself, signed by dial (nil:
// unsigned), and writes n bytes.
func bkDirect(cli *testnet.NS, dial func(network, address string, c syscall.RawConn) error) func(string, int64) error {
	return func(addr string, n int64) error {
		var conn net.Conn
		err := cli.Do(func() error {
			// testnet.NS.Dial signs with TCP-MD5 only; this takes either
			// backend's control. MPTCP off, as there: TCP_MD5SIG fails on it.
			d := net.Dialer{Timeout: 30 * time.Second, Control: dial}
			d.SetMultipathTCP(false)
			var err error
			conn, err = d.Dial("tcp4", addr)
			return err
		})
		if err != nil {
			return fmt.Errorf("dial %s: %w", addr, err)
		}
		c := conn.(*net.TCPConn)
		defer c.Close()
		c.SetWriteDeadline(time.Now().Add(bkLimit(n)))
		if err := bkWrite(c, n); err != nil {
			return err
		}
		return c.CloseWrite()
	}
}

// bkWrite writes n zero bytes to w in bkBuf chunks.
func bkWrite(w io.Writer, n int64) error {
	buf := make([]byte, bkBuf)
	for left := n; left > 0; {
		k := min(left, int64(len(buf)))
		if _, err := w.Write(buf[:k]); err != nil {
			return err
		}
		left -= k
	}
	return nil
}

// bkProxy is a sender that runs the real ssh-md5-proxy in copy mode in
// cli with the keyring kr, and writes n bytes into its stdin pipe, as ssh
// would; closing the pipe makes the proxy half-close the connection.
func bkProxy(cli *testnet.NS, proxy, kr string, secrets [][]byte) func(string, int64) error {
	return func(addr string, n int64) error {
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return err
		}
		cmd := exec.Command(proxy, "-t", tcgTimeout.String(), "-k", kr, "-4", host, port)
		inR, inW, err := os.Pipe()
		if err != nil {
			return err
		}
		var stderr bytes.Buffer
		cmd.Stdin, cmd.Stdout, cmd.Stderr = inR, io.Discard, &stderr
		cmd.WaitDelay = 5 * time.Second
		// Forked from a thread in cli: no `ip netns exec` in between.
		err = cli.Do(cmd.Start)
		inR.Close()
		if err != nil {
			inW.Close()
			return fmt.Errorf("start ssh-md5-proxy: %w", err)
		}
		kill := time.AfterFunc(bkLimit(n), func() { cmd.Process.Kill() })
		defer kill.Stop()
		werr := bkWrite(inW, n)
		inW.Close()
		err = cmd.Wait()
		msg := lgRedact(stderr.String(), secrets)
		for _, k := range secrets {
			if bytes.Contains(stderr.Bytes(), k) {
				return fmt.Errorf("a secret appears in ssh-md5-proxy's stderr")
			}
		}
		switch {
		case werr != nil:
			return fmt.Errorf("writing to ssh-md5-proxy's stdin: %v (proxy: %v)\n%s", werr, err, msg)
		case err != nil:
			return fmt.Errorf("ssh-md5-proxy: %v\n%s", err, msg)
		}
		return nil
	}
}

// bkHasMD5 checks that the accepted connection carries a TCP-MD5 key (the
// listener's, inherited by the kernel when the SYN was signed with it).
func bkHasMD5(c *net.TCPConn) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	s, err := tcpsig.FromConn(rc)
	if err != nil {
		return err
	}
	keys, err := md5.Backend.Keys(s)
	if err != nil {
		return fmt.Errorf("reading the accepted connection's TCP-MD5 keys: %w", err)
	}
	if len(keys) == 0 {
		return errors.New("the accepted connection carries no TCP-MD5 key")
	}
	return nil
}

// bkHasAO checks that the accepted connection's current TCP-AO key is the
// listener's key for the client.
func bkHasAO(c *net.TCPConn) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var send, recv uint8
	var aerr error
	if err := rc.Control(func(fd uintptr) { send, recv, aerr = ao.Current(int(fd)) }); err != nil {
		return err
	}
	if aerr != nil {
		return fmt.Errorf("the accepted connection's TCP-AO key: %w", aerr)
	}
	if send != aoServerSend || recv != aoServerRecv {
		return fmt.Errorf("the accepted connection's current TCP-AO key is send_id %d recv_id %d, want %d and %d", send, recv, aoServerSend, aoServerRecv)
	}
	return nil
}
