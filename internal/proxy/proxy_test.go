//go:build linux

package proxy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sshmd5/sshmd5/internal/tcpsig"
	"github.com/sshmd5/sshmd5/internal/tcpsig/md5"
	"github.com/sshmd5/sshmd5/internal/testnet"
)

const testSecret = "proxy-test-secret-value"

func TestNoAnswerMessage(t *testing.T) {
	e := &NoAnswerError{Host: "bastion", Port: "22", Tried: []string{"192.0.2.7", "2001:db8::7"},
		Timeout: 10 * time.Second, KeyName: "hosts.bastion"}
	want := "bastion port 22: no answer within 10s from 192.0.2.7, 2001:db8::7 (signed with the key from hosts.bastion). " +
		"Likely causes: the server does not have this key or has another one; " +
		"a NAT between you and the server rewrites addresses, which breaks TCP-MD5; the host is down or filtered; " +
		"nothing listens on that port (its reset is unsigned, so it is dropped and looks the same)."
	if got := e.Error(); got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
	// Without attempts or key name the message stays grammatical.
	e = &NoAnswerError{Host: "h", Port: "22"}
	if got := e.Error(); !strings.HasPrefix(got, "h port 22: no answer. Likely causes:") {
		t.Errorf("bare: %q", got)
	}
}

func TestRefusedMessage(t *testing.T) {
	e := &RefusedError{Host: "bastion", Port: "2222", Tried: []string{"192.0.2.7"}, KeyName: "hosts.bastion"}
	want := "bastion port 2222: connection refused by 192.0.2.7 (signed with the key from hosts.bastion). " +
		"Nothing accepts connections on that port: the TCP-MD5 listener or sshd is not running, the port is wrong, or a firewall rejects it."
	if got := e.Error(); got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
}

func TestClassify(t *testing.T) {
	o := Options{Host: "h", Port: "22", Timeout: time.Second, KeyName: "hosts.h"}
	op := func(err error) error { return &net.OpError{Op: "dial", Net: "tcp", Err: err} }
	var na *NoAnswerError
	if err := classify(op(os.ErrDeadlineExceeded), o, []string{"192.0.2.1"}); !errors.As(err, &na) || na.Tried[0] != "192.0.2.1" {
		t.Errorf("deadline: got %v", err)
	}
	var re *RefusedError
	if err := classify(op(os.NewSyscallError("connect", unix.ECONNREFUSED)), o, []string{"192.0.2.1"}); !errors.As(err, &re) {
		t.Errorf("refused: got %v", err)
	}
	err := classify(op(&net.DNSError{Err: "no such host", Name: "h", IsNotFound: true}), o, nil)
	if got := err.Error(); !strings.HasPrefix(got, "h port 22: resolving h: ") {
		t.Errorf("dns: got %q", got)
	}
	err = classify(op(os.NewSyscallError("connect", unix.ENETUNREACH)), o, []string{"192.0.2.1"})
	if got := err.Error(); got != "h port 22: connecting to 192.0.2.1: connect: network is unreachable" {
		t.Errorf("unreachable: got %q", got)
	}
}

// keyedListener listens on 127.0.0.1 in a new namespace, keyed with
// secret for every IPv4 peer.
func keyedListener(t *testing.T, secret md5.Secret) (*testnet.NS, net.Listener) {
	t.Helper()
	ns := testnet.NewNS(t, "proxy")
	return ns, keyedListenerAt(t, ns, netip.MustParseAddr("127.0.0.1"), secret)
}

// keyedListenerAt listens on addr (any port) in ns, keyed with secret for
// every IPv4 peer.
func keyedListenerAt(t *testing.T, ns *testnet.NS, addr netip.Addr, secret md5.Secret) net.Listener {
	t.Helper()
	return ns.Listen(t, "tcp4", netip.AddrPortFrom(addr, 0).String(), []md5.Key{
		{Prefix: netip.MustParsePrefix("0.0.0.0/0"), Secret: secret},
	})
}

