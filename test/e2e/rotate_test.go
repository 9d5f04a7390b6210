package e2e

import (
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestKeyRotation: the operator replaces the key file and sends
// sshd-md5-socket SIGHUP. A session opened with the old key lives on (its
// socket keeps its own copy of the key, and its segments stay signed with
// the old key); a new login with the old key gets no answer
// (TCPMD5Failure), one with the new key works.
func TestKeyRotation(t *testing.T) {
	l := newLab(t)
	shim := l.startShim()
	oldSecret := l.secret
	sess := l.openSession(true)

	newSecret := newSecret()
	// Same key file, new contents: what an operator rotating a key does.
	// The server keyring and the old client keyring share l.dir's
	// "server.key" and "client.key"; only the server's changes here.
	l.writeKeyring("server", "peers", newSecret, "0.0.0.0/0", "::/0")
	newClientKeyring := l.writeKeyring("client-new", "hosts", newSecret, l.server.a4.String(), l.server.a6.String())
	shim.cmd.Process.Signal(syscall.SIGHUP)
	shim.waitLog(`reload: .*0 added, 2 replaced, 0 deleted`, 20*time.Second)
	secrets := [][]byte{oldSecret, newSecret}

	// The established session: still answers, still signed with the
	// old key.
	capt := l.server.ns.StartCapture(t, l.server.ifc, protectedPort)
	echoErr := sess.echo("after-rotation", 15*time.Second)
	st := capt.Stop(t, oldSecret)
	t.Logf("open session after SIGHUP: echo %s; wire checked with the old key: %v", errOrOK(echoErr), st)
	if echoErr != nil {
		t.Fatalf("the open session did not survive the rotation: %v; ssh stderr:\n%s", echoErr, sess.stderr.log())
	}
	if st.Segments == 0 || st.Valid != st.Segments {
		t.Errorf("open session: want every segment signed with the old key, got %v", st)
	}

	// A new login with the old key: no answer.
	before := l.server.ns.MD5Counters(t)
	capt = l.server.ns.StartCapture(t, l.server.ifc, protectedPort)
	out, errb, err := l.runSSH(l.client.ns, l.sshArgs(true, l.server.a4, "-t 3s -k "+l.clientKeyring, "echo", "login-ok"), 90*time.Second)
	st = capt.Stop(t, oldSecret)
	stNew := capt.Analyze(t, newSecret)
	d := l.server.ns.MD5Counters(t).Sub(before)
	checkNoSecret(t, "ssh's stderr", errb, secrets)
	t.Logf("new login with the old key: %v; stderr: %s", err, strings.TrimSpace(errb))
	t.Logf("  wire checked with the old key: %v; with the new key: %v; server counters +%+v", st, stNew, d)
	if err == nil || out != "" {
		t.Errorf("login with the old key after rotation: %v, stdout %q; want no answer", err, out)
	}
	if st.SYNs == 0 || st.Valid != st.Segments || st.SYNACKs != 0 || stNew.Valid != 0 {
		t.Errorf("old-key login: want only old-key SYNs and no answer, got %v", st)
	}
	if d.Failure < uint64(st.SYNs) {
		t.Errorf("server TCPMD5Failure +%d, want at least the %d SYNs", d.Failure, st.SYNs)
	}

	// A new login with the new key: works, signed with the new key.
	capt = l.server.ns.StartCapture(t, l.server.ifc, protectedPort)
	out, errb, err = l.runSSH(l.client.ns, l.sshArgs(true, l.server.a4, "-k "+newClientKeyring, "echo", "login-ok"), 90*time.Second)
	st = capt.Stop(t, newSecret)
	checkNoSecret(t, "ssh's stderr", errb, secrets)
	t.Logf("new login with the new key: %s; wire checked with the new key: %v", errOrOK(err), st)
	if err != nil || out != "login-ok\n" {
		t.Fatalf("login with the new key: %v; stdout %q; stderr:\n%s", err, out, errb)
	}
	// The open session's segments, if any crossed meanwhile, are old-key
	// ones; the new login's are all new-key ones.
	if st.Valid == 0 || st.Unsigned != 0 || st.SYNs != 1 || st.UnsignedSYNs != 0 {
		t.Errorf("new-key login: want a single new-key SYN and valid signatures, got %v", st)
	}

	checkNoSecret(t, "sshd-md5-socket's log", shim.log(), secrets)

	// And the old session is still there at the end.
	if err := sess.echo("at-the-end", 15*time.Second); err != nil {
		t.Errorf("open session at the end: %v", err)
	}
}

func checkNoSecret(t *testing.T, what, text string, secrets [][]byte) {
	t.Helper()
	for _, s := range secrets {
		if strings.Contains(text, string(s)) {
			t.Errorf("a secret appears in %s", what)
		}
	}
}
