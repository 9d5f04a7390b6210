//go:build linux

package guest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sshmd5/sshmd5/internal/tcpsig"
	"github.com/sshmd5/sshmd5/internal/tcpsig/ao"
	"github.com/sshmd5/sshmd5/internal/tcpsig/md5"
	"github.com/sshmd5/sshmd5/internal/testnet"
)

// The TCP-AO backend (internal/tcpsig/ao) against the guest kernel's
// TCP-AO: what it sets, reads back and deletes, and what the kernel then
// lets in, judged by handshakes from another namespace and the kernel's
// TcpExt TCPAO* counters.

const aoPort = 2223

var anyV4 = netip.MustParsePrefix("0.0.0.0/0")

// aoKey is a listener's key for prefix p: send_id and recv_id as the
// server sees them.
func aoKey(name string, p netip.Prefix, send, recv uint8, alg string) tcpsig.Key {
	return tcpsig.Key{Prefix: p, Secret: testnet.NewSecret(), AO: &tcpsig.AO{
		Name: name, SendID: send, RecvID: recv, Algorithm: alg, MACLen: tcpsig.AODefaultMACLen,
	}}
}

// client is the peer's side of server key k: the same secret and MAC with
// the IDs the other way round.
func client(k tcpsig.Key) tcpsig.Key {
	c := k.Public()
	c.Secret = k.Secret
	c.AO.SendID, c.AO.RecvID = k.AO.RecvID, k.AO.SendID
	return c
}

type aoNet struct {
	server, client *testnet.NS
	link           *testnet.Link
}

func newAONet(t *testing.T) *aoNet {
	t.Helper()
	n := &aoNet{server: testnet.NewNS(t, "aosrv"), client: testnet.NewNS(t, "aocli")}
	n.link = testnet.Connect(t, n.server, n.client)
	return n
}

func (n *aoNet) addr() string { return netip.AddrPortFrom(n.link.AddrA4, aoPort).String() }

// listen opens a TCP-AO listener in the server namespace, keyed (and
// sealed) before bind and listen by tcpsig.ListenControl.
func (n *aoNet) listen(t *testing.T, keys []tcpsig.Key) (*net.TCPListener, tcpsig.Socket) {
	t.Helper()
	return n.listenOn(t, "tcp4", fmt.Sprintf("0.0.0.0:%d", aoPort), keys)
}

func (n *aoNet) listenOn(t *testing.T, network, addr string, keys []tcpsig.Key) (*net.TCPListener, tcpsig.Socket) {
	t.Helper()
	var ln net.Listener
	err := n.server.Do(func() error {
		lc := net.ListenConfig{Control: tcpsig.ListenControl(ao.Backend, keys)}
		lc.SetMultipathTCP(false)
		var err error
		ln, err = lc.Listen(context.Background(), network, addr)
		return err
	})
	if err != nil {
		t.Fatalf("TCP-AO listener: %v", err)
	}
	t.Cleanup(func() { ln.Close() })
	tl := ln.(*net.TCPListener)
	s, err := tcpsig.FromConn(mustRaw(t, tl))
	if err != nil {
		t.Fatal(err)
	}
	return tl, s
}

// dial connects from the client namespace with k (nil: unsigned).
func (n *aoNet) dial(k *tcpsig.Key) (net.Conn, error) { return n.dialTo(n.addr(), k) }

func (n *aoNet) dialTo(addr string, k *tcpsig.Key) (net.Conn, error) {
	d := net.Dialer{Timeout: 3 * time.Second}
	if k != nil {
		d.Control = ao.Backend.DialControl(*k)
	}
	var c net.Conn
	err := n.client.Do(func() error {
		var err error
		c, err = d.Dial("tcp", addr)
		return err
	})
	return c, err
}

func (n *aoNet) counters(t *testing.T) ao.Counters {
	t.Helper()
	var c ao.Counters
	if err := n.server.Do(func() error {
		var err error
		c, err = ao.ReadCountersAt("/proc/thread-self/net/netstat")
		return err
	}); err != nil {
		t.Fatalf("TCP-AO counters of the server: %v", err)
	}
	return c
}

// expectIn dials with the client side of k, checks the server accepts the
// connection and that ao.Current on the accepted socket names k's IDs.
func (n *aoNet) expectIn(t *testing.T, what string, ln *net.TCPListener, k tcpsig.Key) {
	t.Helper()
	n.expectInAt(t, what, n.addr(), ln, k)
}

