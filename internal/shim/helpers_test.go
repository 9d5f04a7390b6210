//go:build linux

package shim_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sshmd5/sshmd5/internal/tcpsig"
	"github.com/sshmd5/sshmd5/internal/tcpsig/md5"
	"github.com/sshmd5/sshmd5/internal/testnet"
)

// env is one test's pair of namespaces with sshd set up.
type env struct {
	t              *testing.T
	server, client *testnet.NS
	link           *testnet.Link
	sshd           *testnet.SSHD
	shim           string
	proxy          string // ssh-md5-proxy, the client side of every login
	dir            string
	secrets        [][]byte // every secret written, to check logs for leaks
}

func newEnv(t *testing.T, sshdExtra ...string) *env {
	t.Helper()
	testnet.RequireRoot(t)
	e := &env{t: t, dir: t.TempDir()}
	e.server = testnet.NewNS(t, "srv")
	e.client = testnet.NewNS(t, "cli")
	e.link = testnet.Connect(t, e.server, e.client)
	e.sshd = testnet.NewSSHD(t, sshdExtra...)
	e.shim = testnet.BuildBinary(t, "cmd/sshd-md5-socket")
	e.proxy = testnet.BuildBinary(t, "cmd/ssh-md5-proxy")
	return e
}

// secret returns a fresh random key; tests compare keys, never print them.
func (e *env) secret() []byte {
	s := testnet.NewSecret()
	e.secrets = append(e.secrets, s)
	return s
}

// keyFile writes secret into a 0600 key file and returns a client keyring
// that signs for every host with it, for ssh-md5-proxy -k.
func (e *env) keyFile(secret []byte) string {
	f, err := os.CreateTemp(e.dir, "key")
	if err != nil {
		e.t.Fatal(err)
	}
	f.Write(secret)
	f.Close()
	kr := f.Name() + ".toml"
	testnet.Keyring{Hosts: []testnet.Entry{testnet.Host("*", f.Name())}}.Write(e.t, kr)
	return kr
}

// proxyCommand is the ssh option that signs through ssh-md5-proxy with the
// client keyring from keyFile.
func (e *env) proxyCommand(keyring string) string {
	return "ProxyCommand=" + e.proxy + " -k " + keyring + " %h %p"
}

// writeKeyring (re)writes the keyring atomically, as an operator's editor
// or config management would, with inline keys.
func (e *env) writeKeyring(path string, peers map[string][]byte) {
	e.t.Helper()
	var kr testnet.Keyring
	for p, s := range peers {
		kr.Peers = append(kr.Peers, testnet.Entry{Name: p, Key: s})
	}
	slices.SortFunc(kr.Peers, func(a, b testnet.Entry) int { return strings.Compare(a.Name, b.Name) })
	kr.Write(e.t, path)
}

// keyring writes the server keyring keyring.toml in the test's directory
// with inline keys for peers and returns its path.
func (e *env) keyring(peers map[string][]byte) string {
	e.t.Helper()
	kr := filepath.Join(e.dir, "keyring.toml")
	e.writeKeyring(kr, peers)
	return kr
}

func (e *env) writeFile(path, text string) {
	e.t.Helper()
	testnet.WriteFile(e.t, path, text)
}

// start runs name args in the server namespace (see testnet.Proc), with
// every secret of the test kept out of its output.
func (e *env) start(extra []*os.File, name string, args ...string) *testnet.Proc {
	e.t.Helper()
	p := e.server.NewProc(name, args...)
	p.Cmd.ExtraFiles = extra
	// sshd children keep the stderr pipe open after the shim exits; Wait
	// then reports exec.ErrWaitDelay for a shim that exited 0.
	p.Cmd.WaitDelay = 500 * time.Millisecond
	p.Secrets = func() [][]byte { return e.secrets }
	return p.Start(e.t)
}

// dial connects from the client namespace, signed with secret (nil: unsigned).
func (e *env) dial(addr string, secret []byte, timeout time.Duration) (net.Conn, error) {
	return dialIn(e.client, addr, secret, timeout)
}

// dialIn connects from namespace ns, signed with secret (nil: unsigned).
func dialIn(ns *testnet.NS, addr string, secret []byte, timeout time.Duration) (net.Conn, error) {
	c, err := ns.Dial("tcp", addr, secret, timeout)
	if err != nil {
		return nil, err // not a nil *net.TCPConn in a non-nil net.Conn
	}
	return c, nil
}

