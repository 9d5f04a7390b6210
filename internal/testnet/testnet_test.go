//go:build linux

package testnet

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// keyControl returns a socket Control that sets a TCP-MD5 key for the one
// IPv4 peer, before bind (listener) or connect (dialer). A nil key sets none.
func keyControl(peer netip.Addr, key []byte) func(string, string, syscall.RawConn) error {
	return func(_, _ string, c syscall.RawConn) error {
		if key == nil {
			return nil
		}
		var sig unix.TCPMD5Sig
		sig.Addr.Family = unix.AF_INET
		a := peer.As4()
		copy(sig.Addr.Data[2:6], a[:])
		sig.Keylen = uint16(len(key))
		copy(sig.Key[:], key)
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptTCPMD5Sig(int(fd), unix.IPPROTO_TCP, unix.TCP_MD5SIG, &sig)
		}); err != nil {
			return err
		}
		return serr
	}
}

var loopback = netip.MustParseAddr("127.0.0.1")

// listen opens a TCP listener on 127.0.0.1 in ns, keyed for 127.0.0.1.
// MPTCP off: TCP_MD5SIG fails on MPTCP sockets.
func listen(t *testing.T, ns *NS, key []byte) net.Listener {
	t.Helper()
	var ln net.Listener
	err := ns.Do(func() error {
		lc := net.ListenConfig{Control: keyControl(loopback, key)}
		lc.SetMultipathTCP(false)
		var err error
		ln, err = lc.Listen(context.Background(), "tcp4", "127.0.0.1:0")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// dial connects to addr from inside ns, signing with key.
func dial(ns *NS, addr string, key []byte, timeout time.Duration) (net.Conn, error) {
	var conn net.Conn
	err := ns.Do(func() error {
		d := net.Dialer{Control: keyControl(loopback, key), Timeout: timeout}
		d.SetMultipathTCP(false)
		var err error
		conn, err = d.Dial("tcp4", addr)
		return err
	})
	return conn, err
}

func TestNSAndLink(t *testing.T) {
	a, b := NewNS(t, "a"), NewNS(t, "b")
	l := Connect(t, a, b)
	if len(l.IfA) > 15 || len(l.IfB) > 15 {
		t.Errorf("interface names too long: %q %q", l.IfA, l.IfB)
	}

	// Sockets made in Do stay in the namespace: B's listeners are reached
	// from A over the link, both address families.
	for _, addr := range []netip.Addr{l.AddrB4, l.AddrB6} {
		var ln net.Listener
		if err := b.Do(func() (err error) {
			ln, err = net.Listen("tcp", net.JoinHostPort(addr.String(), "0"))
			return err
		}); err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go func() {
			if c, err := ln.Accept(); err == nil {
				c.Close()
			}
		}()
		port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
		out := a.Run(t, "bash", "-c", "exec 3<>/dev/tcp/"+addr.String()+"/"+port+" && echo connected")
		if !strings.Contains(out, "connected") {
			t.Errorf("connect from A to %s: %q", addr, out)
		}
	}
	if _, err := os.Stat("/run/netns/" + a.Name); err != nil {
		t.Error(err)
	}
}

func TestCleanupRemovesNS(t *testing.T) {
	var name string
	t.Run("inner", func(t *testing.T) { name = NewNS(t, "gone").Name })
	if _, err := os.Stat("/run/netns/" + name); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("netns %s still there after cleanup: %v", name, err)
	}
}

func TestCaptureSigned(t *testing.T) {
	ns := NewNS(t, "capsig")
	key := []byte("testnet-secret")
	ln := listen(t, ns, key)
	c := ns.StartCapture(t, "lo", ln.Addr().(*net.TCPAddr).Port)
	go func() {
		if conn, err := ln.Accept(); err == nil {
			_, _ = conn.Write([]byte("hello"))
			conn.Close()
		}
	}()
	conn, err := dial(ns, ln.Addr().String(), key, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 5)
	_, _ = conn.Read(b)
	conn.Close()

	st := c.Stop(t, key)
	t.Log("right secret:", st)
	if st.Segments < 5 || st.Valid != st.Segments || st.SYNs != 1 || st.SYNACKs != 1 || st.UnsignedSYNs != 0 {
		t.Errorf("right secret: %v", st)
	}
	wrong := c.Analyze(t, []byte("not-the-secret"))
	t.Log("wrong secret:", wrong)
	if wrong.Invalid != st.Segments || wrong.Valid != 0 {
		t.Errorf("wrong secret: %v", wrong)
	}
	none := c.Analyze(t, nil)
	if none.Unchecked != st.Segments || none.Unsigned != 0 {
		t.Errorf("no secret: %v", none)
	}
}

func TestCaptureUnsigned(t *testing.T) {
	ns := NewNS(t, "capplain")
	ln := listen(t, ns, nil)
	c := ns.StartCapture(t, "lo", ln.Addr().(*net.TCPAddr).Port)
	go func() {
		if conn, err := ln.Accept(); err == nil {
			_, _ = conn.Write([]byte("hello"))
			conn.Close()
		}
	}()
	conn, err := dial(ns, ln.Addr().String(), nil, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 5)
	_, _ = conn.Read(b)
	conn.Close()
	st := c.Stop(t, []byte("some-secret"))
	t.Log(st)
	if st.Segments < 5 || st.Unsigned != st.Segments || st.UnsignedSYNs != 1 || st.Valid+st.Invalid != 0 {
		t.Errorf("plain connection: %v", st)
	}
}

func TestMD5Counters(t *testing.T) {
	for _, tc := range []struct {
		name            string
		server, client  []byte
		want            func(MD5Counters) bool
		notFound, unexp bool
		failure         bool
	}{
		{name: "NotFound", server: []byte("k1"), client: nil, notFound: true},
		{name: "Unexpected", server: nil, client: []byte("k1"), unexp: true},
		{name: "Failure", server: []byte("k1"), client: []byte("k2"), failure: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := NewNS(t, "ctr")
			ln := listen(t, ns, tc.server)
			before := ns.MD5Counters(t)
			// The SYN is dropped, so the dial times out; the counter moves
			// with the first SYN.
			if c, err := dial(ns, ln.Addr().String(), tc.client, 300*time.Millisecond); err == nil {
				c.Close()
				t.Fatal("connection with mismatched keys succeeded")
			}
			d := ns.MD5Counters(t).Sub(before)
			t.Logf("delta %+v", d)
			if (d.NotFound > 0) != tc.notFound || (d.Unexpected > 0) != tc.unexp || (d.Failure > 0) != tc.failure {
				t.Errorf("counter delta %+v", d)
			}
		})
	}
}

func TestSSHDInetd(t *testing.T) {
	ns := NewNS(t, "sshd")
	s := NewSSHD(t)
	ln := listen(t, ns, nil)
	served := ServeInetd(t, ln, s.InetdArgs())
	args := append(s.SSHArgs(), "-p", strconv.Itoa(ln.Addr().(*net.TCPAddr).Port), "root@127.0.0.1", "echo ok")
	out, err := ns.Cmd("ssh", args...).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "ok" {
		t.Fatalf("ssh: %v: %q", err, out)
	}
	if n := served(); n != 1 {
		t.Errorf("served %d connections, want 1", n)
	}
}

func TestBuildBinary(t *testing.T) {
	p := BuildBinary(t, "internal/testnet/testdata/hello")
	if q := BuildBinary(t, Module+"/internal/testnet/testdata/hello"); q != p {
		t.Errorf("second build gave %s, want cached %s", q, p)
	}
	out, err := exec.Command(p).Output()
	if err != nil || strings.TrimSpace(string(out)) != "hello from testnet" {
		t.Errorf("%s: %v %q", p, err, out)
	}
}

func TestParseTcpdump(t *testing.T) {
	// Lines as tcpdump 4.99.3 prints them with -nn -vv [-M secret].
	out := `reading from file x.pcap, link-type EN10MB (Ethernet), snapshot length 262144
09:45:37.011472 IP (tos 0x0, ttl 64, id 33414, offset 0, flags [DF], proto TCP (6), length 72)
    127.0.0.1.58468 > 127.0.0.1.44849: Flags [S], cksum 0xfe3c (incorrect -> 0xd8fe), seq 3502990780, win 65495, options [nop,nop,md5 valid,mss 65495,nop,nop,sackOK,nop,wscale 10], length 0
09:45:37.011489 IP (tos 0x0, ttl 64, id 0, offset 0, flags [DF], proto TCP (6), length 72)
    127.0.0.1.44849 > 127.0.0.1.58468: Flags [S.], cksum 0xfe3c (incorrect -> 0xa447), seq 4210377744, ack 3502990781, win 65495, options [nop,nop,md5  (invalid),mss 65495,nop,nop,sackOK,nop,wscale 10], length 0
09:45:37.011504 IP (tos 0x0, ttl 64, id 33415, offset 0, flags [DF], proto TCP (6), length 60)
    127.0.0.1.58468 > 127.0.0.1.44849: Flags [R.], cksum 0xfe30 (incorrect -> 0x84d7), seq 1, ack 1, win 64, options [nop,nop,md5 shared secret not supplied with -M, can't check - 7ee89bf23777c1b04aae198b37cf0f61], length 0
09:45:37.011505 IP (tos 0x0, ttl 64, id 33415, offset 0, flags [DF], proto TCP (6), length 60)
    127.0.0.1.58468 > 127.0.0.1.44849: Flags [S], cksum 0xfe30 (incorrect -> 0x84d7), seq 1, win 64, options [mss 65495,sackOK,TS val 1 ecr 0,nop,wscale 10], length 0
`
	got := parseTcpdump(strings.NewReader(out))
	want := CaptureStats{Segments: 4, Valid: 1, Invalid: 1, Unchecked: 1, Unsigned: 1, SYNs: 2, SYNACKs: 1, RSTs: 1, UnsignedSYNs: 1}
	if got != want {
		t.Errorf("got  %v\nwant %v", got, want)
	}
}

func TestParseTcpdumpAO(t *testing.T) {
	// tcpdump 4.99.3 -nn -vv -S on TCP-AO segments (made with scapy): a
	// SYN with KeyID 1, the SYN-ACK with 101, a data segment, and an
	// unsigned RST; one IPv6 SYN.
	out := `12:32:17.381380 IP (tos 0x0, ttl 64, id 1, offset 0, flags [none], proto TCP (6), length 56)
    10.0.0.1.1234 > 10.0.0.2.2222: Flags [S], cksum 0x0fdb (correct), seq 1000, win 8192, options [tcp-ao keyid 1 rnextkeyid 101 mac 0x000000000000000000000000], length 0
12:32:17.381741 IP (tos 0x0, ttl 64, id 1, offset 0, flags [none], proto TCP (6), length 64)
    10.0.0.2.2222 > 10.0.0.1.1234: Flags [S.], cksum 0x1d08 (correct), seq 5000, ack 1001, win 8192, options [mss 1460,tcp-ao keyid 101 rnextkeyid 1 mac 0x111111111111111111111111,nop,eol], length 0
12:32:17.381800 IP (tos 0x0, ttl 64, id 2, offset 0, flags [none], proto TCP (6), length 80)
    10.0.0.1.1234 > 10.0.0.2.2222: Flags [P.], cksum 0x1d08 (correct), seq 1001:1021, ack 5001, win 8192, options [tcp-ao keyid 1 rnextkeyid 101 mac 0x222222222222222222222222], length 20
12:32:17.381900 IP (tos 0x0, ttl 64, id 3, offset 0, flags [none], proto TCP (6), length 40)
    10.0.0.1.1234 > 10.0.0.2.2222: Flags [R], cksum 0x1d08 (correct), seq 1021, win 0, length 0
12:32:17.382000 IP6 (flowlabel 0x12345, hlim 64, next-header TCP (6) payload length: 40) fd00::2.4321 > fd00::1.2222: Flags [S], cksum 0x1d08 (correct), seq 7, win 8192, options [tcp-ao keyid 9 rnextkeyid 109 mac 0x333333333333333333333333], length 0
`
	got := parseTcpdump(strings.NewReader(out))
	want := CaptureStats{Segments: 5, AO: 4, Unsigned: 1, SYNs: 2, SYNACKs: 1, RSTs: 1}
	if got != want {
		t.Errorf("got  %v\nwant %v", got, want)
	}
	flows, err := parseFlows(strings.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	if len(flows) != 3 {
		t.Fatalf("%d flows, want 3", len(flows))
	}
	c2s, s2c, six := flows[0], flows[1], flows[2]
	if c2s.Src.String() != "10.0.0.1:1234" || c2s.Segments != 3 || c2s.AOKeyIDs[1] != 2 || len(c2s.AOKeyIDs) != 1 || c2s.NextSeq != 1021 || c2s.LastAck != 5001 {
		t.Errorf("client to server: %+v", c2s)
	}
	if s2c.Src.String() != "10.0.0.2:2222" || s2c.SYNACKs != 1 || s2c.AOKeyIDs[101] != 1 || s2c.NextSeq != 5001 {
		t.Errorf("server to client: %+v", s2c)
	}
	if six.Src.String() != "[fd00::2]:4321" || six.AOKeyIDs[9] != 1 || six.NextSeq != 8 {
		t.Errorf("IPv6: %+v", six)
	}
}
