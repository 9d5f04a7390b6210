//go:build linux

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sshmd5/sshmd5/internal/testnet"
)

// attackSetup opens a protected and an unprotected ssh session from the
// client, lets the attacker sniff one round trip of each from the shared
// segment, and returns what it learnt.
type target struct {
	name      string
	protected bool
	port      int
	sess      *testnet.Session
	c2s, s2c  *flow
}

func (l *lab) attackSetup(t *testing.T, shimArgs ...string) []*target {
	t.Helper()
	l.startShim(shimArgs...)
	l.startPlain()
	targets := []*target{
		{name: "protected", protected: true, port: protectedPort},
		{name: "unprotected", protected: false, port: plainPort},
	}
	for _, tg := range targets {
		tg.sess = l.openSession(tg.protected)
	}
	// The attacker listens on the segment while one line goes through
	// each session. The sessions are idle afterwards (no keepalives), so
	// the last sequence numbers seen stay the next ones.
	sn := l.sniff(fmt.Sprintf("tcp port %d or tcp port %d", protectedPort, plainPort))
	for _, tg := range targets {
		if err := tg.sess.Echo("sniffed-"+tg.name, 30*time.Second); err != nil {
			t.Fatalf("%s session: %v", tg.name, err)
		}
	}
	flows := sn.stop(t, l.client.a4, l.server.a4, protectedPort, plainPort)
	for _, tg := range targets {
		tg.c2s, tg.s2c = clientFlow(t, flows, l.client.a4, l.server.a4, tg.port)
		t.Logf("%s session: attacker sniffed client %v -> server %v, client's next seq %d, server's next seq %d",
			tg.name, tg.c2s.src, tg.c2s.dst, tg.c2s.nextSeq, tg.s2c.nextSeq)
	}
	return targets
}

// TestSpoofedRST: an attacker on the segment, knowing the exact sequence
// number, resets an ordinary TCP connection with one forged RST; the same
// RST against a TCP-MD5 signed connection is dropped by the server's
// kernel (TCPMD5NotFound) and the ssh session carries on.
//
// In --stealth closed the unsigned RST is no different: a closed port does
// not answer a RST either, so the table leaves it to the listener.
func TestSpoofedRST(t *testing.T) {
	for _, mode := range []string{"filtered", "closed"} {
		t.Run(mode, func(t *testing.T) { testSpoofedRST(t, mode) })
	}
}

func testSpoofedRST(t *testing.T, mode string) {
	l := newLab(t)
	targets := l.attackSetup(t, "--stealth", mode)
	for _, tg := range targets {
		before := l.server.ns.MD5Counters(t)
		capt := l.server.ns.StartCapture(t, l.server.ifc, tg.port)
		// Spoofing the client: its address and port, the server's
		// exact rcv_nxt (Linux takes a RST only at exactly that
		// sequence number, RFC 5961; anything else in the window only
		// draws a challenge ACK).
		l.hping("-R", "-k", "-a", l.client.a4.String(),
			"-s", strconv.Itoa(int(tg.c2s.src.Port())), "-p", strconv.Itoa(tg.port),
			"-M", strconv.FormatUint(uint64(tg.c2s.nextSeq), 10), l.server.a4.String())
		// Give the server time to act on it, then use the session.
		time.Sleep(500 * time.Millisecond)
		echoErr := tg.sess.Echo("after-rst-"+tg.name, 15*time.Second)
		var secret []byte
		if tg.protected {
			secret = l.secret
		}
		st := capt.Stop(t, secret)
		d := l.server.ns.MD5Counters(t).Sub(before)
		t.Logf("%s: after the spoofed RST, echo through the session: %v; server wire: %v; server counters +%+v",
			tg.name, errOrOK(echoErr), st, d)
		if tg.protected {
			if echoErr != nil {
				t.Errorf("protected session did not survive the RST: %v; ssh stderr:\n%s", echoErr, tg.sess.Stderr.String())
			}
			if d.NotFound < 1 {
				t.Errorf("server TCPMD5NotFound +%d, want the RST counted", d.NotFound)
			}
			// On the wire: exactly the one forged RST unsigned, every
			// other segment validly signed.
			if st.RSTs != 1 || st.Unsigned != 1 || st.Invalid != 0 || st.Valid != st.Segments-1 || st.Valid == 0 {
				t.Errorf("protected wire: want 1 unsigned RST and only valid signatures otherwise, got %v", st)
			}
		} else {
			if echoErr == nil {
				t.Errorf("the unprotected session survived the spoofed RST: the attack did not work, so the protected half proves nothing")
			}
			if !tg.sess.WaitExit(30 * time.Second) {
				t.Errorf("ssh of the unprotected session still running after the reset")
			} else {
				t.Logf("unprotected ssh exited: %v; stderr: %s", tg.sess.Err(), strings.TrimSpace(tg.sess.Stderr.String()))
				if tg.sess.Err() == nil {
					t.Errorf("unprotected ssh exited 0 after the reset")
				}
			}
			if st.RSTs < 2 || st.Valid+st.Invalid+st.Unchecked != 0 {
				t.Errorf("unprotected wire: want the forged RST and the server's own RST, all unsigned, got %v", st)
			}
		}
	}
}