func (n *aoNet) expectInAt(t *testing.T, what, addr string, ln *net.TCPListener, k tcpsig.Key) {
	t.Helper()
	type got struct {
		send, recv uint8
		err        error
	}
	ch := make(chan got, 1)
	go func() {
		c, err := ln.AcceptTCP()
		if err != nil {
			ch <- got{err: err}
			return
		}
		defer c.Close()
		var g got
		rc, _ := c.SyscallConn()
		if err := rc.Control(func(fd uintptr) { g.send, g.recv, g.err = ao.Current(int(fd)) }); err != nil {
			g.err = err
		}
		ch <- g
	}()
	ck := client(k)
	c, err := n.dialTo(addr, &ck)
	if err != nil {
		ln.SetDeadline(time.Now()) // end the Accept
		<-ch
		ln.SetDeadline(time.Time{})
		t.Fatalf("%s: a client signing with %s got no connection: %v", what, ck, err)
	}
	defer c.Close()
	g := <-ch
	switch {
	case g.err != nil:
		t.Fatalf("%s: %s connected, but ao.Current on the accepted socket: %v", what, ck, g.err)
	case g.send != k.AO.SendID || g.recv != k.AO.RecvID:
		t.Errorf("%s: %s connected; ao.Current on the accepted socket = send_id %d, recv_id %d, want %d, %d", what, ck, g.send, g.recv, k.AO.SendID, k.AO.RecvID)
	default:
		t.Logf("%s: %s connected, accepted socket's key send_id %d recv_id %d", what, ck, g.send, g.recv)
	}
}

// expectOut checks that a client signing with c (nil: unsigned) gets no
// answer, and that the server's counter picked by which counted it.
func (n *aoNet) expectOut(t *testing.T, what string, c *tcpsig.Key, which func(ao.Counters) uint64, counter string) {
	t.Helper()
	before := n.counters(t)
	conn, err := n.dial(c)
	var ne net.Error
	switch {
	case err == nil:
		conn.Close()
		t.Fatalf("%s: the client connected; want no answer", what)
	case !errors.As(err, &ne) || !ne.Timeout():
		t.Fatalf("%s: %v; want no answer (a timeout)", what, err)
	}
	if d := n.counters(t).Sub(before); which(d) == 0 {
		t.Errorf("%s: no answer, but the server's %s did not count it (%+v)", what, counter, d)
	}
}

func required(c ao.Counters) uint64 { return c.Required }
func bad(c ao.Counters) uint64      { return c.Bad }
func notFound(c ao.Counters) uint64 { return c.KeyNotFound }

// sameKeys compares a read-back with what was set, secrets included.
func sameKeys(t *testing.T, what string, got, want []tcpsig.Key) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: read back %d keys %v, want %d %v", what, len(got), got, len(want), want)
	}
	for _, w := range want {
		found := false
		for _, g := range got {
			if g.ID() == w.ID() {
				found = true
				if !g.Same(w) {
					t.Errorf("%s: key %s read back as %+v (algorithm %s, MAC %d, secret equal: %v), want algorithm %s, MAC %d",
						what, w, g.ID(), g.AO.Algorithm, g.AO.MACLen, g.Secret.Equal(w.Secret), w.AO.Algorithm, w.AO.MACLen)
				}
			}
		}
		if !found {
			t.Errorf("%s: key %s not read back (got %v)", what, w, got)
		}
	}
}

func TestAOSupported(t *testing.T) {
	if err := ao.Supported(); err != nil {
		t.Fatalf("ao.Supported() on the TCP-AO guest kernel: %v", err)
	}
}