// served makes n connections from the client namespace to addr, signed
// with secret, 8 at a time, and fails the test unless sshd's banner
// arrives on each. With hold it returns them open (and closes them at
// cleanup); without, each is closed once its banner is read.
func (e *env) served(addr string, secret []byte, n int, hold bool) []net.Conn {
	e.t.Helper()
	var (
		mu   sync.Mutex
		held []net.Conn
	)
	err := testnet.Parallel(n, 8, func(int) error {
		c, err := e.dial(addr, secret, 5*time.Second)
		if err != nil {
			return err
		}
		if hold {
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		} else {
			defer c.Close()
		}
		if b, err := banner(c); !strings.HasPrefix(b, "SSH-2.0-") {
			return fmt.Errorf("no banner: %q, %v", b, err)
		}
		return nil
	})
	e.t.Cleanup(func() {
		for _, c := range held {
			c.Close()
		}
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return held
}

// waitServed dials addr from ns, signed with secret, until sshd's banner
// comes back, as it does once a slot frees (a session's sshd has exited),
// and fails with msg after 10 s.
func waitServed(t *testing.T, ns *testnet.NS, addr string, secret []byte, msg string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		c, err := dialIn(ns, addr, secret, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := banner(c)
		c.Close()
		if strings.HasPrefix(b, "SSH-2.0-") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(msg)
		}
	}
}

// banner reads the first line sshd sends.
func banner(c net.Conn) (string, error) {
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	l, err := bufio.NewReader(c).ReadString('\n')
	c.SetReadDeadline(time.Time{})
	return l, err
}

// ssh logs in from the client namespace through ssh-md5-proxy
// and runs command; it returns the combined output.
func (e *env) ssh(host netip.Addr, port int, keyring string, command ...string) (string, error) {
	args := append(e.sshd.SSHArgs(), "-o", e.proxyCommand(keyring), "-p", strconv.Itoa(port), "root@"+host.String())
	cmd := e.client.Cmd("ssh", append(args, command...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// login logs in from the client namespace through ssh-md5-proxy with
// keyring and runs echo, failing the test with what unless it works.
func (e *env) login(host netip.Addr, port int, keyring, what string) {
	e.t.Helper()
	if out, err := e.ssh(host, port, keyring, "echo", "login-ok"); err != nil || !strings.Contains(out, "login-ok") {
		e.t.Fatalf("%s: %v: %s", what, err, out)
	}
}

// listenerKeys reads back, through the kernel, the keys on every listening
// socket of process pid: local address -> prefix -> secret. It takes a
// copy of each socket with pidfd_getfd; the secrets are only compared.
func (e *env) listenerKeys(pid int) map[string]map[string]md5.Secret {
	e.t.Helper()
	pfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		e.t.Fatalf("pidfd_open %d: %v", pid, err)
	}
	defer unix.Close(pfd)
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		e.t.Fatal(err)
	}
	res := map[string]map[string]md5.Secret{}
	for _, ent := range ents {
		n, _ := strconv.Atoi(ent.Name())
		link, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%d", pid, n))
		if !strings.HasPrefix(link, "socket:") {
			continue
		}
		fd, err := unix.PidfdGetfd(pfd, n, 0)
		if err != nil {
			continue
		}
		acc, _ := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN)
		ts, ierr := tcpsig.Inspect(fd)
		sock := md5.Socket{Socket: ts}
		if acc != 1 || ierr != nil {
			unix.Close(fd)
			continue
		}
		var keys []md5.Key
		err = e.server.Do(func() error {
			var err error
			keys, err = sock.Keys()
			return err
		})
		sa, _ := unix.Getsockname(fd)
		unix.Close(fd)
		if err != nil {
			e.t.Fatalf("reading keys of fd %d of pid %d: %v", n, pid, err)
		}
		m := map[string]md5.Secret{}
		for _, k := range keys {
			m[k.Prefix.String()] = k.Secret
		}
		res[sockaddrString(sa)] = m
	}
	return res
}

func sockaddrString(sa unix.Sockaddr) string {
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port)).String()
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(a.Addr), uint16(a.Port)).String()
	}
	return "?"
}

// checkKeys fails unless the listener at addr carries exactly want.
func (e *env) checkKeys(pid int, addr string, want map[string][]byte) {
	e.t.Helper()
	all := e.listenerKeys(pid)
	got, ok := all[addr]
	if !ok {
		names := []string{}
		for a := range all {
			names = append(names, a)
		}
		e.t.Fatalf("pid %d has no listener on %s (has %v)", pid, addr, names)
	}
	var gotP, wantP []string
	for p := range got {
		gotP = append(gotP, p)
	}
	for p := range want {
		wantP = append(wantP, p)
	}
	sort.Strings(gotP)
	sort.Strings(wantP)
	if strings.Join(gotP, " ") != strings.Join(wantP, " ") {
		e.t.Fatalf("listener %s carries keys for %v, want %v", addr, gotP, wantP)
	}
	for p, s := range want {
		if !got[p].Equal(s) {
			e.t.Fatalf("listener %s: the key for %s is not the keyring's", addr, p)
		}
	}
}

// expectNoAnswer checks that a dial signed with secret (nil: unsigned)
// gets no SYN-ACK and that the server's drop counters moved.
func (e *env) expectNoAnswer(addr string, secret []byte) {
	e.t.Helper()
	before := e.server.MD5Counters(e.t)
	if err := e.client.Unanswered(addr, secret, 2*time.Second); err != nil {
		e.t.Fatal(err)
	}
	d := e.server.MD5Counters(e.t).Sub(before)
	if secret == nil && d.NotFound == 0 {
		e.t.Fatalf("unsigned dial: TCPMD5NotFound did not move (%+v)", d)
	}
	if secret != nil && d.Failure == 0 {
		e.t.Fatalf("wrong-key dial: TCPMD5Failure did not move (%+v)", d)
	}
}

// expectClosed checks that sshd never speaks on c: the shim closed it.
func expectClosed(t *testing.T, c net.Conn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, err := io.ReadAll(c)
	if len(b) > 0 {
		t.Fatalf("the queued unsigned connection received %q; want EOF or reset", b)
	}
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("the queued unsigned connection stayed open")
	}
}
