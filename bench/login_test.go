//go:build bench && linux

package bench

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/sshmd5/sshmd5/internal/testnet"
)

// Ports inside the benchmark's own server namespace. Every listener takes
// 0.0.0.0, so the same servers answer over the veth and over loopback.
const (
	lgPortPlain    = 2201 // sshd -D, unkeyed: the baseline
	lgPortInetd    = 2202 // sshd-md5-socket, inetd mode (sshd -i per connection)
	lgPortListener = 2203 // sshd-md5-socket, listener mode (exec sshd -D)
	lgPortSpiped   = 2204 // spiped -d, forwarding to lgPortBackend
	lgPortBackend  = 2205 // sshd -D on 127.0.0.1 only, behind spiped
)

const lgSection = "Login latency"

// lgEnv is a client and a server namespace joined by a veth pair, with
// every server of the comparison running in the server namespace.
type lgEnv struct {
	b        *testing.B
	dir      string
	srv, cli *testnet.NS
	link     *testnet.Link
	sshd     *testnet.SSHD
	proxy    string // ssh-md5-proxy
	secret   []byte // the TCP-MD5 key; never printed, checked absent from logs
	clientKR string // ssh-md5-proxy keyring: [hosts."*"]
	spipeKey string // spiped's 32-byte key file

	plain, inetd, listener, backend, spiped *testnet.Proc
}

// lgNewEnv sets up the namespaces, keys and configs and starts: sshd -D
// (plain), sshd-md5-socket in inetd and in listener mode, and spiped -d in
// front of a second sshd -D that listens on 127.0.0.1 only. All sshds share
// one sshd_config apart from their ListenAddress.
func lgNewEnv(b *testing.B) *lgEnv {
	b.Helper()
	testnet.RequireRoot(b)
	for _, p := range []string{"ssh", "spiped", "spipe", "ss"} {
		if _, err := exec.LookPath(p); err != nil {
			b.Fatalf("required program %s not found (bench/run installs the Debian packages openssh-client, spiped, iproute2): %v", p, err)
		}
	}
	e := &lgEnv{b: b, dir: b.TempDir()}
	e.srv = testnet.NewNS(b, "lgsrv")
	e.cli = testnet.NewNS(b, "lgcli")
	e.link = testnet.Connect(b, e.srv, e.cli)
	// SetEnv SHLVL=1: root's ~/.bashrc (pyenv init) is slow and would be
	// measured where a shell runs (the throughput command); see
	// test/e2e/storm_test.go. The sftp logins run no shell at all.
	e.sshd = testnet.NewSSHD(b, "SetEnv SHLVL=1")
	e.proxy = testnet.BuildBinary(b, "cmd/ssh-md5-proxy")
	shim := testnet.BuildBinary(b, "cmd/sshd-md5-socket")

	// The TCP-MD5 key: random, in 0600 files that both keyrings name.
	e.secret = testnet.NewSecret()
	keyFile := filepath.Join(e.dir, "md5.key")
	flWrite(b, keyFile, e.secret)
	serverKR := filepath.Join(e.dir, "server-keyring.toml")
	testnet.Keyring{Peers: []testnet.Entry{testnet.Peer("0.0.0.0/0", keyFile)}}.Write(b, serverKR)
	e.clientKR = filepath.Join(e.dir, "client-keyring.toml")
	testnet.Keyring{Hosts: []testnet.Entry{testnet.Host("*", keyFile)}}.Write(b, e.clientKR)
	// spiped's key: 32 random bytes (what `dd if=/dev/urandom bs=32
	// count=1` makes), mode 0600. spipe and spiped take its path.
	spk := make([]byte, 32)
	if _, err := rand.Read(spk); err != nil {
		b.Fatal(err)
	}
	e.spipeKey = filepath.Join(e.dir, "spiped.key")
	flWrite(b, e.spipeKey, spk)

	plainConf := e.configWith("ListenAddress 0.0.0.0:" + strconv.Itoa(lgPortPlain))
	backendConf := e.configWith("ListenAddress 127.0.0.1:" + strconv.Itoa(lgPortBackend))

	e.plain = startProc(b, e.srv, "sshd -D", e.secret, "/usr/sbin/sshd", "-D", "-e", "-f", plainConf)
	e.plain.WaitLog(`Server listening on 0\.0\.0\.0 port `+strconv.Itoa(lgPortPlain), 20*time.Second)

	e.inetd = startProc(b, e.srv, "sshd-md5-socket inetd", e.secret, shim,
		"-k", serverKR, "-l", "0.0.0.0:"+strconv.Itoa(lgPortInetd), "--",
		"/usr/sbin/sshd", "-i", "-e", "-f", e.sshd.Config)
	e.inetd.WaitLog(`serving .* in inetd mode`, 20*time.Second)

	// sshd_config has no ListenAddress: Debian's sshd serves the sockets
	// it is handed (LISTEN_FDS) and binds nothing itself.
	e.listener = startProc(b, e.srv, "sshd-md5-socket listener", e.secret, shim,
		"--mode", "listener", "-k", serverKR, "-l", "0.0.0.0:"+strconv.Itoa(lgPortListener), "--",
		"/usr/sbin/sshd", "-D", "-e", "-f", e.sshd.Config)
	e.listener.WaitLog(`Server listening on 0\.0\.0\.0 port `+strconv.Itoa(lgPortListener), 20*time.Second)

	e.backend = startProc(b, e.srv, "sshd -D behind spiped", e.secret, "/usr/sbin/sshd", "-D", "-e", "-f", backendConf)
	e.backend.WaitLog(`Server listening on 127\.0\.0\.1 port `+strconv.Itoa(lgPortBackend), 20*time.Second)

	e.spiped = startProc(b, e.srv, "spiped", e.secret, "spiped", "-d", "-F",
		"-s", "[0.0.0.0]:"+strconv.Itoa(lgPortSpiped),
		"-t", "[127.0.0.1]:"+strconv.Itoa(lgPortBackend), "-k", e.spipeKey)
	e.spiped.WaitListen(lgPortSpiped, 20*time.Second) // spiped -F says nothing when ready

	// Only these listeners, nothing bound by an sshd on its own.
	out := e.srv.Run(b, "ss", "-Hltn")
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(l)
		if len(f) < 4 {
			continue
		}
		switch f[3] {
		case "0.0.0.0:2201", "0.0.0.0:2202", "0.0.0.0:2203", "0.0.0.0:2204", "127.0.0.1:2205":
		default:
			b.Fatalf("unexpected listener %s in the server namespace:\n%s", f[3], out)
		}
	}
	return e
}