// TestInjectedData: the attacker forges a data segment with the exact
// sequence and acknowledgement numbers, spoofing the client. An ordinary
// connection takes it into the ssh byte stream, which breaks the session;
// a signed one drops it (TCPMD5NotFound) and the session's data is intact.
//
// In --stealth closed the server also answers the forged segment as a
// closed port would, with an unsigned RST to the spoofed client, which
// the client's kernel drops (it holds the key): the session carries on.
func TestInjectedData(t *testing.T) {
	for _, mode := range []string{"filtered", "closed"} {
		t.Run(mode, func(t *testing.T) { testInjectedData(t, mode) })
	}
}

func testInjectedData(t *testing.T, mode string) {
	l := newLab(t)
	targets := l.attackSetup(t, "--stealth", mode)
	payload := filepath.Join(l.dir, "payload")
	if err := os.WriteFile(payload, []byte(strings.Repeat("INJECTED", 8)), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tg := range targets {
		before, clientBefore := l.server.ns.MD5Counters(t), l.client.ns.MD5Counters(t)
		capt := l.server.ns.StartCapture(t, l.server.ifc, tg.port)
		l.hping("-P", "-A", "-k", "-a", l.client.a4.String(),
			"-s", strconv.Itoa(int(tg.c2s.src.Port())), "-p", strconv.Itoa(tg.port),
			"-M", strconv.FormatUint(uint64(tg.c2s.nextSeq), 10),
			"-L", strconv.FormatUint(uint64(tg.s2c.nextSeq), 10),
			"-d", "64", "-E", payload, l.server.a4.String())
		time.Sleep(500 * time.Millisecond)
		echoErr := tg.sess.Echo("after-inject-"+tg.name, 15*time.Second)
		var secret []byte
		if tg.protected {
			secret = l.secret
		}
		st := capt.Stop(t, secret)
		d := l.server.ns.MD5Counters(t).Sub(before)
		dc := l.client.ns.MD5Counters(t).Sub(clientBefore)
		t.Logf("%s: after 64 injected bytes, echo through the session: %v; server wire: %v; server counters +%+v, client counters +%+v",
			tg.name, errOrOK(echoErr), st, d, dc)
		if tg.protected {
			if echoErr != nil {
				t.Errorf("protected session damaged by the injection: %v; ssh stderr:\n%s", echoErr, tg.sess.Stderr.String())
			}
			switch {
			case mode == "filtered" && d.NotFound < 1:
				t.Errorf("server TCPMD5NotFound +%d, want the injected segment counted", d.NotFound)
			case mode == "closed" && (d.NotFound != 0 || dc.NotFound < 1):
				// The table answers the segment before the listener
				// sees it; the client drops the unsigned answer.
				t.Errorf("closed mode: server TCPMD5NotFound +%d, client +%d; want 0 (answered, not dropped) and at least 1 (the client dropped the unsigned RST)", d.NotFound, dc.NotFound)
			}
			wantUnsigned, wantRSTs := 1, 0 // the injected segment
			if mode == "closed" {
				wantUnsigned, wantRSTs = 2, 1 // and the closed-port answer
			}
			if st.Unsigned != wantUnsigned || st.RSTs != wantRSTs || st.Invalid != 0 || st.Valid != st.Segments-wantUnsigned || st.Valid == 0 {
				t.Errorf("protected wire: want %d unsigned segment(s) (%d RST) and only valid signatures otherwise, got %v", wantUnsigned, wantRSTs, st)
			}
			// And the stream carries on exactly: a few more lines.
			for i := range 3 {
				if err := tg.sess.Echo(fmt.Sprintf("still-%d", i), 15*time.Second); err != nil {
					t.Errorf("protected session after the injection: %v", err)
				}
			}
		} else {
			if echoErr == nil {
				t.Errorf("the unprotected session took 64 forged bytes without noticing: the attack did not work, so the protected half proves nothing")
			}
			// The forged bytes went into sshd's stream: either sshd
			// rejects the garbage and disconnects, or it waits for the
			// rest of a "packet" that never comes while the client's
			// real bytes, now "old", are discarded (desynchronised, an
			// ACK storm). Either way the session is lost; which one
			// depends on the garbage's decrypted length, so only log it.
			if tg.sess.WaitExit(2 * time.Second) {
				t.Logf("unprotected ssh exited: %v; stderr: %s", tg.sess.Err(), strings.TrimSpace(tg.sess.Stderr.String()))
			} else {
				t.Logf("unprotected ssh is hung (desynchronised stream)")
			}
		}
	}
}

func errOrOK(err error) string {
	if err == nil {
		return "ok"
	}
	return err.Error()
}
