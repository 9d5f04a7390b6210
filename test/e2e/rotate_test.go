//go:build linux

package e2e

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sshmd5/sshmd5/internal/fingerprint"
	"github.com/sshmd5/sshmd5/internal/testnet"
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
	shim.Cmd.Process.Signal(syscall.SIGHUP)
	shim.WaitLog(`reload: .*0 added, 2 replaced, 0 deleted`, 20*time.Second)
	secrets := [][]byte{oldSecret, newSecret}

	// The established session: still answers, still signed with the
	// old key.
	capt := l.server.ns.StartCapture(t, l.server.ifc, protectedPort)
	echoErr := sess.Echo("after-rotation", 15*time.Second)
	st := capt.Stop(t, oldSecret)
	t.Logf("open session after SIGHUP: echo %s; wire checked with the old key: %v", errOrOK(echoErr), st)
	if echoErr != nil {
		t.Fatalf("the open session did not survive the rotation: %v; ssh stderr:\n%s", echoErr, sess.Stderr.String())
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

	checkNoSecret(t, "sshd-md5-socket's log", shim.Log(), secrets)

	// And the old session is still there at the end.
	if err := sess.Echo("at-the-end", 15*time.Second); err != nil {
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

// writeClientKeys writes one 0600 key file per secret and a client keyring
// whose entries for the server's addresses list them in that order,
// newest first, as an operator does during a rotation.
func (l *lab) writeClientKeys(label string, secrets ...[]byte) string {
	l.t.Helper()
	var files []string
	for i, s := range secrets {
		kf := filepath.Join(l.dir, fmt.Sprintf("%s-%d.key", label, i+1))
		writeAtomic(l.t, kf, s)
		files = append(files, kf)
	}
	var kr testnet.Keyring
	for _, a := range []netip.Addr{l.server.a4, l.server.a6} {
		kr.Hosts = append(kr.Hosts, testnet.Host(a.String(), files...))
	}
	p := filepath.Join(l.dir, label+"-keyring.toml")
	kr.Write(l.t, p)
	return p
}

// TestRotationNoLockout follows the README's rotation without lockout:
// the client lists the new key before the old one; the server switches to
// the new key by reload halfway through 20 logins, the switch running
// while login 11 connects. Every login works, in copy and fdpass mode
// alike. The capture, checked with each key, shows one connection per key
// a login (the loser's SYN is not sent at all when the winner's handshake
// completes before its connect: the proxy cancels it), and one SYN-ACK a
// login, always to the SYN signed with the key the server held then; the
// other SYNs get nothing back. The proxy's key and the server's, compared
// by fingerprint in probe and status, agree.
func TestRotationNoLockout(t *testing.T) {
	l := newLab(t)
	shim := l.startShim()
	oldSecret, newSecret := l.secret, newSecret()
	secrets := [][]byte{oldSecret, newSecret}
	kr := l.writeClientKeys("rotating", newSecret, oldSecret)

	const logins, switchAt = 20, 10
	capt := l.server.ns.StartCapture(t, l.server.ifc, protectedPort)
	before := l.server.ns.MD5Counters(t)
	var failures []string
	switched := make(chan struct{})
	for i := range logins {
		if i == switchAt {
			// The switch, during a login: the key file is replaced
			// whole and the shim reloads.
			go func() {
				defer close(switched)
				l.writeKeyring("server", "peers", newSecret, "0.0.0.0/0", "::/0")
				shim.Cmd.Process.Signal(syscall.SIGHUP)
			}()
		}
		var opts []string
		mode := "copy"
		if i%2 == 1 {
			opts, mode = []string{"-o", "ProxyUseFdpass=yes"}, "fdpass"
		}
		proxyArgs := "-t 5s -k " + kr
		if mode == "fdpass" {
			proxyArgs = "--fdpass " + proxyArgs
		}
		word := fmt.Sprintf("login-%d", i+1)
		out, errb, err := l.runSSH(l.client.ns, l.sshArgsOpts(true, l.server.a4, proxyArgs, opts, "echo", word), 60*time.Second)
		checkNoSecret(t, "ssh's stderr", errb, secrets)
		if err != nil || out != word+"\n" {
			failures = append(failures, fmt.Sprintf("login %d (%s): %v, stdout %q, stderr %s", i+1, mode, err, out, strings.TrimSpace(errb)))
		}
		if i == switchAt {
			<-switched
			shim.WaitLog(`reload: .*0 added, 2 replaced, 0 deleted`, 20*time.Second)
		}
	}
	st := capt.Stop(t, nil)
	byOld, byNew := capt.AnalyzeByPort(t, oldSecret), capt.AnalyzeByPort(t, newSecret)
	d := l.server.ns.MD5Counters(t).Sub(before)
	t.Logf("%d logins across the switch, %d failed; capture %v; server counters +%+v", logins, len(failures), st, d)
	for _, f := range failures {
		t.Error(f)
	}
	if st.Unsigned != 0 || st.Unchecked != st.Segments {
		t.Errorf("want every segment signed, got %v", st)
	}

	// Per client connection: one SYN signed with one key; answered
	// connections carry the server's key, the unanswered ones none back.
	var answered, silent, answeredOld, answeredNew int
	for port, o := range byOld {
		n := byNew[port]
		switch {
		case o.SYNs != 1:
			t.Errorf("client port %d: %d SYNs, want 1 (old key: %v; new key: %v)", port, o.SYNs, o, n)
		case o.SYNACKs == 0:
			silent++
			if o.Segments != o.SYNs || o.RSTs != 0 {
				t.Errorf("client port %d: an unanswered connection got %v; want its SYN only", port, o)
			}
		case o.Valid == o.Segments && n.Valid == 0:
			answered++
			answeredOld++
		case n.Valid == n.Segments && o.Valid == 0:
			answered++
			answeredNew++
		default:
			t.Errorf("client port %d: mixed keys: old key %v; new key %v", port, o, n)
		}
	}
	t.Logf("client connections: %d answered (%d with the old key, %d with the new), %d SYNs unanswered", answered, answeredOld, answeredNew, silent)
	if answered != logins || silent < 1 || silent > logins {
		t.Errorf("want %d answered connections and 1 to %d unanswered ones (at most a losing SYN a login)", logins, logins)
	}
	if answeredOld < switchAt || answeredNew < logins-switchAt-1 {
		t.Errorf("want the first %d logins on the old key and at least the last %d on the new", switchAt, logins-switchAt-1)
	}
	if d.Failure < uint64(silent) {
		t.Errorf("server TCPMD5Failure +%d, want at least the %d SYNs it did not answer", d.Failure, silent)
	}

	// The admin's check: the key the proxy connected with is the one
	// the server holds, by fingerprint, without either key shown.
	probe := l.client.ns.Cmd(l.proxy, "probe", "-u", "1s", "-k", kr, l.server.a4.String(), strconv.Itoa(protectedPort))
	pout, _ := probe.CombinedOutput()
	status := l.server.ns.Cmd(l.shimBin, "status")
	sout, _ := status.CombinedOutput()
	checkNoSecret(t, "probe's output", string(pout), secrets)
	checkNoSecret(t, "status's output", string(sout), secrets)
	checkNoSecret(t, "sshd-md5-socket's log", shim.Log(), secrets)
	fp := fingerprint.Of(newSecret)
	if !strings.Contains(string(pout), "TCP-MD5 key 1 of 2: "+fp+"\n") {
		t.Errorf("probe does not name key 1 of 2, %s:\n%s", fp, pout)
	}
	if !regexp.MustCompile(`(?m)^    0\.0\.0\.0/0 +` + regexp.QuoteMeta(fp) + `$`).Match(sout) {
		t.Errorf("status does not show %s for 0.0.0.0/0:\n%s", fp, sout)
	}
	if !regexp.MustCompile(`reload: 0\.0\.0\.0/0 key changed: ` + regexp.QuoteMeta(fp) + ` \(was ` + regexp.QuoteMeta(fingerprint.Of(oldSecret)) + `\)`).MatchString(shim.Log()) {
		t.Errorf("the reload log does not give the new fingerprint for 0.0.0.0/0")
	}
}

// TestRotationWrongFirstKey: a client whose first key the server does
// not have (one it never had, or the new key before the server switches)
// still logs in with its second, once in each mode; the SYN signed with
// the first key gets no answer at all. A login whose first-key SYN was
// never sent (cancelled as the second key's handshake completed first)
// shows nothing about it, so such a login is repeated, a few times at
// most.
func TestRotationWrongFirstKey(t *testing.T) {
	l := newLab(t)
	shim := l.startShim()
	other := newSecret()
	secrets := [][]byte{l.secret, other}
	kr := l.writeClientKeys("wrong-first", other, l.secret)
	for _, fdpass := range []bool{false, true} {
		mode, opts, proxyArgs := "copy", []string(nil), "-t 5s -k "+kr
		if fdpass {
			mode, opts, proxyArgs = "fdpass", []string{"-o", "ProxyUseFdpass=yes"}, "--fdpass "+proxyArgs
		}
		t.Run(mode, func(t *testing.T) {
			const tries = 5
			var (
				byRight, byWrong map[uint16]testnet.CaptureStats
				d                testnet.MD5Counters
			)
			for try := 1; ; try++ {
				before := l.server.ns.MD5Counters(t)
				capt := l.server.ns.StartCapture(t, l.server.ifc, protectedPort)
				out, errb, err := l.runSSH(l.client.ns, l.sshArgsOpts(true, l.server.a4, proxyArgs, opts, "echo", "login-ok"), 60*time.Second)
				st := capt.Stop(t, l.secret)
				byRight, byWrong = capt.AnalyzeByPort(t, l.secret), capt.AnalyzeByPort(t, other)
				d = l.server.ns.MD5Counters(t).Sub(before)
				checkNoSecret(t, "ssh's stderr", errb, secrets)
				t.Logf("login %d with [wrong, right]: %s; capture with the server's key: %v; server counters +%+v", try, errOrOK(err), st, d)
				if err != nil || out != "login-ok\n" {
					t.Fatalf("login: %v, stdout %q; stderr:\n%s", err, out, errb)
				}
				if st.Unsigned != 0 {
					t.Errorf("want every segment signed, got %v", st)
				}
				if len(byRight) == 2 {
					break
				}
				if len(byRight) != 1 || try == tries {
					t.Fatalf("want 2 client connections (one per key) in one of %d logins, got %d: %v", tries, len(byRight), byRight)
				}
			}
			for port, r := range byRight {
				w := byWrong[port]
				switch {
				case w.SYNs == 1 && w.Valid == w.Segments:
					t.Logf("  port %d, first key: %v", port, w)
					if w.Segments != 1 || w.SYNACKs != 0 || w.RSTs != 0 {
						t.Errorf("the wrong key's connection (port %d) got an answer: %v", port, w)
					}
				case r.SYNs == 1 && r.Valid == r.Segments:
					t.Logf("  port %d, second key: %v", port, r)
					if r.SYNACKs != 1 {
						t.Errorf("the right key's connection (port %d): %v, want one SYN-ACK", port, r)
					}
				default:
					t.Errorf("port %d: signed with neither key alone: server's key %v; first key %v", port, r, w)
				}
			}
			if d.Failure < 1 {
				t.Errorf("server TCPMD5Failure +%d, want the wrong key's SYN counted", d.Failure)
			}
		})
	}
	checkNoSecret(t, "sshd-md5-socket's log", shim.Log(), secrets)
}
