//go:build bench && linux

package guest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
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
	bkBuf     = 128 << 10
	bkPort    = 2301 // + 0, 1, 2: unsigned, MD5, AO listener
)

// The TCP-AO key IDs, as a keyring would give them: the server's entry
// for the user has send_id 101 and recv_id 1, the client's the mirror.
const (
	aoServerSend, aoServerRecv = 101, 1
)

// bkArm is one way of signing the transfer: a listener keyed for it in
// the server namespace and the dial control that signs the client.
type bkArm struct {
	name  string
	ln    *net.TCPListener
	dial  func(network, address string, c syscall.RawConn) error
	check func(c *net.TCPConn) error // on the accepted connection, after the transfer
}

// BenchmarkBulk sends n bytes per round from a Go sender in the client
// namespace to a Go receiver in the server namespace over a veth pair,
// unsigned, signed with TCP-MD5 and signed with TCP-AO, each side keyed
// by the project's own backends (internal/tcpsig/md5 and .../ao).
func BenchmarkBulk(b *testing.B) {
	testnet.RequireRoot(b)
	n := int64(64 << 20)
	if *flagQuick {
		n = 4 << 20
	}
	srv, cli := testnet.NewNS(b, "bksrv"), testnet.NewNS(b, "bkcli")
	link := testnet.Connect(b, srv, cli)
	secret := tcpsig.Secret(testnet.NewSecret())
	all4 := netip.MustParsePrefix("0.0.0.0/0")
	md5Keys := []tcpsig.Key{{Prefix: all4, Secret: secret}}
	aoKeys := []tcpsig.Key{{Prefix: all4, Secret: secret, AO: &tcpsig.AO{
		Name: "bench", SendID: aoServerSend, RecvID: aoServerRecv,
		Algorithm: tcpsig.AODefaultAlgorithm, MACLen: tcpsig.AODefaultMACLen,
	}}}
	server := netip.PrefixFrom(link.AddrA4, 32)
	aoClient := tcpsig.Key{Prefix: server, Secret: secret, AO: &tcpsig.AO{
		SendID: aoServerRecv, RecvID: aoServerSend,
		Algorithm: tcpsig.AODefaultAlgorithm, MACLen: tcpsig.AODefaultMACLen,
	}}

	arms := []bkArm{
		{name: bkNone, ln: bkListen(b, srv, link.AddrA4, bkPort, nil, nil),
			check: func(c *net.TCPConn) error { return nil }},
		{name: bkMD5, ln: bkListen(b, srv, link.AddrA4, bkPort+1, md5.Backend, md5Keys),
			dial: md5.Backend.DialControl(tcpsig.Key{Prefix: server, Secret: secret}), check: bkHasMD5},
		{name: bkAO, ln: bkListen(b, srv, link.AddrA4, bkPort+2, ao.Backend, aoKeys),
			dial: ao.Backend.DialControl(aoClient), check: bkHasAO},
	}
	aoGood := netstat(b, srv, "TCPAOGood")
	fns := make([]func() float64, len(arms))
	for i, a := range arms {
		fns[i] = func() float64 { return bkTransfer(b, srv, cli, a, link.AddrA4, n) }
	}
	s := alternate(rounds(7, 2), fns...)
	// An independent check that TCP-AO signed the segments: the server's
	// kernel counted good TCP-AO segments, at least one per MiB sent.
	if d := netstat(b, srv, "TCPAOGood") - aoGood; d < int64(len(s[2]))*(n>>20) {
		b.Fatalf("TCP-AO: the server counted %d good TCP-AO segments over %d transfers of %d MiB; the transfers were not signed", d, len(s[2]), n>>20)
	}
	emit(b, result{Section: bkSection, Link: guestLink, Case: bkNone, Unit: "MB/s", Samples: s[0]})
	emit(b, result{Section: bkSection, Link: guestLink, Case: bkMD5, Unit: "MB/s", Samples: s[1], Against: bkNone})
	emit(b, result{Section: bkSection, Link: guestLink, Case: bkAO, Unit: "MB/s", Samples: s[2], Against: bkMD5, Also: []string{bkNone}})
	note(b, bkSection, fmt.Sprintf("%d MiB per transfer from a Go sender in one namespace (%d KiB writes) to a Go receiver in another that discards it, over a veth pair; "+
		"MB/s = 10^6 bytes/s from the receiver's first read to EOF. "+
		"Both sockets are keyed by the project's backends: TCP-MD5 (internal/tcpsig/md5, key for 0.0.0.0/0 on the listener) and TCP-AO (internal/tcpsig/ao, %s with %d-byte MACs, the listener sealed with ao_required). "+
		"Checked after each transfer: the accepted socket carries the TCP-MD5 key, or its current TCP-AO key is the one dialled; and the server's TCPAOGood counter grew by at least one per MiB sent with TCP-AO.",
		n>>20, bkBuf>>10, tcpsig.AODefaultAlgorithm, tcpsig.AODefaultMACLen))
	guestNote(b, bkSection)
}

// bkListen opens a listener on addr:port in ns, keyed before listen with
// keys by backend (nil: unsigned).
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
func bkTransfer(b *testing.B, srv, cli *testnet.NS, a bkArm, addr netip.Addr, n int64) float64 {
	type got struct {
		bytes int64
		d     time.Duration
		err   error
	}
	limit := 10*time.Minute + time.Duration(n/(64<<10))*time.Millisecond
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
	var conn net.Conn
	err := cli.Do(func() error {
		d := net.Dialer{Timeout: 30 * time.Second, Control: a.dial}
		var err error
		conn, err = d.Dial("tcp4", a.ln.Addr().String())
		return err
	})
	if err != nil {
		b.Fatalf("%s: dial %s: %v", a.name, a.ln.Addr(), err)
	}
	c := conn.(*net.TCPConn)
	c.SetWriteDeadline(time.Now().Add(limit))
	buf := make([]byte, bkBuf)
	var werr error
	for left := n; left > 0 && werr == nil; {
		k := min(left, int64(len(buf)))
		_, werr = c.Write(buf[:k])
		left -= k
	}
	if werr == nil {
		werr = c.CloseWrite()
	}
	g := <-done
	c.Close()
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
