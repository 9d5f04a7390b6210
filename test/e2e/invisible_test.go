//go:build linux

package e2e

import (
	"errors"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"
)

// TestPortInvisibility: to an attacker without the key, the protected port
// looks like a host that is not there (SYNs go unanswered: no SYN-ACK, no
// RST, TCPMD5NotFound counts them), while a closed port on the same host
// answers at once with a RST ("connection refused"). A port scanner sees
// the ssh port as filtered, not open.
func TestPortInvisibility(t *testing.T) {
	l := newLab(t)
	l.startShim()

	// Sanity: the legitimate client gets in, so the silence below is
	// not a dead server.
	out, errb, err := l.runSSH(l.client.ns, l.sshArgs(true, l.server.a4, "-k "+l.clientKeyring, "echo", "login-ok"), 60*time.Second)
	if err != nil || out != "login-ok\n" {
		t.Fatalf("signed login from the client: %v; stdout %q; stderr:\n%s", err, out, errb)
	}

	for _, dst := range []netip.Addr{l.server.a4, l.server.a6} {
		t.Run(map[bool]string{true: "v4", false: "v6"}[dst.Is4()], func(t *testing.T) {
			dial := func(port int) (time.Duration, error) {
				var err error
				start := time.Now()
				derr := l.attacker.ns.Do(func() error {
					d := net.Dialer{Timeout: 2 * time.Second}
					c, err2 := d.Dial("tcp", netip.AddrPortFrom(dst, uint16(port)).String())
					if c != nil {
						c.Close()
					}
					err = err2
					return nil
				})
				if derr != nil {
					t.Fatal(derr)
				}
				return time.Since(start), err
			}

			before := l.server.ns.MD5Counters(t)
			capt := l.server.ns.StartCapture(t, l.server.ifc, protectedPort)
			protElapsed, protErr := dial(protectedPort)
			st := capt.Stop(t, nil)
			d := l.server.ns.MD5Counters(t).Sub(before)

			capt = l.server.ns.StartCapture(t, l.server.ifc, closedPort)
			closedElapsed, closedErr := dial(closedPort)
			stClosed := capt.Stop(t, nil)

			t.Logf("protected port %d: %v after %v; wire: %v; server counters +%+v",
				protectedPort, protErr, protElapsed.Round(time.Millisecond), st, d)
			t.Logf("closed port %d: %v after %v; wire: %v",
				closedPort, closedErr, closedElapsed.Round(time.Millisecond), stClosed)

			var ne net.Error
			if protErr == nil || !errors.As(protErr, &ne) || !ne.Timeout() {
				t.Errorf("unsigned dial to the protected port: %v; want a timeout", protErr)
			}
			if st.SYNs == 0 || st.UnsignedSYNs != st.SYNs {
				t.Errorf("want the attacker's unsigned SYNs on the wire, got %v", st)
			}
			if st.SYNACKs != 0 || st.RSTs != 0 || st.Segments != st.SYNs {
				t.Errorf("the server answered on the protected port: %v", st)
			}
			if d.NotFound < uint64(st.SYNs) {
				t.Errorf("TCPMD5NotFound +%d, want at least the %d SYNs", d.NotFound, st.SYNs)
			}
			if !errors.Is(closedErr, syscall.ECONNREFUSED) {
				t.Errorf("dial to the closed port: %v; want connection refused", closedErr)
			}
			if stClosed.RSTs != 1 || stClosed.SYNs != 1 {
				t.Errorf("closed port: want one SYN answered by one RST, got %v", stClosed)
			}
		})
	}
}
