//go:build linux

package e2e

import (
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sshmd5/sshmd5/internal/testnet"
)

// TestKeyMismatchCases: the ways a client's key can fail to match the
// server's. The server's keyring has key A for 0.0.0.0/0 and ::/0 and key
// B for the client's own /32 (the kernel uses the longest matching
// prefix). A client signing with a key the server does not have gets no
// answer (TCPMD5Failure); one with no key for the host never sends a SYN
// (the proxy exits 255, "no key for"); one signing with A over IPv4 gets no
// answer, since its /32 needs B, while B works over IPv4 and A over IPv6.
func TestKeyMismatchCases(t *testing.T) {
	l := newLab(t)
	keyA, keyB, keyC := l.secret, newSecret(), newSecret()
	secrets := [][]byte{keyA, keyB, keyC}
	writeAtomic(t, filepath.Join(l.dir, "b.key"), keyB)
	writeAtomic(t, filepath.Join(l.dir, "c.key"), keyC)
	l.serverKeyring = filepath.Join(l.dir, "server-prefix-keyring.toml")
	testnet.Keyring{Peers: []testnet.Entry{
		testnet.Peer("0.0.0.0/0", filepath.Join(l.dir, "server.key")),
		testnet.Peer(l.client.a4.String()+"/32", filepath.Join(l.dir, "b.key")),
		testnet.Peer("::/0", filepath.Join(l.dir, "server.key")),
	}}.Write(t, l.serverKeyring)
	shim := l.startShim()

	clientKeyring := func(label, keyFile string, hosts ...string) string {
		var kr testnet.Keyring
		for _, h := range hosts {
			kr.Hosts = append(kr.Hosts, testnet.Host(h, filepath.Join(l.dir, keyFile)))
		}
		p := filepath.Join(l.dir, label+"-keyring.toml")
		kr.Write(t, p)
		return p
	}
	both := []string{l.server.a4.String(), l.server.a6.String()}
	krA := clientKeyring("client-a", "client.key", both...)
	krB := clientKeyring("client-b", "b.key", both...)
	krC := clientKeyring("client-c", "c.key", both...)
	// A keyring with a key, but for another host only.
	krNone := clientKeyring("client-none", "client.key", "192.0.2.1")

	type result struct {
		out, errb string
		err       error
		code      int
	}
	login := func(t *testing.T, kr string, v6 bool) (result, captureResult) {
		t.Helper()
		dst := l.server.a4
		if v6 {
			dst = l.server.a6
		}
		before := l.server.ns.MD5Counters(t)
		capt := l.server.ns.StartCapture(t, l.server.ifc, protectedPort)
		var r result
		r.out, r.errb, r.err = l.runSSH(l.client.ns, l.sshArgs(true, dst, "-t 3s -k "+kr, "echo", "login-ok"), 90*time.Second)
		var ee *exec.ExitError
		if errors.As(r.err, &ee) {
			r.code = ee.ExitCode()
		}
		capt.Stop(t, nil)
		var cr captureResult
		for i, s := range secrets {
			cr.st[i] = capt.Analyze(t, s)
		}
		cr.after = l.server.ns.MD5Counters(t)
		cr.before = before
		checkNoSecret(t, "ssh's stderr", r.errb, secrets)
		t.Logf("exit %d (%v); stdout %q; stderr: %s", r.code, r.err, r.out, strings.TrimSpace(r.errb))
		t.Logf("server counters before %+v, after %+v; wire checked with A: %v", before, cr.after, cr.st[0])
		return r, cr
	}
	const likely = "does not have this key or has another one"

	t.Run("wrong key", func(t *testing.T) {
		r, cr := login(t, krC, false)
		d := cr.after.Sub(cr.before)
		if r.err == nil || r.code != 255 || r.out != "" {
			t.Errorf("login with a key the server lacks: exit %d (%v), stdout %q; want 255 and no output", r.code, r.err, r.out)
		}
		if !strings.Contains(r.errb, likely) {
			t.Errorf("proxy's message does not say %q", likely)
		}
		st := cr.st[2] // checked with C, the key used
		if st.SYNs == 0 || st.Valid != st.Segments || st.SYNACKs != 0 {
			t.Errorf("want only SYNs signed with C and no answer, got %v", st)
		}
		if d.Failure < uint64(st.SYNs) {
			t.Errorf("TCPMD5Failure +%d, want at least the %d SYNs", d.Failure, st.SYNs)
		}
	})

	t.Run("missing key", func(t *testing.T) {
		r, cr := login(t, krNone, false)
		d := cr.after.Sub(cr.before)
		if r.code != 255 || r.out != "" {
			t.Errorf("login without a key: exit %d (%v), stdout %q; want 255", r.code, r.err, r.out)
		}
		if !strings.Contains(r.errb, "no key for "+l.server.a4.String()) {
			t.Errorf("proxy's message does not say %q", "no key for "+l.server.a4.String())
		}
		if st := cr.st[0]; st.Segments != 0 {
			t.Errorf("want nothing on the wire, got %v", st)
		}
		if d != (testnet.MD5Counters{}) {
			t.Errorf("server counters moved: +%+v", d)
		}
	})

	t.Run("key for another prefix", func(t *testing.T) {
		r, cr := login(t, krA, false)
		d := cr.after.Sub(cr.before)
		if r.err == nil || r.code != 255 || r.out != "" {
			t.Errorf("IPv4 login with A (the client's /32 needs B): exit %d (%v), stdout %q; want 255", r.code, r.err, r.out)
		}
		if !strings.Contains(r.errb, likely) {
			t.Errorf("proxy's message does not say %q", likely)
		}
		st := cr.st[0]
		if st.SYNs == 0 || st.Valid != st.Segments || st.SYNACKs != 0 {
			t.Errorf("want only SYNs signed with A and no answer, got %v", st)
		}
		if d.Failure < uint64(st.SYNs) {
			t.Errorf("TCPMD5Failure +%d, want at least the %d SYNs", d.Failure, st.SYNs)
		}

		r, cr = login(t, krB, false)
		if r.err != nil || r.out != "login-ok\n" {
			t.Errorf("IPv4 login with B: %v, stdout %q; want it to work", r.err, r.out)
		}
		if st := cr.st[1]; st.SYNs != 1 || st.Valid != st.Segments || st.Unsigned != 0 {
			t.Errorf("IPv4 login with B: want every segment signed with B, got %v", st)
		}
		t.Logf("  wire checked with B: %v", cr.st[1])

		r, cr = login(t, krA, true)
		if r.err != nil || r.out != "login-ok\n" {
			t.Errorf("IPv6 login with A (::/0): %v, stdout %q; want it to work", r.err, r.out)
		}
		if st := cr.st[0]; st.SYNs != 1 || st.Valid != st.Segments || st.Unsigned != 0 {
			t.Errorf("IPv6 login with A: want every segment signed with A, got %v", st)
		}
	})
	checkNoSecret(t, "sshd-md5-socket's log", shim.Log(), secrets)
}

// captureResult is one login's capture, checked with each key, and the
// server's counters around it.
type captureResult struct {
	st            [3]testnet.CaptureStats
	before, after testnet.MD5Counters
}