// configWith writes a copy of the sshd_config with line put first and
// returns its path.
func (e *lgEnv) configWith(line string) string {
	e.b.Helper()
	base, err := os.ReadFile(e.sshd.Config)
	if err != nil {
		e.b.Fatal(err)
	}
	p := filepath.Join(e.dir, "sshd_config."+strconv.Itoa(len(line))+randSuffix())
	flWrite(e.b, p, append([]byte(line+"\n"), base...))
	if out, err := exec.Command("/usr/sbin/sshd", "-t", "-f", p).CombinedOutput(); err != nil {
		e.b.Fatalf("sshd -t rejects %s: %v: %s", line, err, out)
	}
	return p
}

func randSuffix() string { return testnet.RandHex(4) }

// lgCase is one way of logging in.
type lgCase struct {
	name string
	port int
	opts []string      // ssh options for this case (ProxyCommand, ...)
	log  *testnet.Proc // the process whose stderr has sshd's log for this case
}

// cases returns the cases of the comparison, the baseline first.
func (e *lgEnv) cases(withListener bool) []lgCase {
	copyProxy := []string{"-o", "ProxyCommand=" + e.proxy + " -k " + e.clientKR + " %h %p"}
	fdpass := []string{"-o", "ProxyCommand=" + e.proxy + " --fdpass -k " + e.clientKR + " %h %p", "-o", "ProxyUseFdpass=yes"}
	spipe := []string{"-o", "ProxyCommand=spipe -t [%h]:" + strconv.Itoa(lgPortSpiped) + " -k " + e.spipeKey}
	cs := []lgCase{
		{"plain sshd -D", lgPortPlain, nil, e.plain},
		{"shim inetd, proxy copy", lgPortInetd, copyProxy, e.inetd},
		{"shim inetd, proxy --fdpass", lgPortInetd, fdpass, e.inetd},
	}
	if withListener {
		cs = append(cs, lgCase{"shim listener, proxy copy", lgPortListener, copyProxy, e.listener})
	}
	return append(cs, lgCase{"spipe -> spiped -> sshd -D", lgPortSpiped, spipe, e.backend})
}