// TestAOKeysRoundTrip: several keys for 0.0.0.0/0 on one listener, told
// apart by their IDs; Keys reads them back with their secrets; IDs reused
// give EEXIST with the key that has them; Delete removes one.
func TestAOKeysRoundTrip(t *testing.T) {
	n := newAONet(t)
	alice := aoKey("alice", anyV4, 101, 1, tcpsig.AOHMACSHA256)
	bob := aoKey("bob", anyV4, 102, 2, tcpsig.AOHMACSHA256)
	_, s := n.listen(t, []tcpsig.Key{alice, bob})
	b := ao.Backend
	if err := b.Uncovered(s, nil); err != nil {
		t.Errorf("Uncovered on a listener sealed by Install: %v", err)
	}
	have, err := b.Keys(s)
	if err != nil {
		t.Fatal(err)
	}
	sameKeys(t, "after Install", have, []tcpsig.Key{alice, bob})

	carol := aoKey("carol", anyV4, 103, 2, tcpsig.AOHMACSHA256) // bob's recv_id
	err = b.Set(s, carol)
	if !errors.Is(err, unix.EEXIST) || !strings.Contains(err.Error(), "recv_id 2 is taken by the key for 0.0.0.0/0") {
		t.Errorf("a key reusing bob's recv_id: %v, want EEXIST naming the key that has it", err)
	} else {
		t.Logf("a key reusing bob's recv_id: %v", err)
	}
	if strings.Contains(fmt.Sprint(err), string(carol.Secret)) {
		t.Error("the error shows the secret")
	}
	dave := aoKey("dave", netip.PrefixFrom(n.link.AddrB4, 32), 101, 4, tcpsig.AOHMACSHA256) // alice's send_id, overlapping prefix
	if err := b.Set(s, dave); !errors.Is(err, unix.EEXIST) || !strings.Contains(err.Error(), "send_id 101 is taken") {
		t.Errorf("a /32 key reusing alice's send_id: %v, want EEXIST", err)
	}

	lo := aoKey("lo", anyV4, 120, 20, tcpsig.AOHMACSHA256)
	lo.Ifindex = 1 // lo: not a VRF
	if err := b.Set(s, lo); !errors.Is(err, unix.EINVAL) || !strings.Contains(err.Error(), "interface lo (index 1) is not an L3 master device (VRF)") {
		t.Errorf("a key bound to lo: %v, want EINVAL saying lo is not a VRF", err)
	}

	if err := b.Delete(s, bob); err != nil {
		t.Fatalf("deleting bob's key: %v", err)
	}
	have, err = b.Keys(s)
	if err != nil {
		t.Fatal(err)
	}
	sameKeys(t, "after deleting bob", have, []tcpsig.Key{alice})
	if err := b.Delete(s, bob); !errors.Is(err, unix.ENOENT) {
		t.Errorf("deleting bob's key again: %v, want ENOENT", err)
	}

	// Set with a key already there replaces its secret.
	alice2 := alice
	alice2.Secret = testnet.NewSecret()
	if err := b.Set(s, alice2); err != nil {
		t.Fatalf("replacing alice's secret: %v", err)
	}
	have, _ = b.Keys(s)
	sameKeys(t, "after replacing alice's secret", have, []tcpsig.Key{alice2})
}

// TestAODualStack: an IPv6 socket that takes IPv4 peers holds IPv6 keys
// and IPv4 ones (as v4-mapped addresses) and reads the latter back as
// IPv4; an IPv4 catch-all, which the kernel cannot hold there, is refused
// with the way out.
func TestAODualStack(t *testing.T) {
	n := newAONet(t)
	v6 := aoKey("alice", netip.MustParsePrefix("::/0"), 101, 1, tcpsig.AOHMACSHA256)
	v4 := aoKey("alice", netip.PrefixFrom(n.link.AddrB4, 24).Masked(), 101, 1, tcpsig.AOHMACSHA256)
	ln, s := n.listenOn(t, "tcp", fmt.Sprintf("[::]:%d", aoPort), []tcpsig.Key{v6, v4})
	if !s.Takes4 || !s.Takes6 {
		t.Fatalf("the [::] listener takes %s peers, want both", s.Families())
	}
	have, err := ao.Backend.Keys(s)
	if err != nil {
		t.Fatal(err)
	}
	sameKeys(t, "dual-stack", have, []tcpsig.Key{v6, v4})
	n.expectInAt(t, "IPv6 client", netip.AddrPortFrom(n.link.AddrA6, aoPort).String(), ln, v6)
	n.expectInAt(t, "IPv4 client", netip.AddrPortFrom(n.link.AddrA4, aoPort).String(), ln, v4)
	all4 := aoKey("bob", anyV4, 102, 2, tcpsig.AOHMACSHA256)
	if err := ao.Backend.Set(s, all4); err == nil || !strings.Contains(err.Error(), "listen on an IPv4 address (0.0.0.0)") {
		t.Errorf("an IPv4 catch-all on a dual-stack socket: %v, want a refusal that says to listen on 0.0.0.0", err)
	}
}

// TestAOOptmem: keys past net.core.optmem_max fail with the sysctl named.
func TestAOOptmem(t *testing.T) {
	n := newAONet(t)
	n.server.Run(t, "sysctl", "-qw", "net.core.optmem_max=4096")
	_, s := n.listen(t, nil)
	var err error
	// In the namespace, as the shim runs: the message reads its
	// optmem_max.
	n.server.Do(func() error {
		for i := range 200 {
			if err = ao.Backend.Set(s, aoKey("u", anyV4, uint8(i), uint8(i), tcpsig.AOHMACSHA256)); err != nil {
				t.Logf("key %d: %v", i+1, err)
				break
			}
		}
		return nil
	})
	if !errors.Is(err, unix.ENOMEM) || !strings.Contains(err.Error(), "net.core.optmem_max (4096 bytes)") {
		t.Errorf("keys past optmem_max 4096: %v, want ENOMEM naming net.core.optmem_max and its value", err)
	}
}

