//go:build linux

package guest

import (
	"bufio"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sshmd5/sshmd5/internal/tcpsig"
	"github.com/sshmd5/sshmd5/internal/testnet"
)

// The TCP-AO end-to-end suite: sshd-md5-socket in front of real sshd -i,
// real ssh with ssh-md5-proxy as ProxyCommand, each user with a key of
// their own in the server's ao list. The figures checked are the kernel's
// (handshakes answered or not, TcpExt TCPAO* counters), the wire's
// (tcpdump: TCP option 29 on every segment, the KeyIDs, SYN-ACKs) and the
// shim's log naming the key of each connection.

// e2eUser is one user's key as the server's [peers] ao list holds it:
// SendID is the server's, RecvID the KeyID the user's segments carry.
type e2eUser struct {
	testnet.AOItem
	secret []byte
}

// dialKey is the key the user's client signs with: the IDs mirrored.
func (u *e2eUser) dialKey() *tcpsig.Key {
	return &tcpsig.Key{Secret: u.secret, AO: &tcpsig.AO{Name: u.Name, SendID: u.RecvID, RecvID: u.SendID,
		Algorithm: tcpsig.AODefaultAlgorithm, MACLen: tcpsig.AODefaultMACLen}}
}

// logRE matches the shim's line for a connection signed with u's key;
// the first group is the peer's address and port.
func (u *e2eUser) logRE() *regexp.Regexp {
	return regexp.MustCompile(fmt.Sprintf(`connection from (\S+) \(peers [^,]+, TCP-AO key %s [^ ]+ \(send_id %d, recv_id %d\)\) -> sshd pid \d+`,
		regexp.QuoteMeta(u.Name), u.SendID, u.RecvID))
}

func (u *e2eUser) String() string {
	return fmt.Sprintf("%s (server send_id %d, recv_id %d)", u.Name, u.SendID, u.RecvID)
}

// e2eLab is a server and a client namespace on one veth pair, the server
// running sshd-md5-socket with a TCP-AO keyring.
type e2eLab struct {
	t              *testing.T
	server, client *testnet.NS
	link           *testnet.Link
	sshd           *testnet.SSHD
	proxy          string
	dir            string
	skr            string // the server keyring
	shim           *shim
	secrets        [][]byte
	reloads        int
}

func newE2ELab(t *testing.T) *e2eLab {
	t.Helper()
	l := &e2eLab{t: t, dir: t.TempDir()}
	l.server, l.client = testnet.NewNS(t, "srv"), testnet.NewNS(t, "cli")
	l.link = testnet.Connect(t, l.server, l.client)
	l.sshd = testnet.NewSSHD(t)
	l.proxy = testnet.BuildBinary(t, "cmd/ssh-md5-proxy")
	l.skr = filepath.Join(l.dir, "server.toml")
	return l
}

// user makes a key for name with the server's IDs, in a key file.
func (l *e2eLab) user(name string, sendID, recvID uint8) *e2eUser {
	l.t.Helper()
	u := &e2eUser{secret: testnet.NewSecret()}
	l.secrets = append(l.secrets, u.secret)
	// Numbered: two keys may have one name and the same IDs (a wrong
	// secret for alice's IDs), never one file.
	file := filepath.Join(l.dir, fmt.Sprintf("%d-%s-%d-%d.key", len(l.secrets), name, sendID, recvID))
	testnet.WriteFile(l.t, file, string(u.secret))
	u.AOItem = testnet.AOItem{Name: name, SendID: sendID, RecvID: recvID, KeyFile: file}
	return u
}

func items(users []*e2eUser, mirror bool) []testnet.AOItem {
	var out []testnet.AOItem
	for _, u := range users {
		if mirror {
			out = append(out, u.Mirror())
		} else {
			out = append(out, u.AOItem)
		}
	}
	return out
}

