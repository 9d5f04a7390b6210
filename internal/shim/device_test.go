//go:build linux

package shim_test

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// A listener bound to the server's veth (SO_BINDTODEVICE, what systemd's
// BindToDevice= does), passed as LISTEN_FDS: a signed ssh login through
// it is served. The accepted connection inherits the device binding, and
// the shim's key check must find it in sock_diag by that device; it used
// to close every such connection ("sock_diag does not list it").
func TestBoundDeviceListener(t *testing.T) {
	e := newEnv(t)
	k := e.secret()
	kr := e.keyring(map[string][]byte{"0.0.0.0/0": k, "::/0": k})
	var ln net.Listener
	err := e.server.Do(func() error {
		lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
			var serr error
			err := c.Control(func(fd uintptr) {
				serr = unix.SetsockoptString(int(fd), unix.SOL_SOCKET, unix.SO_BINDTODEVICE, e.link.IfA)
			})
			if err != nil {
				return err
			}
			return serr
		}}
		lc.SetMultipathTCP(false)
		var err error
		ln, err = lc.Listen(t.Context(), "tcp", "[::]:"+strconv.Itoa(port))
		return err
	})
	if err != nil {
		t.Fatalf("listening bound to %s: %v", e.link.IfA, err)
	}
	f, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	p := e.start([]*os.File{f}, "sh", append([]string{"-c", `export LISTEN_PID=$$ LISTEN_FDS=1; exec "$0" "$@"`, e.shim, "-k", kr, "--"}, e.sshd.InetdArgs()...)...)
	f.Close()
	ln.Close()
	p.WaitLog(`serving`, 10*time.Second)
	for _, a := range []netip.Addr{e.link.AddrA4, e.link.AddrA6} {
		// The shim's output is logged at cleanup if this fails.
		e.login(a, port, e.keyFile(k), fmt.Sprintf("signed ssh login to %s through a listener bound to %s", a, e.link.IfA))
	}
	if strings.Contains(p.Log(), "cannot check its TCP-MD5 key") {
		t.Fatalf("the shim could not check a connection's key:\n%s", p.Log())
	}
	e.expectNoAnswer(hostPort(e.link.AddrA4, port), nil)
}

// An IPv6 link-local peer (fe80::, scope of the veth) on a plain [::]
// listener: the kernel binds the accepted connection to the interface,
// and the shim must still read its key and serve it.
func TestLinkLocalPeer(t *testing.T) {
	e := newEnv(t)
	k4, k6 := e.secret(), e.secret()
	kr := e.keyring(map[string][]byte{"0.0.0.0/0": k4, "::/0": k6})
	// Fixed link-local addresses without DAD, usable at once.
	e.server.Run(t, "ip", "-6", "addr", "add", "fe80::a/64", "dev", e.link.IfA, "nodad")
	e.client.Run(t, "ip", "-6", "addr", "add", "fe80::b/64", "dev", e.link.IfB, "nodad")
	p := e.start(nil, e.shim, append([]string{"-k", kr, "-l", "[::]:" + strconv.Itoa(port), "--"}, e.sshd.InetdArgs()...)...)
	p.WaitLog(`serving`, 10*time.Second)
	addr := "[fe80::a%" + e.link.IfB + "]:" + strconv.Itoa(port)
	c, err := e.dial(addr, k6, 5*time.Second)
	if err != nil {
		t.Fatalf("signed dial to %s: %v", addr, err)
	}
	defer c.Close()
	if b, err := banner(c); !strings.HasPrefix(b, "SSH-2.0-") {
		t.Fatalf("signed link-local connection got no banner (%q, %v):\n%s", b, err, p.Log())
	}
	p.WaitLog(`connection from \[fe80::b%?[^\]]*\]:\d+ \(peers ::/0\) -> sshd pid`, 5*time.Second)
	e.expectNoAnswer(addr, nil)
}
