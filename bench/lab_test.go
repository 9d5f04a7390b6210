//go:build bench && linux

package bench

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sshmd5/sshmd5/internal/tcpsig/md5"
	"github.com/sshmd5/sshmd5/internal/testnet"
)

// tpLab is one link of the throughput benchmark: a client and a server
// namespace (the same one for loopback) and the server's address as the
// client dials it, with a fresh secret and a client keyring for it.
type tpLab struct {
	name           string // "loopback" or "veth"
	client, server *testnet.NS
	addr           netip.Addr // the server, as the client dials it
	dir            string
	secret         md5.Secret // never printed
	keyring        string     // 0600 client keyring: [hosts."ADDR"] -> secret
}

// tpNewLoopback puts client and server in one namespace, on 127.0.0.1.
func tpNewLoopback(b *testing.B) *tpLab {
	b.Helper()
	ns := testnet.NewNS(b, "tplo")
	return tpFinish(b, &tpLab{name: "loopback", client: ns, server: ns, addr: netip.MustParseAddr("127.0.0.1")})
}

// tpNewVeth joins a client and a server namespace with a veth pair.
func tpNewVeth(b *testing.B) *tpLab {
	b.Helper()
	c, s := testnet.NewNS(b, "tpcli"), testnet.NewNS(b, "tpsrv")
	l := testnet.Connect(b, c, s)
	return tpFinish(b, &tpLab{name: "veth", client: c, server: s, addr: l.AddrB4})
}

func tpFinish(b *testing.B, l *tpLab) *tpLab {
	b.Helper()
	l.dir = b.TempDir()
	l.secret = tpSecret(b)
	l.keyring = tpKeyring(b, l.dir, l.secret, l.addr.String())
	return l
}

// tpSecret returns a random printable secret.
func tpSecret(*testing.B) md5.Secret { return md5.Secret(testnet.NewSecret()) }

// tpKeyring writes the secret to a 0600 key file and a 0600 client
// keyring with a [hosts] entry per name pointing at it.
func tpKeyring(b *testing.B, dir string, secret md5.Secret, names ...string) string {
	b.Helper()
	kf := filepath.Join(dir, "client.key")
	if err := os.WriteFile(kf, secret, 0o600); err != nil {
		b.Fatalf("write key file: %v", err)
	}
	var kr testnet.Keyring
	for _, n := range names {
		kr.Hosts = append(kr.Hosts, testnet.Host(n, kf))
	}
	p := filepath.Join(dir, "keyring.toml")
	kr.Write(b, p)
	return p
}

// serverKeys is what a keyed listener of the lab holds: the secret for
// every IPv4 peer.
func (l *tpLab) serverKeys() []md5.Key {
	return []md5.Key{{Prefix: netip.MustParsePrefix("0.0.0.0/0"), Secret: l.secret}}
}

// listen opens a TCP listener on the server's address in the server
// namespace, keyed with keys (none: plain).
func (l *tpLab) listen(b *testing.B, keys []md5.Key) *net.TCPListener {
	b.Helper()
	if len(keys) == 0 {
		keys = nil // plain
	}
	return l.server.Listen(b, "tcp4", netip.AddrPortFrom(l.addr, 0).String(), keys)
}

// dial connects from the client namespace to port, signing with secret
// (nil: plain).
func (l *tpLab) dial(port int, secret md5.Secret) (*net.TCPConn, error) {
	return l.client.Dial("tcp4", netip.AddrPortFrom(l.addr, uint16(port)).String(), secret, 10*time.Second)
}

func tpPort(ln net.Listener) int { return ln.Addr().(*net.TCPAddr).Port }

// tpXfer is one measured transfer: bytes counts what arrived after the
// first read, d the time from the first read's return to EOF. Leaving
// the first read out of both makes every case start its clock at its
// first byte, however long connecting took (a proxy starting, a
// descriptor being passed).
type tpXfer struct {
	bytes int64 // after the first read
	total int64
	d     time.Duration
	err   error
}

func (x tpXfer) mbps() float64 { return float64(x.bytes) / 1e6 / x.d.Seconds() }

const tpBufSize = 256 << 10

// tpDrain reads r to EOF with a tpBufSize buffer and times it.
func tpDrain(r io.Reader) tpXfer {
	buf := make([]byte, tpBufSize)
	var x tpXfer
	var t0 time.Time
	for {
		n, err := r.Read(buf)
		if x.total == 0 && n > 0 {
			t0 = time.Now()
		} else {
			x.bytes += int64(n)
		}
		x.total += int64(n)
		if err == io.EOF {
			break
		}
		if err != nil {
			x.err = err
			break
		}
	}
	x.d = time.Since(t0)
	if x.err == nil && x.bytes == 0 {
		x.err = fmt.Errorf("only %d bytes arrived, in one read", x.total)
	}
	return x
}

// tpBlock is the data every sender sends, over and over: random, so that
// nothing on the way could compress it.
var tpBlock = func() []byte {
	b := make([]byte, tpBufSize)
	_, _ = rand.Read(b)
	return b
}()