// sshCmd returns ssh with the common arguments, this case's options, the
// extra options, root@host and the remote command (or subsystem).
func (e *lgEnv) sshCmd(c lgCase, host string, extra []string, remote ...string) *exec.Cmd {
	args := e.sshd.SSHArgs()
	args = append(args, "-p", strconv.Itoa(c.port))
	args = append(args, c.opts...)
	args = append(args, extra...)
	args = append(args, "root@"+host)
	args = append(args, remote...)
	cmd := exec.Command("ssh", args...)
	// ssh runs the ProxyCommand with $SHELL -c; dash starts faster than
	// root's bash and reads no rc file.
	cmd.Env = append(os.Environ(), "SHELL=/bin/sh")
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// lgStartIn starts cmd with its process in ns: forked from a thread that
// sits in the namespace, so no "ip netns exec" (a few ms of its own, mount
// namespace included) is timed with it. The process gets a process group
// of its own, which is killed (ProxyCommand included) if it still runs
// after limit; stop reports whether that happened.
func lgStartIn(ns *testnet.NS, cmd *exec.Cmd, limit time.Duration) (stop func() (killed bool), err error) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := ns.Do(cmd.Start); err != nil {
		return nil, err
	}
	var killed atomic.Bool
	t := time.AfterFunc(limit, func() {
		killed.Store(true)
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	})
	return func() bool { t.Stop(); return killed.Load() }, nil
}

// login runs one sftp-subsystem login from ns to host and returns how long
// ssh took from exec to exit, in ms. No shell or rc file runs on the
// server: internal-sftp reads EOF from /dev/null and the channel closes.
func (e *lgEnv) login(ns *testnet.NS, host string, c lgCase) float64 {
	cmd := e.sshCmd(c, host, []string{"-s"}, "sftp")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	t0 := time.Now()
	stop, err := lgStartIn(ns, cmd, 60*time.Second)
	if err != nil {
		e.b.Fatalf("%s: start ssh: %v", c.name, err)
	}
	err = cmd.Wait()
	d := time.Since(t0)
	if stop() {
		e.b.Fatalf("%s: ssh login to %s still running after 60s, killed\n%s", c.name, host, redact(stderr.Bytes(), e.secret))
	}
	if err != nil {
		e.b.Fatalf("%s: ssh login to %s: %v\n%s", c.name, host, err, redact(stderr.Bytes(), e.secret))
	}
	return float64(d.Microseconds()) / 1000
}

var lgAcceptedRE = regexp.MustCompile(`Accepted publickey for root from (\S+) port (\d+)`)

// accepted returns the peer addresses in p's "Accepted publickey" lines.
func lgAccepted(p *testnet.Proc) []string {
	var out []string
	for _, m := range lgAcceptedRE.FindAllStringSubmatch(p.Log(), -1) {
		out = append(out, m[1])
	}
	return out
}