// writeServer (re)writes the server keyring: every IPv4 peer signs with
// one of users' keys (and every IPv6 peer, with v6).
func (l *e2eLab) writeServer(v6 bool, users ...*e2eUser) {
	l.t.Helper()
	kr := testnet.Keyring{Peers: []testnet.Entry{testnet.AOPeer("0.0.0.0/0", items(users, false)...)}}
	if v6 {
		kr.Peers = append(kr.Peers, testnet.AOPeer("::/0", items(users, false)...))
	}
	kr.Write(l.t, l.skr)
}

// start writes the server keyring and starts the shim on the listen
// addresses.
func (l *e2eLab) start(listen []string, v6 bool, users ...*e2eUser) {
	l.t.Helper()
	l.writeServer(v6, users...)
	args := []string{"-k", l.skr}
	for _, a := range listen {
		args = append(args, "-l", a)
	}
	l.shim = startShim(l.t, l.server, nil, append(append(args, "--"), l.sshd.InetdArgs()...)...)
	l.shim.Secrets = func() [][]byte { return l.secrets }
	l.shim.waitLog(`serving`)
}

var (
	inForceRE = regexp.MustCompile(`reload: [^\n]* in force`)
	keptRE    = regexp.MustCompile(`reload: [^\n]*previous keys`)
)

// hup sends the shim SIGHUP: one more reload to wait for.
func (l *e2eLab) hup() {
	l.reloads++
	syscall.Kill(l.shim.pid, syscall.SIGHUP)
}