// tpSend writes n bytes of tpBlock to w, tpBufSize at a time.
func tpSend(w io.Writer, n int64) error {
	for n > 0 {
		p := tpBlock[:min(n, int64(len(tpBlock)))]
		m, err := w.Write(p)
		n -= int64(m)
		if err != nil {
			return err
		}
	}
	return nil
}

// tpLimit is how long a transfer of n bytes may take before the benchmark
// gives up on it: far beyond anything seen, only there to turn a hang
// into a failure.
func tpLimit(n int64) time.Duration {
	return 60*time.Second + time.Duration(n/1e6)*time.Second
}

// tpSink accepts connections and drains each to EOF, then closes it and
// reports the transfer.
type tpSink struct {
	ln  *net.TCPListener
	res chan tpXfer
}

func (l *tpLab) sink(b *testing.B, keys []md5.Key) *tpSink {
	b.Helper()
	s := &tpSink{ln: l.listen(b, keys), res: make(chan tpXfer, 4)}
	go func() {
		for {
			c, err := s.ln.Accept()
			if err != nil {
				return // closed at cleanup
			}
			c.SetReadDeadline(time.Now().Add(tpLimit(1 << 40)))
			x := tpDrain(c)
			c.Close()
			s.res <- x
		}
	}()
	return s
}

// wait returns the next transfer, or an error after limit.
func (s *tpSink) wait(limit time.Duration) tpXfer {
	select {
	case x := <-s.res:
		return x
	case <-time.After(limit):
		return tpXfer{err: fmt.Errorf("nothing arrived at the receiver within %v", limit)}
	}
}

// tpSource accepts connections and sends each n bytes, then closes it.
type tpSource struct {
	ln  *net.TCPListener
	mu  sync.Mutex
	n   int64
	err chan error
}

func (l *tpLab) source(b *testing.B, keys []md5.Key) *tpSource {
	b.Helper()
	s := &tpSource{ln: l.listen(b, keys), err: make(chan error, 4)}
	go func() {
		for {
			c, err := s.ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			n := s.n
			s.mu.Unlock()
			c.SetWriteDeadline(time.Now().Add(tpLimit(n)))
			err = tpSend(c, n)
			c.Close()
			s.err <- err
		}
	}()
	return s
}

func (s *tpSource) setSize(n int64) {
	s.mu.Lock()
	s.n = n
	s.mu.Unlock()
}

// tpSSHServer is sshd -i per connection behind a plain and behind a keyed
// listener in the lab's server namespace.
type tpSSHServer struct {
	sshd               *testnet.SSHD
	plainPort, md5Port int
}

func (l *tpLab) sshServer(b *testing.B, sshd *testnet.SSHD) *tpSSHServer {
	b.Helper()
	plain, keyed := l.listen(b, nil), l.listen(b, l.serverKeys())
	testnet.ServeInetd(b, plain, sshd.InetdArgs())
	testnet.ServeInetd(b, keyed, sshd.InetdArgs())
	return &tpSSHServer{sshd: sshd, plainPort: tpPort(plain), md5Port: tpPort(keyed)}
}

// tpRemoteTimed is the remote command of the ssh cases: it takes the
// first byte alone (dd bs=1 count=1 reads exactly one), prints the time,
// counts the rest, and prints the time again, so the server clocks the
// data phase without the login.
const tpRemoteTimed = "dd bs=1 count=1 status=none of=/dev/null && date +%s.%N && wc -c && date +%s.%N"

// tpParseTimed reads tpRemoteTimed's output: the bytes after the first
// and the time between the two stamps.
func tpParseTimed(out []byte) (int64, time.Duration, error) {
	f := strings.Fields(string(out))
	if len(f) != 3 {
		return 0, 0, fmt.Errorf("remote output %q: want a time, a count, a time", out)
	}
	t0, err0 := strconv.ParseFloat(f[0], 64)
	n, errn := strconv.ParseInt(f[1], 10, 64)
	t1, err1 := strconv.ParseFloat(f[2], 64)
	if err := errors.Join(err0, errn, err1); err != nil {
		return 0, 0, fmt.Errorf("remote output %q: %v", out, err)
	}
	return n, time.Duration((t1 - t0) * float64(time.Second)), nil
}

// tpDataFile writes n bytes of tpBlock to a file in dir.
func tpDataFile(b *testing.B, dir string, n int64) string {
	b.Helper()
	p := filepath.Join(dir, "data.bin")
	f, err := os.Create(p)
	if err != nil {
		b.Fatal(err)
	}
	if err := tpSend(f, n); err != nil {
		b.Fatalf("write %s: %v", p, err)
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	return p
}

// tpNoSecret fails if the secret appears in what a process printed.
func tpNoSecret(b *testing.B, secret md5.Secret, what string, out []byte) {
	b.Helper()
	if len(secret) > 0 && bytes.Contains(out, secret) {
		b.Fatalf("the secret appears in %s", what)
	}
}