// serveOne accepts one connection on ln in the background and hands it
// to serve, closing it when serve returns.
func serveOne(ln net.Listener, serve func(c net.Conn)) {
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		serve(c)
	}()
}

// dialIn runs Dial inside ns. A literal address is dialled on the calling
// goroutine, so the socket is created in the namespace.
func dialIn(ns *testnet.NS, o Options) (c *net.TCPConn, err error) {
	derr := ns.Do(func() error {
		c, err = Dial(context.Background(), o)
		return nil
	})
	if derr != nil {
		return nil, derr
	}
	return c, err
}

// dialTestKey dials ln's address from ns, signed with testSecret.
func dialTestKey(t *testing.T, ns *testnet.NS, ln net.Listener) *net.TCPConn {
	t.Helper()
	addr := ln.Addr().(*net.TCPAddr)
	conn, err := dialIn(ns, Options{Host: addr.IP.String(), Port: portOf(ln), Timeout: 5 * time.Second, Keys: mdKeys(testSecret)})
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	return conn
}

// mdKeys returns TCP-MD5 dial keys with the given secrets.
func mdKeys(secrets ...string) []tcpsig.Key {
	out := make([]tcpsig.Key, len(secrets))
	for i, s := range secrets {
		out[i] = tcpsig.Key{Secret: tcpsig.Secret(s)}
	}
	return out
}

func portOf(ln net.Listener) string { return fmt.Sprint(ln.Addr().(*net.TCPAddr).Port) }

// TestSendFD passes a signed connection over a socketpair the way ssh
// receives it and checks the descriptor that arrives: one byte, one fd, a
// connected TCP socket carrying our key for the peer.
func TestSendFD(t *testing.T) {
	ns, ln := keyedListener(t, md5.Secret(testSecret))
	go func() {
		if c, err := ln.Accept(); err == nil {
			t.Cleanup(func() { c.Close() })
		}
	}()
	conn := dialTestKey(t, ns, ln)
	defer conn.Close()

	sp, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	if err != nil {
		t.Fatalf("socketpair: %v", err)
	}
	ours := os.NewFile(uintptr(sp[0]), "stdout")
	defer ours.Close()
	defer unix.Close(sp[1])
	if err := SendFD(ours, conn); err != nil {
		t.Fatalf("SendFD: %v", err)
	}
	buf, oob := make([]byte, 16), make([]byte, unix.CmsgSpace(4*4))
	n, oobn, _, _, err := unix.Recvmsg(sp[1], buf, oob, 0)
	if err != nil {
		t.Fatalf("recvmsg: %v", err)
	}
	if n != 1 {
		t.Errorf("got %d data bytes, ssh wants exactly 1", n)
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		t.Fatalf("control messages: %d, %v", len(msgs), err)
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		t.Fatalf("rights: %v, %v", fds, err)
	}
	fd := fds[0]
	defer unix.Close(fd)
	peer, err := unix.Getpeername(fd)
	if err != nil {
		t.Fatalf("received fd is not a connected socket: %v", err)
	}
	if p := peer.(*unix.SockaddrInet4); fmt.Sprint(p.Port) != portOf(ln) {
		t.Errorf("received socket's peer port %d, want %s", p.Port, portOf(ln))
	}
	// Keys asks sock_diag, which answers for the caller's namespace.
	var keys []md5.Key
	if err := ns.Do(func() error {
		ts, err := tcpsig.Inspect(fd)
		if err != nil {
			return fmt.Errorf("Inspect: %w", err)
		}
		s := md5.Socket{Socket: ts}
		keys, err = s.Keys()
		return err
	}); err != nil {
		t.Fatalf("reading the received socket's keys: %v", err)
	}
	if len(keys) != 1 || keys[0].Prefix != netip.MustParsePrefix("127.0.0.1/32") || !keys[0].Secret.Equal(md5.Secret(testSecret)) {
		t.Errorf("received socket's keys: %v, want our secret for 127.0.0.1/32", keys)
	}
}