// waitReloads waits until the shim has done every reload asked for and
// fails the test if one of them kept the previous keys. (shim.reload's
// one pattern for n reloads gets slow over a long log under TCG.)
func (l *e2eLab) waitReloads() {
	l.t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		log := l.shim.Log()
		if keptRE.MatchString(log) {
			l.t.Fatalf("reload %d did not apply: %s\n%s", l.reloads, keptRE.FindString(log), l.log())
		}
		if len(inForceRE.FindAllStringIndex(log, -1)) >= l.reloads {
			return
		}
		if l.shim.Exited() || time.Now().After(deadline) {
			l.t.Fatalf("the shim did not finish reload %d (exited: %v)\n%s", l.reloads, l.shim.Exited(), l.log())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// reload sends the shim SIGHUP and waits for that reload to be applied.
func (l *e2eLab) reload() {
	l.t.Helper()
	l.hup()
	l.waitReloads()
}

// clientKeyring (re)writes the client keyring named label: every host
// dialled with users' keys, newest first.
func (l *e2eLab) clientKeyring(label string, users ...*e2eUser) string {
	l.t.Helper()
	p := filepath.Join(l.dir, "client-"+label+".toml")
	testnet.Keyring{Hosts: []testnet.Entry{testnet.AOHost("*", items(users, true)...)}}.Write(l.t, p)
	return p
}

func (l *e2eLab) addr4() string { return netip.AddrPortFrom(l.link.AddrA4, port).String() }

// sshArgs are ssh's arguments for a login to the server through the
// proxy with keyring ckr, in copy or fdpass mode, up to the destination.
func (l *e2eLab) sshArgs(ckr string, fdpass bool, timeout string) []string {
	proxy := l.proxy + " -t " + timeout + " -k " + ckr
	args := append(l.sshd.SSHArgs(), "-p", strconv.Itoa(port))
	if fdpass {
		proxy += " --fdpass"
		args = append(args, "-o", "ProxyUseFdpass=yes")
	}
	return append(args, "-o", "ProxyCommand="+proxy+" %h %p", "root@"+l.link.AddrA4.String())
}

// ssh runs one login that echoes word and returns its output; it is
// killed after a minute so that a hang fails with a reason.
func (l *e2eLab) ssh(ckr string, fdpass bool, timeout, word string) (string, error) {
	cmd := l.client.Cmd("ssh", append(l.sshArgs(ckr, fdpass, timeout), "echo", word)...)
	cmd.Env = append(os.Environ(), "SHELL=/bin/sh")
	stop := time.AfterFunc(time.Minute, func() { _ = cmd.Process.Kill() })
	defer stop.Stop()
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// login checks that a login with ckr works.
func (l *e2eLab) login(what, ckr string, fdpass bool) {
	l.t.Helper()
	word := "ao-login-ok-" + strconv.Itoa(int(time.Now().UnixNano()%1e6))
	out, err := l.ssh(ckr, fdpass, "10", word)
	if err != nil || !strings.Contains(out, word) {
		l.t.Fatalf("%s (%s): ssh through sshd-md5-socket: %v\n%s\nshim log:\n%s", what, modeName(fdpass), err, out, l.log())
	}
}

// session opens a long-running ssh session with ckr.
func (l *e2eLab) session(ckr string, fdpass bool) *testnet.Session {
	l.t.Helper()
	return l.client.StartSession(l.t, l.sshArgs(ckr, fdpass, "10"), time.Minute)
}

// banner dials the server signed with k and reads sshd's banner: the
// kernel took the key and the shim handed the connection to sshd.
func (l *e2eLab) banner(k *tcpsig.Key) error {
	c, err := l.client.DialKey(l.addr4(), k, 10*time.Second)
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	b, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || !strings.HasPrefix(b, "SSH-2.0-") {
		return fmt.Errorf("got %q, %v; want sshd's banner", b, err)
	}
	return nil
}

// log is the shim's output with the secrets hidden.
func (l *e2eLab) log() string {
	out := l.shim.Log()
	for _, s := range l.secrets {
		out = testnet.Redact([]byte(out), s)
	}
	return out
}

// count is how many connections the shim logged as signed by u's key.
func (l *e2eLab) count(u *e2eUser) int { return len(u.logRE().FindAllString(l.shim.Log(), -1)) }

// lastPeer is the peer of the last connection the shim logged for u.
func (l *e2eLab) lastPeer(u *e2eUser) string {
	m := u.logRE().FindAllStringSubmatch(l.shim.Log(), -1)
	if len(m) == 0 {
		return ""
	}
	return m[len(m)-1][1]
}

func modeName(fdpass bool) string {
	if fdpass {
		return "ProxyUseFdpass"
	}
	return "copy"
}

// TestAOTwoUsers: alice and bob log in, each signing with their own key,
// through the proxy copying and passing the socket to ssh. On the wire
// every segment of the login carries TCP-AO, the client's with the
// user's KeyID and the server's with the server's SendID for that user;
// the shim names the user's key for the connection the capture saw.
func TestAOE2ETwoUsers(t *testing.T) {
	l := newE2ELab(t)
	alice, bob := l.user("alice", 101, 1), l.user("bob", 102, 2)
	l.start([]string{l.addr4()}, false, alice, bob)
	for _, fdpass := range []bool{false, true} {
		for _, u := range []*e2eUser{alice, bob} {
			other := bob
			if u == bob {
				other = alice
			}
			ckr := l.clientKeyring(u.Name, u)
			before, nu, no := l.server.AOCounters(t), l.count(u), l.count(other)
			capt := l.client.StartCapture(t, l.link.IfB, port)
			l.login(u.Name, ckr, fdpass)
			st := capt.Stop(t, nil)
			d := l.server.AOCounters(t).Sub(before)
			flows := capt.Flows(t, nil)
			what := fmt.Sprintf("%s, %s", u.Name, modeName(fdpass))
			t.Logf("%s: wire %s; server %+v; shim: %s", what, st, d, l.lastPeer(u))
			if got := l.count(u) - nu; got != 1 {
				t.Errorf("%s: the shim logged %d connection(s) signed with %s, want 1\n%s", what, got, u, l.log())
			}
			if got := l.count(other) - no; got != 0 {
				t.Errorf("%s: the shim logged %d connection(s) signed with %s, want 0", what, got, other)
			}
			if st.Segments == 0 || st.AO != st.Segments || st.SYNACKs != 1 {
				t.Errorf("%s: want every segment with TCP-AO and one SYN-ACK, got %s", what, st)
			}
			if len(flows) != 2 {
				t.Errorf("%s: %d flows on the wire, want the one connection's 2", what, len(flows))
			}
			for _, f := range flows {
				want := u.RecvID // the client's SendID
				if int(f.Src.Port()) == port {
					want = u.SendID
				} else if peer := l.lastPeer(u); peer != f.Src.String() {
					t.Errorf("%s: the capture's client is %s, the shim logged %s", what, f.Src, peer)
				}
				if f.AOKeyIDs[want] != f.Segments || len(f.AOKeyIDs) != 1 {
					t.Errorf("%s: %s -> %s: KeyIDs %v over %d segments, want all %d", what, f.Src, f.Dst, f.AOKeyIDs, f.Segments, want)
				}
			}
			if d.Good == 0 || d.Bad+d.KeyNotFound+d.Required != 0 {
				t.Errorf("%s: server counters %+v, want only TCPAOGood counting", what, d)
			}
		}
	}
}

// refused checks that a client signing with k (nil: unsigned) gets no
// answer at all: no SYN-ACK, nothing from the port on the wire, the
// counter of the server's kernel that names the reason counting up, and
// nothing in the shim's log.
func (l *e2eLab) refused(what string, k *tcpsig.Key, counter func(testnet.AOCounters) uint64) {
	t := l.t
	t.Helper()
	before, logged := l.server.AOCounters(t), strings.Count(l.shim.Log(), "connection from")
	capt := l.client.StartCapture(t, l.link.IfB, port)
	err := l.client.UnansweredKey(l.addr4(), k, 3*time.Second)
	capt.Stop(t, nil)
	to, _ := capt.AnalyzeDir(t, nil)
	// Only the refused dial's connections count: sessions that were open
	// (or just ended by a revocation) may still send on the port.
	var from testnet.CaptureStats
	dials := map[netip.AddrPort]bool{}
	flows := capt.Flows(t, nil)
	for _, f := range flows {
		if f.Dst.Port() == port && f.SYNs > 0 {
			dials[f.Src] = true
		}
	}
	for _, f := range flows {
		if f.Src.Port() == port && dials[f.Dst] {
			from.Segments += f.Segments
			from.SYNACKs += f.SYNACKs
			from.RSTs += f.RSTs
		}
	}
	d := l.server.AOCounters(t).Sub(before)
	t.Logf("%s: to the port %s; from it, to the refused dial's ports %s; server %+v", what, to, from, d)
	if err != nil {
		t.Errorf("%s: %v", what, err)
	}
	if from.Segments != 0 || to.SYNs == 0 || len(dials) == 0 {
		t.Errorf("%s: want SYNs and no answer at all (no SYN-ACK, no RST), got from the port: %s", what, from)
	}
	if k != nil && to.AO != to.Segments {
		t.Errorf("%s: want the client's SYNs with TCP-AO, got %s", what, to)
	}
	if counter(d) == 0 {
		t.Errorf("%s: the server's kernel dropped it without counting it where expected: %+v", what, d)
	}
	if n := strings.Count(l.shim.Log(), "connection from"); n != logged {
		t.Errorf("%s: the shim logged a connection", what)
	}
}

// TestAORefused: a wrong secret (TCPAOBad), a KeyID the server holds no
// key for (TCPAOKeyNotFound) and an unsigned client (TCPAORequired) get
// no answer; so does real ssh through the proxy with a wrong secret,
// which fails closed.
func TestAOE2ERefused(t *testing.T) {
	l := newE2ELab(t)
	alice, bob := l.user("alice", 101, 1), l.user("bob", 102, 2)
	l.start([]string{l.addr4()}, false, alice, bob)

	wrong := alice.dialKey()
	wrong.Secret = testnet.NewSecret()
	l.secrets = append(l.secrets, wrong.Secret)
	l.refused("wrong secret", wrong, bad)

	unknown := alice.dialKey()
	unknown.AO.SendID, unknown.AO.RecvID = 9, 109 // the server has no recv_id 9
	l.refused("unknown KeyID 9", unknown, notFound)

	l.refused("unsigned", nil, required)

	// The whole client, with a key file holding the wrong secret.
	mallory := l.user("alice", 101, 1) // alice's IDs, another secret
	ckr := l.clientKeyring("mallory", mallory)
	before := l.server.AOCounters(t)
	capt := l.client.StartCapture(t, l.link.IfB, port)
	out, err := l.ssh(ckr, false, "3", "must-not-run")
	capt.Stop(t, nil)
	to, from := capt.AnalyzeDir(t, nil)
	d := l.server.AOCounters(t).Sub(before)
	t.Logf("ssh with a wrong secret: %v, %q; to the port %s; from it %s; server %+v", err, strings.TrimSpace(out), to, from, d)
	if err == nil || strings.Contains(out, "must-not-run") {
		t.Errorf("ssh with a wrong secret logged in: %v\n%s", err, out)
	}
	if from.Segments != 0 || to.SYNs == 0 || to.AO != to.Segments || d.Bad == 0 {
		t.Errorf("ssh with a wrong secret: want signed SYNs, no answer and TCPAOBad counting; got to %s, from %s, %+v", to, from, d)
	}
	// And the rightful users still get in.
	l.login("alice after the refusals", l.clientKeyring("alice", alice), false)
}

// TestAORevoke: bob's key leaves the keyring of a running server. On
// SIGHUP his open sessions end (copy and fdpass alike), his next login
// gets no answer, and alice's open session carries on while her new
// logins work.
func TestAOE2ERevoke(t *testing.T) {
	l := newE2ELab(t)
	alice, bob := l.user("alice", 101, 1), l.user("bob", 102, 2)
	l.start([]string{l.addr4()}, false, alice, bob)
	ackr, bckr := l.clientKeyring("alice", alice), l.clientKeyring("bob", bob)
	as := l.session(ackr, false)
	bcopy, bfd := l.session(bckr, false), l.session(bckr, true)
	if n := l.count(bob); n != 2 {
		t.Fatalf("the shim logged %d session(s) signed with bob's key, want 2\n%s", n, l.log())
	}

	l.writeServer(false, alice)
	l.reload()
	l.shim.waitLog(`reload: bob has no key any more: 2 open session\(s\) ended`)
	revoked := regexp.MustCompile(`reload: key bob [^\n]*\(send_id 102, recv_id 2\) revoked: ended its session from \S+ \(sshd pid \d+\)`).FindAllString(l.shim.Log(), -1)
	t.Logf("shim: %s", strings.Join(revoked, "; "))
	if len(revoked) != 2 || regexp.MustCompile(`key alice[^\n]*revoked|alice has no key`).MatchString(l.shim.Log()) {
		t.Errorf("want bob's 2 sessions revoked and none of alice's\n%s", l.log())
	}
	for _, s := range []struct {
		name string
		s    *testnet.Session
	}{{"copy", bcopy}, {"fdpass", bfd}} {
		if !s.s.WaitExit(30 * time.Second) {
			t.Errorf("bob's %s session still running 30 s after his key was revoked", s.name)
			continue
		}
		t.Logf("bob's %s session ended: %v; %s", s.name, s.s.Err(), strings.TrimSpace(s.s.Stderr.String()))
	}
	if err := as.Echo("alice-after-revocation", 30*time.Second); err != nil {
		t.Errorf("alice's open session after bob's revocation: %v\n%s", err, as.Stderr)
	}
	l.login("alice after bob's revocation", ackr, false)
	l.login("alice after bob's revocation", ackr, true)

	before := l.server.AOCounters(t)
	out, err := l.ssh(bckr, false, "3", "must-not-run")
	d := l.server.AOCounters(t).Sub(before)
	t.Logf("bob's login after revocation: %v, %q; server %+v", err, strings.TrimSpace(out), d)
	if err == nil || strings.Contains(out, "must-not-run") {
		t.Errorf("bob logged in after his key was revoked: %v\n%s", err, out)
	}
	l.refused("bob, revoked", bob.dialKey(), notFound)
	if err := as.Echo("alice-at-the-end", 30*time.Second); err != nil {
		t.Errorf("alice's open session at the end: %v", err)
	}
}

// TestAORollover: alice moves from one key to another with a session
// open. The server holds both; her client switches to [new, old]; twenty
// logins run while the server drops the old key. All of them succeed,
// the session opened with the old key lives on, nothing is revoked.
func TestAOE2ERollover(t *testing.T) {
	l := newE2ELab(t)
	old, next := l.user("alice", 101, 1), l.user("alice", 103, 3)
	l.start([]string{l.addr4()}, false, old, next)
	ckr := l.clientKeyring("alice", old)
	sess := l.session(ckr, false)
	if n := l.count(old); n != 1 {
		t.Fatalf("the session is not signed with the old key: %d connection(s) logged for it\n%s", n, l.log())
	}
	l.clientKeyring("alice", next, old)

	const logins = 20
	failed := 0
	for i := range logins {
		if i == logins/2 {
			// The server drops the old key while the logins go on.
			l.writeServer(false, next)
			l.hup()
		}
		word := fmt.Sprintf("rollover-%d", i)
		if out, err := l.ssh(ckr, i%2 == 1, "10", word); err != nil || !strings.Contains(out, word) {
			failed++
			t.Errorf("login %d of %d (%s) during the rollover: %v\n%s", i+1, logins, modeName(i%2 == 1), err, out)
		}
	}
	l.waitReloads() // done, and applied
	l.login("after the rollover", ckr, false)
	t.Logf("%d of %d logins during the rollover succeeded; connections signed with the old key %d, the new %d", logins-failed, logins, l.count(old), l.count(next))
	if err := sess.Echo("old-key-session-lives", 30*time.Second); err != nil {
		t.Errorf("the session opened with the old key after the server dropped it: %v\n%s", err, sess.Stderr)
	}
	if strings.Contains(l.shim.Log(), "revoked") {
		t.Errorf("a rollover revoked a session:\n%s", l.log())
	}
	l.refused("the old key, dropped", old.dialKey(), notFound)
	if err := sess.Echo("old-key-session-at-the-end", 30*time.Second); err != nil {
		t.Errorf("the old key's session at the end: %v", err)
	}
}

// TestAOReloadStorm: fifty reloads, alternately adding and removing a
// third user, with signed connections after every one and full logins
// after every tenth. Every reload applies, every connection gets in,
// the shim lives.
func TestAOE2EReloadStorm(t *testing.T) {
	l := newE2ELab(t)
	alice, bob, carol := l.user("alice", 101, 1), l.user("bob", 102, 2), l.user("carol", 104, 4)
	l.start([]string{l.addr4()}, false, alice, bob)
	ackr, cckr := l.clientKeyring("alice", alice), l.clientKeyring("carol", carol)
	const reloads = 50
	conns, logins := 0, 0
	for i := 1; i <= reloads; i++ {
		withCarol := i%2 == 1
		if withCarol {
			l.writeServer(false, alice, bob, carol)
		} else {
			l.writeServer(false, alice, bob)
		}
		l.reload()
		users := []*e2eUser{alice}
		if withCarol && i%5 == 0 {
			users = append(users, carol)
		}
		for _, u := range users {
			if err := l.banner(u.dialKey()); err != nil {
				t.Fatalf("reload %d: %s: %v\n%s", i, u.Name, err, l.log())
			}
			conns++
		}
		if i%16 == 0 || i == 25 {
			l.login(fmt.Sprintf("alice after reload %d", i), ackr, i%32 == 0)
			logins++
			if withCarol {
				l.login(fmt.Sprintf("carol after reload %d", i), cckr, false)
				logins++
			}
		}
	}
	n := len(regexp.MustCompile(`reload: [^\n]* in force`).FindAllString(l.shim.Log(), -1))
	t.Logf("%d reloads applied (of %d), %d signed connections and %d logins between them, all answered; shim alive: %v",
		n, reloads, conns, logins, !l.shim.Exited())
	if n != reloads || l.shim.Exited() {
		t.Errorf("want %d reloads applied and the shim running", reloads)
	}
	l.refused("carol, removed by the last reload", carol.dialKey(), notFound)
}

// TestAOSpoofedRST: a RST forged with the client's address and port and
// the exact sequence number the server expects next kills a plain TCP
// ssh session (the control, so the forgery is known to work) but not a
// TCP-AO one: the server's kernel drops it (TCPAORequired) and the
// session carries on.
func TestAOE2ESpoofedRST(t *testing.T) {
	const plainPort = 2022
	l := newE2ELab(t)
	alice := l.user("alice", 101, 1)
	l.start([]string{l.addr4()}, false, alice)
	ln := l.server.Listen(t, "tcp4", fmt.Sprintf("0.0.0.0:%d", plainPort), nil)
	testnet.ServeInetd(t, ln, l.sshd.InetdArgs())

	for _, tg := range []struct {
		name string
		port int
		ao   bool
	}{{"TCP-AO", port, true}, {"plain", plainPort, false}} {
		var sess *testnet.Session
		if tg.ao {
			sess = l.session(l.clientKeyring("alice", alice), false)
		} else {
			sess = l.client.StartSession(t, append(l.sshd.SSHArgs(), "-p", strconv.Itoa(plainPort), "root@"+l.link.AddrA4.String()), time.Minute)
		}
		// One round trip on the capture: the last sequence number the
		// client sent is what the server expects next (the session is
		// idle afterwards).
		sniff := l.client.StartCapture(t, l.link.IfB, tg.port)
		if err := sess.Echo("sniffed", 30*time.Second); err != nil {
			t.Fatalf("%s: %v", tg.name, err)
		}
		sniff.Stop(t, nil)
		var c2s *testnet.Flow
		for _, f := range sniff.Flows(t, nil) {
			if int(f.Dst.Port()) == tg.port && f.HaveSeq {
				c2s = f
			}
		}
		if c2s == nil {
			t.Fatalf("%s: the capture saw no data from the client", tg.name)
		}
		before := l.server.AOCounters(t)
		capt := l.server.StartCapture(t, l.link.IfA, tg.port)
		out, err := l.client.Cmd("hping3", "-I", l.link.IfB, "-c", "1", "-R", "-k",
			"-a", c2s.Src.Addr().String(), "-s", strconv.Itoa(int(c2s.Src.Port())), "-p", strconv.Itoa(tg.port),
			"-M", strconv.FormatUint(uint64(c2s.NextSeq), 10), l.link.AddrA4.String()).CombinedOutput()
		if !strings.Contains(string(out), "1 packets transmitted") {
			t.Fatalf("%s: hping3 did not send the RST: %v\n%s", tg.name, err, out)
		}
		if tg.ao {
			// The drop is counted when the kernel has the segment; then
			// the session is used.
			deadline := time.Now().Add(20 * time.Second)
			for l.server.AOCounters(t).Sub(before).Required == 0 && time.Now().Before(deadline) {
				time.Sleep(50 * time.Millisecond)
			}
			echoErr := sess.Echo("after-rst", 30*time.Second)
			st := capt.Stop(t, nil)
			d := l.server.AOCounters(t).Sub(before)
			t.Logf("%s: RST at seq %d from %s; after it the session: %v; server wire %s; server %+v", tg.name, c2s.NextSeq, c2s.Src, errOrOK(echoErr), st, d)
			if echoErr != nil {
				t.Errorf("%s: the session did not survive the spoofed RST: %v\n%s", tg.name, echoErr, sess.Stderr)
			}
			if d.Required == 0 {
				t.Errorf("%s: server TCPAORequired did not count the RST: %+v", tg.name, d)
			}
			if st.RSTs != 1 || st.Unsigned != 1 || st.AO != st.Segments-1 || st.AO == 0 {
				t.Errorf("%s: server wire: want the one forged RST unsigned and every other segment TCP-AO, got %s", tg.name, st)
			}
		} else {
			// The server's end is gone without a word to the client,
			// which learns it from the RST its next data draws.
			echoErr := sess.Echo("after-rst", 15*time.Second)
			exited := sess.WaitExit(30 * time.Second)
			st := capt.Stop(t, nil)
			t.Logf("%s: RST at seq %d from %s; after it the session: %v; ssh exited: %v (%v); server wire %s", tg.name, c2s.NextSeq, c2s.Src, errOrOK(echoErr), exited, sessErr(sess), st)
			if echoErr == nil || !exited {
				t.Errorf("the plain session survived the spoofed RST: the forgery did not work, so the TCP-AO half proves nothing")
			}
		}
	}
}

func sessErr(s *testnet.Session) error {
	if !s.Exited() {
		return nil
	}
	return s.Err()
}

func errOrOK(err error) string {
	if err == nil {
		return "ok"
	}
	return err.Error()
}

// TestAOSealedListener: a dual-stack listener keyed for TCP-AO is sealed
// (ao_required): unsigned SYNs over IPv4 and IPv6 and an unsigned stray
// ACK get nothing back, not even the RST of a closed port, and the
// server's TCPAORequired counts them; signed clients of both families
// get in.
func TestAOE2ESealedListener(t *testing.T) {
	l := newE2ELab(t)
	alice := l.user("alice", 101, 1)
	l.start([]string{fmt.Sprintf("0.0.0.0:%d", port), fmt.Sprintf("[::]:%d", port)}, true, alice)
	dst6 := netip.AddrPortFrom(l.link.AddrA6, port).String()
	for _, p := range []struct{ what, dst string }{{"IPv4", l.addr4()}, {"IPv6", dst6}} {
		before := l.server.AOCounters(t)
		capt := l.client.StartCapture(t, l.link.IfB, port)
		err := l.client.UnansweredKey(p.dst, nil, 3*time.Second)
		capt.Stop(t, nil)
		to, from := capt.AnalyzeDir(t, nil)
		d := l.server.AOCounters(t).Sub(before)
		t.Logf("unsigned SYN over %s: to the port %s; from it %s; server %+v", p.what, to, from, d)
		if err != nil || from.Segments != 0 || to.UnsignedSYNs == 0 || d.Required == 0 {
			t.Errorf("unsigned SYN over %s: %v; want no answer at all and TCPAORequired counting", p.what, err)
		}
	}
	// A stray unsigned ACK, which a closed port answers with a RST.
	before := l.server.AOCounters(t)
	capt := l.client.StartCapture(t, l.link.IfB, port)
	out, err := l.client.Cmd("hping3", "-I", l.link.IfB, "-c", "1", "-A", "-s", "40000", "-p", strconv.Itoa(port), l.link.AddrA4.String()).CombinedOutput()
	if !strings.Contains(string(out), "1 packets transmitted") {
		t.Fatalf("hping3 did not send the ACK: %v\n%s", err, out)
	}
	deadline := time.Now().Add(20 * time.Second)
	for l.server.AOCounters(t).Sub(before).Required == 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	capt.Stop(t, nil)
	to, from := capt.AnalyzeDir(t, nil)
	d := l.server.AOCounters(t).Sub(before)
	t.Logf("unsigned ACK: to the port %s; from it %s; server %+v", to, from, d)
	if from.Segments != 0 || d.Required == 0 {
		t.Errorf("unsigned ACK: want no answer and TCPAORequired counting")
	}
	for _, p := range []struct{ what, dst string }{{"IPv4", l.addr4()}, {"IPv6", dst6}} {
		c, err := l.client.DialKey(p.dst, alice.dialKey(), 10*time.Second)
		if err != nil {
			t.Errorf("alice over %s: %v\n%s", p.what, err, l.log())
			continue
		}
		c.SetReadDeadline(time.Now().Add(30 * time.Second))
		b, err := bufio.NewReader(c).ReadString('\n')
		c.Close()
		if err != nil || !strings.HasPrefix(b, "SSH-2.0-") {
			t.Errorf("alice over %s: got %q, %v from the shim; want sshd's banner", p.what, b, err)
		}
	}
	if t.Failed() {
		t.Logf("shim log:\n%s", l.log())
	}
}