// TestAOSeal: ao_required works on a socket without keys, and a sealed
// listener gives an unsigned client no answer (TCPAORequired counts it),
// whether or not it has keys that cover the client.
func TestAOSeal(t *testing.T) {
	n := newAONet(t)
	var ln net.Listener
	if err := n.server.Do(func() error {
		lc := net.ListenConfig{}
		lc.SetMultipathTCP(false)
		var err error
		ln, err = lc.Listen(context.Background(), "tcp4", fmt.Sprintf("0.0.0.0:%d", aoPort))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	s, err := tcpsig.FromConn(mustRaw(t, ln.(*net.TCPListener)))
	if err != nil {
		t.Fatal(err)
	}
	if err := ao.Backend.Uncovered(s, nil); !errors.Is(err, ao.ErrNotSealed) {
		t.Errorf("Uncovered on a plain listener: %v, want ErrNotSealed", err)
	}
	if c, err := n.dial(nil); err != nil {
		t.Fatalf("unsigned dial to the plain listener: %v", err)
	} else {
		c.Close()
	}
	// The unsigned connection has no key: ao.Current says so in the way
	// ao.NoKey recognises.
	if a, err := ln.(*net.TCPListener).AcceptTCP(); err != nil {
		t.Fatal(err)
	} else {
		rc, _ := a.SyscallConn()
		var cerr error
		rc.Control(func(fd uintptr) { _, _, cerr = ao.Current(int(fd)) })
		if !ao.NoKey(cerr) {
			t.Errorf("ao.Current on an unsigned connection: %v, want an error ao.NoKey takes for no key", cerr)
		}
		a.Close()
	}
	if err := ao.Backend.Seal(s); err != nil {
		t.Fatalf("sealing a listener with no keys: %v", err)
	}
	if err := ao.Backend.Uncovered(s, nil); err != nil {
		t.Errorf("Uncovered after Seal: %v", err)
	}
	if keys, err := ao.Backend.Keys(s); err != nil || len(keys) != 0 {
		t.Errorf("Keys of a sealed listener without keys: %v, %v", keys, err)
	}
	n.expectOut(t, "sealed, no keys, unsigned client", nil, required, "TCPAORequired")
	if err := ao.Backend.Seal(s); err != nil {
		t.Errorf("sealing twice: %v", err)
	}
	ln.Close()

	// With keys (Install seals first): the unsigned client matches the
	// 0.0.0.0/0 keys' prefix but carries no MAC.
	alice := aoKey("alice", anyV4, 101, 1, tcpsig.AOHMACSHA256)
	l2, _ := n.listen(t, []tcpsig.Key{alice})
	n.expectOut(t, "sealed with keys, unsigned client", nil, required, "TCPAORequired")
	n.expectIn(t, "sealed with keys, alice", l2, alice)
}

// TestAOSealRefusesMD5: a socket with a TCP-MD5 key cannot be sealed, and
// the error says why.
func TestAOSealRefusesMD5(t *testing.T) {
	n := newAONet(t)
	ln := n.server.Listen(t, "tcp4", fmt.Sprintf("0.0.0.0:%d", aoPort), []md5.Key{{Prefix: anyV4, Secret: testnet.NewSecret()}})
	s, err := tcpsig.FromConn(mustRaw(t, ln))
	if err != nil {
		t.Fatal(err)
	}
	if err := ao.Backend.Seal(s); !errors.Is(err, unix.EKEYREJECTED) || !strings.Contains(err.Error(), "TCP-MD5") {
		t.Errorf("sealing a socket with a TCP-MD5 key: %v, want EKEYREJECTED naming TCP-MD5", err)
	} else {
		t.Logf("sealing a socket with a TCP-MD5 key: %v", err)
	}
}

// TestAODialCurrent: alice and bob each connect with their own key to a
// listener holding both, and ao.Current on the accepted socket names the
// key the client's SYN chose; a wrong secret and an unknown KeyID get no
// answer.
func TestAODialCurrent(t *testing.T) {
	n := newAONet(t)
	alice := aoKey("alice", anyV4, 101, 1, tcpsig.AOHMACSHA256)
	bob := aoKey("bob", anyV4, 102, 2, tcpsig.AOHMACSHA256)
	ln, _ := n.listen(t, []tcpsig.Key{alice, bob})
	n.expectIn(t, "alice", ln, alice)
	n.expectIn(t, "bob", ln, bob)
	n.expectIn(t, "alice again", ln, alice)

	wrong := client(alice)
	wrong.Secret = testnet.NewSecret()
	n.expectOut(t, "alice's IDs, wrong secret", &wrong, bad, "TCPAOBad")
	unknown := client(alice)
	unknown.AO.SendID = 9 // no server key has recv_id 9
	n.expectOut(t, "unknown KeyID", &unknown, notFound, "TCPAOKeyNotFound")
	n.expectOut(t, "unsigned", nil, required, "TCPAORequired")
}

// TestAOReconcile: tcpsig.Reconcile moves a live listener from {alice,
// bob} to {alice with a new secret, carol}: carol is added before bob is
// deleted, alice's secret replaced; then each key lets in exactly whom it
// should.
func TestAOReconcile(t *testing.T) {
	n := newAONet(t)
	alice := aoKey("alice", anyV4, 101, 1, tcpsig.AOHMACSHA256)
	bob := aoKey("bob", anyV4, 102, 2, tcpsig.AOHMACSHA256)
	ln, s := n.listen(t, []tcpsig.Key{alice, bob})
	b := ao.Backend
	reconcile := func(want []tcpsig.Key) tcpsig.Diff {
		t.Helper()
		have, err := b.Keys(s)
		if err != nil {
			t.Fatal(err)
		}
		d, err := tcpsig.Reconcile(b, s, have, want)
		if err != nil {
			t.Fatalf("Reconcile: %v", err)
		}
		return d
	}
	if d := reconcile([]tcpsig.Key{alice, bob}); !d.Empty() {
		t.Errorf("reconciling the keys already there: %s, want no change", d)
	}
	alice2 := alice
	alice2.Secret = testnet.NewSecret()
	carol := aoKey("carol", anyV4, 103, 3, tcpsig.AOHMACSHA256)
	d := reconcile([]tcpsig.Key{alice2, carol})
	if len(d.Added) != 1 || d.Added[0].ID() != carol.ID() || len(d.Replaced) != 1 || d.Replaced[0].ID() != alice.ID() ||
		len(d.Deleted) != 1 || d.Deleted[0].ID() != bob.ID() {
		t.Errorf("reconcile {alice, bob} -> {alice', carol}: added %v, replaced %v, deleted %v", d.Added, d.Replaced, d.Deleted)
	}
	have, _ := b.Keys(s)
	sameKeys(t, "after reconcile", have, []tcpsig.Key{alice2, carol})
	n.expectIn(t, "carol, added", ln, carol)
	n.expectIn(t, "alice, new secret", ln, alice2)
	old := client(alice)
	n.expectOut(t, "alice, old secret", &old, bad, "TCPAOBad")
	gone := client(bob)
	n.expectOut(t, "bob, deleted", &gone, notFound, "TCPAOKeyNotFound")
}

// TestAOAlgorithms: each MAC the kernel offers signs a connection, and
// Keys reads its name and secret back as they were set. A cmac(aes128)
// secret of another length than AES-128's 16 bytes is kept by the kernel
// as the key RFC 5926's KDF derives from it; the backend still reports
// the secret it set, so a reconcile with the same keys changes nothing.
func TestAOAlgorithms(t *testing.T) {
	for i, c := range []struct {
		alg    string
		keyLen int // 0: testnet.NewSecret's
	}{{tcpsig.AOHMACSHA1, 0}, {tcpsig.AOHMACSHA256, 0}, {tcpsig.AOCMACAES128, 16}, {tcpsig.AOCMACAES128, 0}} {
		name := strings.NewReplacer("(", "-", ")", "").Replace(c.alg)
		if c.keyLen != 0 {
			name += fmt.Sprintf("-%dbytes", c.keyLen)
		}
		t.Run(name, func(t *testing.T) {
			n := newAONet(t)
			k := aoKey("user", anyV4, uint8(110+i), uint8(10+i), c.alg)
			if c.keyLen != 0 {
				k.Secret = k.Secret[:c.keyLen]
			}
			ln, s := n.listen(t, []tcpsig.Key{k})
			have, err := ao.Backend.Keys(s)
			if err != nil {
				t.Fatal(err)
			}
			sameKeys(t, c.alg, have, []tcpsig.Key{k})
			if d, err := tcpsig.Reconcile(ao.Backend, s, have, []tcpsig.Key{k}); err != nil || !d.Empty() {
				t.Errorf("reconciling the same key: %s, %v; want no change", d, err)
			}
			n.expectIn(t, c.alg, ln, k)
		})
	}
}