func TestCheckFDPass(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	if err := CheckFDPass(w); err == nil || !strings.Contains(err.Error(), "ProxyUseFdpass yes") {
		t.Errorf("pipe: got %v, want the ProxyUseFdpass hint", err)
	}
	f, err := os.Create(t.TempDir() + "/out")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := SendFD(f, &net.TCPConn{}); err == nil || !strings.Contains(err.Error(), "not a unix socket") {
		t.Errorf("file: got %v", err)
	}
}

// TestCopyHalfClose: the server answers only after our EOF, so Copy must
// half-close at stdin EOF and keep reading.
func TestCopyHalfClose(t *testing.T) {
	ns, ln := keyedListener(t, md5.Secret(testSecret))
	serveOne(ln, func(c net.Conn) {
		h := sha256.New()
		if _, err := io.Copy(h, c); err != nil {
			return
		}
		fmt.Fprintf(c, "%x\n", h.Sum(nil))
	})
	conn := dialTestKey(t, ns, ln)
	data := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		w.Write(data)
		w.Close()
	}()
	defer r.Close()
	var out bytes.Buffer
	done := make(chan error, 1)
	go func() { done <- Copy(conn, r, &out) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Copy: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Copy did not return 30s after stdin EOF: no half-close?")
	}
	if want := fmt.Sprintf("%x\n", sha256.Sum256(data)); out.String() != want {
		t.Errorf("server answered %q, want %q", out.String(), want)
	}
}

// TestDialWrongKey: the listener drops our SYNs; Dial reports NoAnswerError
// with the address it tried, at the timeout.
func TestDialWrongKey(t *testing.T) {
	ns, ln := keyedListener(t, md5.Secret(testSecret))
	start := time.Now()
	_, err := dialIn(ns, Options{Host: "127.0.0.1", Port: portOf(ln), Timeout: time.Second,
		Keys: mdKeys("another-secret"), KeyName: "hosts.x"})
	var na *NoAnswerError
	if !errors.As(err, &na) {
		t.Fatalf("got %v, want NoAnswerError", err)
	}
	if len(na.Tried) != 1 || na.Tried[0] != "127.0.0.1" {
		t.Errorf("Tried = %v", na.Tried)
	}
	if el := time.Since(start); el > 6*time.Second {
		t.Errorf("took %v with -t 1s", el)
	}
	if strings.Contains(err.Error(), "another-secret") {
		t.Errorf("the secret is in the error")
	}
}

// TestDialFailsClosed: when the key cannot be set, no connection is made,
// not even to a listener that would take it unsigned.
func TestDialFailsClosed(t *testing.T) {
	ns := testnet.NewNS(t, "closed")
	var ln net.Listener
	if err := ns.Do(func() error {
		var err error
		ln, err = net.Listen("tcp4", "127.0.0.1:0") // plain: accepts unsigned
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan struct{}, 1)
	go func() {
		if c, err := ln.Accept(); err == nil {
			c.Close()
			accepted <- struct{}{}
		}
	}()
	tooLong := md5.Secret(strings.Repeat("k", md5.MaxKeyLen+1))
	// A list with a bad key is refused whole: a key that cannot be set
	// must not leave its socket to connect unsigned beside the others.
	for _, ks := range [][]tcpsig.Key{nil, {{}}, {{Secret: tooLong}}, {{Secret: md5.Secret("ok")}, {}}} {
		c, err := dialIn(ns, Options{Host: "127.0.0.1", Port: portOf(ln), Timeout: 2 * time.Second, Keys: ks})
		if err == nil {
			c.Close()
			t.Errorf("keys %d: Dial succeeded", len(ks))
		}
		if strings.Contains(fmt.Sprint(err), string(tooLong)) {
			t.Errorf("the secret is in the error")
		}
	}
	select {
	case <-accepted:
		t.Error("the listener accepted a connection: an unsigned dial went out")
	case <-time.After(500 * time.Millisecond):
	}
}