// warm logs in once with c and returns the peer address sshd logged for
// that login.
func (e *lgEnv) warm(ns *testnet.NS, host string, c lgCase) string {
	e.b.Helper()
	before := len(lgAccepted(c.log))
	e.login(ns, host, c)
	deadline := time.Now().Add(5 * time.Second)
	for {
		if a := lgAccepted(c.log); len(a) > before {
			return a[len(a)-1]
		}
		if time.Now().After(deadline) {
			e.b.Fatalf("%s: login worked but %s logged no \"Accepted publickey\" line:\n%s", c.name, c.log.Name, redact([]byte(c.log.Log()), e.secret))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// check fails the benchmark if a secret reached a log or the shims served
// an unsigned connection.
func (e *lgEnv) check() {
	e.b.Helper()
	for _, p := range []*testnet.Proc{e.plain, e.inetd, e.listener, e.backend, e.spiped} {
		if bytes.Contains([]byte(p.Log()), e.secret) {
			e.b.Fatalf("the TCP-MD5 secret appears in the output of %s", p.Name)
		}
	}
	if strings.Contains(e.inetd.Log(), "closed unsigned connection") {
		e.b.Fatalf("sshd-md5-socket saw an unsigned connection:\n%s", redact([]byte(e.inetd.Log()), e.secret))
	}
}

// lgRounds: 50 logins per case (5 with -quick), unless -rounds says.
func lgRounds() int {
	switch {
	case *flagRounds > 0:
		return *flagRounds
	case Quick():
		return 5
	}
	return 50
}

// BenchmarkLogin times full ssh logins (TCP connect, key exchange, public
// key authentication, opening the sftp subsystem channel, closing it) from
// exec of ssh to its exit, against plain sshd -D, sshd-md5-socket in both
// modes with ssh-md5-proxy (copy and --fdpass), and spipe/spiped, over a
// veth pair and over the server namespace's loopback.
func BenchmarkLogin(b *testing.B) {
	e := lgNewEnv(b)
	rounds := lgRounds()
	type target struct {
		link string
		ns   *testnet.NS
		host string
	}
	links := []target{
		{"veth", e.cli, e.link.AddrA4.String()},
		{"loopback", e.srv, "127.0.0.1"},
	}
	cases := e.cases(true)
	type run struct {
		link target
		c    lgCase
		peer string
	}
	var runs []*run
	for _, l := range links {
		for _, c := range cases {
			r := &run{link: l, c: c}
			r.peer = e.warm(l.ns, l.host, c)
			runs = append(runs, r)
		}
	}
	// Every login of every case and link, interleaved in one rotation.
	fns := make([]func() float64, len(runs))
	for i, r := range runs {
		fns[i] = func() float64 { return e.login(r.link.ns, r.link.host, r.c) }
	}
	samples := Alternate(b, rounds, fns...)
	e.check()
	// Every login must have been accepted by the sshd of its case.
	want := map[*testnet.Proc]int{}
	for _, r := range runs {
		want[r.c.log] += rounds + 1
	}
	for p, n := range want {
		deadline := time.Now().Add(5 * time.Second)
		for len(lgAccepted(p)) < n && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if got := len(lgAccepted(p)); got != n {
			b.Fatalf("%s logged %d accepted logins, want %d", p.Name, got, n)
		}
	}

	var peers []string
	for i, r := range runs {
		res := Result{
			Section: lgSection,
			Link:    r.link.link,
			Case:    r.c.name,
			Unit:    "ms",
			Samples: samples[i],
		}
		if r.link.link == "veth" {
			res.Note = "sshd logged the peer as " + r.peer + lgWho(e, r.peer)
		}
		if r.c.name != cases[0].name {
			res.Against = cases[0].name
			if strings.HasPrefix(r.c.name, "shim ") {
				res.Targets = []Target{{Stat: "p50", Max: 1.05}, {Stat: "p99", Max: 1.05}}
			}
		}
		Record(b, res)
		if r.link.link == "veth" {
			peers = append(peers, fmt.Sprintf("%s: `%s`", r.c.name, r.peer))
		}
	}
	SectionNote(lgSection, fmt.Sprintf("A login is `ssh -s root@HOST sftp </dev/null` with an ed25519 key (sshd_config `Subsystem sftp internal-sftp`, so no shell or rc file runs on the server), timed from exec of ssh to its exit: TCP connect, key exchange, public key authentication, opening and closing the sftp channel. %d rounds per case (one login of every case and link per round, order rotated), after one warm-up login per case. All sshds run the same sshd_config; the shim cases run the real sshd-md5-socket (inetd mode: `sshd -i` per connection; listener mode: the keyed socket handed to `sshd -D` as LISTEN_FDS) with ssh-md5-proxy as ProxyCommand; spiped runs `spiped -d` in front of an sshd -D on the server's 127.0.0.1, with `spipe` as ProxyCommand (default handshake, with perfect forward secrecy).", rounds))
	SectionNote(lgSection, "Peer address in sshd's \"Accepted publickey for root from ...\" line, as logged over the veth (client "+e.link.AddrB4.String()+", server "+e.link.AddrA4.String()+"): "+strings.Join(peers, "; ")+". With the shim, sshd sees the real client address (its logs, `from=` in authorized_keys and fail2ban keep working); behind spiped every client is spiped's own connection from the server's loopback.")
}

// lgWho explains a peer address logged over the veth.
func lgWho(e *lgEnv, peer string) string {
	switch {
	case peer == e.link.AddrB4.String():
		return " (the client)"
	case strings.HasPrefix(peer, "127."):
		return " (spiped's connection, not the client)"
	}
	return ""
}
