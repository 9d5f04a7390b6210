//go:build linux

package shim_test

import (
	"net"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sshmd5/sshmd5/internal/testnet"
)

// One key holder, from one host, keeps silent signed connections open
// (each would hold its slot until sshd's LoginGraceTime): past
// --per-source-max-startups the shim closes its new ones, while another
// key holder from another address still logs in. Then --max-startups:
// an authenticated session does not count against it, the connections
// not yet authenticated do, up to the bound and not one past it.
func TestPendingLimits(t *testing.T) {
	e := newEnv(t)
	hog := testnet.NewNS(t, "hog")
	hl := testnet.Connect(t, e.server, hog)
	k := e.secret()
	kr := e.keyring(map[string][]byte{"0.0.0.0/0": k})
	clientKeyring := e.keyFile(k)

	// hold opens n silent signed connections from the hog, each served
	// (sshd's banner read), and closes them at cleanup.
	hold := func(addr string, n int) []net.Conn {
		t.Helper()
		var cs []net.Conn
		for i := range n {
			c, err := dialIn(hog, addr, k, 5*time.Second)
			if err != nil {
				t.Fatalf("hog connection %d: %v", i+1, err)
			}
			t.Cleanup(func() { c.Close() })
			if b, err := banner(c); !strings.HasPrefix(b, "SSH-2.0-") {
				t.Fatalf("hog connection %d of %d, within the bound, got no banner (%q, %v)", i+1, n, b, err)
			}
			cs = append(cs, c)
		}
		return cs
	}
	refused := func(p *testnet.Proc, addr, wantLog string) {
		t.Helper()
		c, err := dialIn(hog, addr, k, 5*time.Second)
		if err != nil {
			t.Fatalf("hog connection past the bound: %v", err)
		}
		defer c.Close()
		expectClosed(t, c)
		p.WaitLog(`closed connection from `+regexp.QuoteMeta(c.LocalAddr().String())+`: `+wantLog, 5*time.Second)
	}

	t.Run("per-source", func(t *testing.T) {
		addr := hostPort(hl.AddrA4, port)
		p := e.start(nil, e.shim, append([]string{"-k", kr, "-l", "0.0.0.0:" + strconv.Itoa(port),
			"--max-startups", "10:30:20", "--per-source-max-startups", "3", "--"}, e.sshd.InetdArgs()...)...)
		p.WaitLog(`serving`, 10*time.Second)
		held := hold(addr, 3)
		refused(p, addr, `3 unauthenticated connections from `+regexp.QuoteMeta(hl.AddrB4.String())+`/32 already \(--per-source-max-startups 3\)`)
		e.login(e.link.AddrA4, port, clientKeyring, "another key holder, while the hog holds its 3")
		// A slot of the hog's frees once its sshd is gone.
		held[0].Close()
		waitServed(t, hog, addr, k, "the hog's freed slot never came back")
		p.Cmd.Process.Kill()
		<-p.Done
	})

	t.Run("max-startups", func(t *testing.T) {
		addr := hostPort(hl.AddrA4, port+1)
		p := e.start(nil, e.shim, append([]string{"-k", kr, "-l", "0.0.0.0:" + strconv.Itoa(port+1),
			"--max-startups", "2", "--per-source-max-startups", "10", "--"}, e.sshd.InetdArgs()...)...)
		p.WaitLog(`serving`, 10*time.Second)
		// An authenticated session first: it must not count.
		sess := e.openSession(hostPort(e.link.AddrA4, port+1), clientKeyring)
		hold(addr, 2)
		refused(p, addr, `2 unauthenticated connections \(--max-startups 2:100:2\)`)
		sess.check(t, "still-here")
		// Past FULL nobody new gets in, the other key holder neither:
		// that is the bound's price, as with sshd's MaxStartups.
		c, err := e.dial(hostPort(e.link.AddrA4, port+1), k, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		expectClosed(t, c)
	})
}
