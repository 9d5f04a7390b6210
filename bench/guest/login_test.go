//go:build bench && linux

package guest

import (
	"bytes"
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

const (
	lgSection = "TCP-AO login latency (test guest)"
	lgNone    = "unsigned: ssh -> sshd -D"
	lgMD5     = "TCP-MD5: proxy -> shim inetd"
	lgAO      = "TCP-AO: proxy -> shim inetd"

	lgPortPlain = 2201 // sshd -D, no keys
	lgPortMD5   = 2202 // sshd-md5-socket, TCP-MD5 keyring
	lgPortAO    = 2203 // sshd-md5-socket, TCP-AO keyring
)

// lgCase is one way of logging in: the port, the ssh options (the
// ProxyCommand with its keyring) and the process whose log has sshd's
// "Accepted publickey" lines for it.
type lgCase struct {
	name string
	port int
	opts []string
	log  *testnet.Proc
}

// BenchmarkLogin times whole ssh logins from exec of ssh to its exit, in
// the guest: unsigned to sshd -D, and through the real ssh-md5-proxy
// (copy mode) and sshd-md5-socket (inetd mode, sshd -i per connection)
// with a TCP-MD5 keyring and with a TCP-AO keyring.
func BenchmarkLogin(b *testing.B) {
	testnet.RequireRoot(b)
	cs0 := clocksource(b)
	dir := b.TempDir()
	srv, cli := testnet.NewNS(b, "lgsrv"), testnet.NewNS(b, "lgcli")
	link := testnet.Connect(b, srv, cli)
	sshd := testnet.NewSSHD(b)
	proxy := testnet.BuildBinary(b, "cmd/ssh-md5-proxy")
	shim := testnet.BuildBinary(b, "cmd/sshd-md5-socket")

	kr := writeKeyrings(b, dir)
	secrets := kr.secrets()
	md5Server, md5Client, aoServer, aoClient := kr.md5Server, kr.md5Client, kr.aoServer, kr.aoClient

	plainConf := filepath.Join(dir, "sshd_config.plain")
	base, err := os.ReadFile(sshd.Config)
	if err != nil {
		b.Fatal(err)
	}
	testnet.WriteFile(b, plainConf, fmt.Sprintf("ListenAddress %s:%d\n%s", link.AddrA4, lgPortPlain, base))

	plain := srv.StartProc(b, secrets, "/usr/sbin/sshd", "-D", "-e", "-f", plainConf)
	shimMD5 := srv.StartProc(b, secrets, shim, append([]string{"-k", md5Server, "-l", fmt.Sprintf("%s:%d", link.AddrA4, lgPortMD5), "--"}, sshd.InetdArgs()...)...)
	shimMD5.Name = "sshd-md5-socket (TCP-MD5)"
	shimAO := srv.StartProc(b, secrets, shim, append([]string{"-k", aoServer, "-l", fmt.Sprintf("%s:%d", link.AddrA4, lgPortAO), "--"}, sshd.InetdArgs()...)...)
	shimAO.Name = "sshd-md5-socket (TCP-AO)"
	// Started together, waited for together: each takes seconds under TCG.
	plain.WaitLog(`Server listening on \S+ port `+strconv.Itoa(lgPortPlain), time.Minute)
	shimMD5.WaitLog(`serving .* in inetd mode`, time.Minute)
	shimAO.WaitLog(`serving .* in inetd mode`, time.Minute)

	via := func(kr string) []string {
		return []string{"-o", "ProxyCommand=" + proxy + " -t " + tcgTimeout.String() + " -k " + kr + " %h %p"}
	}
	cases := []lgCase{
		{lgNone, lgPortPlain, nil, plain},
		{lgMD5, lgPortMD5, via(md5Client), shimMD5},
		{lgAO, lgPortAO, via(aoClient), shimAO},
	}
	host := link.AddrA4.String()
	login := func(c lgCase) float64 { return lgLogin(b, cli, sshd, host, c, secrets) }
	warm := !*flagQuick // saves a third of a -quick run, whose figures mean nothing
	if warm {
		for _, c := range cases {
			login(c) // warm-up: page cache, sshd's first exec
		}
	}
	good0 := aoGood(b, srv)
	fns := make([]func() float64, len(cases))
	for i, c := range cases {
		fns[i] = func() float64 { return login(c) }
	}
	n := rounds(15, 1)
	s := alternate(n, fns...)

	// Every login was accepted by the sshd of its case, and none went
	// unsigned to a shim.
	logins := n
	if warm {
		logins++
	}
	for _, c := range cases {
		lgWaitAccepted(b, c, logins)
	}
	for _, p := range []*testnet.Proc{shimMD5, shimAO} {
		if strings.Contains(p.Log(), "closed unsigned connection") {
			b.Fatalf("%s reports an unsigned connection:\n%s", p.Name, lgRedact(p.Log(), secrets))
		}
	}
	// The TCP-AO logins were signed with TCP-AO: the server's kernel
	// counted good TCP-AO segments, more than one per login.
	if d := aoGood(b, srv) - good0; d < uint64(2*n) {
		b.Fatalf("TCP-AO logins: the server counted %d good TCP-AO segments over %d logins; they were not signed with TCP-AO", d, n)
	}

	emit(b, result{Section: lgSection, Link: guestLink, Case: lgNone, Unit: "ms", Samples: s[0]})
	emit(b, result{Section: lgSection, Link: guestLink, Case: lgMD5, Unit: "ms", Samples: s[1], Against: lgNone})
	emit(b, result{Section: lgSection, Link: guestLink, Case: lgAO, Unit: "ms", Samples: s[2], Against: lgMD5, Also: []string{lgNone}})
	note(b, lgSection, fmt.Sprintf("A login is `ssh -s root@HOST sftp </dev/null` with an ed25519 key (internal-sftp: no shell runs), timed from exec of ssh to its exit, over a veth pair between two namespaces of the guest. "+
		"Rounds: %d, the three cases alternated, after one warm-up login each (none with -quick). "+
		"unsigned: ssh straight to `sshd -D`; the signed cases run ssh-md5-proxy (copy mode) as ProxyCommand and sshd-md5-socket in inetd mode (`sshd -i` per connection), "+
		"with a TCP-MD5 keyring (`key_file`) or a TCP-AO keyring (`ao = [{ name = \"alice\", send_id = %d, recv_id = %d, key_file = ... }]`, the client's the mirror), "+
		"so TCP-AO/TCP-MD5 is what the signature costs and TCP-AO/unsigned adds the proxy and the shim (the host's login table splits those). "+
		"Checked: every login's \"Accepted publickey\" line in the log of the sshd of its case, no unsigned connection at a shim, and the server's TCPAOGood counter grew by at least two per TCP-AO login.",
		n, aoServerSend, aoServerRecv))
	guestNote(b, lgSection, cs0)
}

// lgLogin runs one sftp-subsystem login and returns how long ssh took
// from exec to exit, in ms. ssh is forked from a thread in the client
// namespace, so no `ip netns exec` is timed with it.
func lgLogin(b *testing.B, cli *testnet.NS, sshd *testnet.SSHD, host string, c lgCase, secrets [][]byte) float64 {
	// ssh takes an option's first value: this one before SSHArgs' 10 s,
	// which a loaded TCG guest can exceed in the banner exchange.
	args := append([]string{"-o", "ConnectTimeout=" + strconv.Itoa(int(tcgTimeout.Seconds()))}, sshd.SSHArgs()...)
	args = append(args, "-p", strconv.Itoa(c.port))
	args = append(append(args, c.opts...), "-s", "root@"+host, "sftp")
	cmd := exec.Command("ssh", args...)
	// ssh runs the ProxyCommand with $SHELL -c: dash, not root's bash.
	cmd.Env = append(os.Environ(), "SHELL=/bin/sh")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = 5 * time.Second
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	t0 := time.Now()
	if err := cli.Do(cmd.Start); err != nil {
		b.Fatalf("%s: start ssh: %v", c.name, err)
	}
	var killed atomic.Bool
	kill := time.AfterFunc(3*time.Minute, func() {
		killed.Store(true)
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	})
	err := cmd.Wait()
	d := time.Since(t0)
	kill.Stop()
	switch {
	case killed.Load():
		b.Fatalf("%s: ssh still running after 3 minutes, killed\n%s\nserver log:\n%s", c.name, lgRedact(stderr.String(), secrets), lgRedact(c.log.Log(), secrets))
	case err != nil:
		b.Fatalf("%s: ssh: %v\n%s\nserver log:\n%s", c.name, err, lgRedact(stderr.String(), secrets), lgRedact(c.log.Log(), secrets))
	}
	return float64(d.Microseconds()) / 1000
}

var lgAcceptedRE = regexp.MustCompile(`Accepted publickey for root from `)

// lgWaitAccepted waits until c's sshd has logged want accepted logins (its
// log lines trail the client's exit a little) and fails if it logged
// another number.
func lgWaitAccepted(b *testing.B, c lgCase, want int) {
	b.Helper()
	deadline := time.Now().Add(20 * time.Second)
	got := 0
	for {
		got = len(lgAcceptedRE.FindAllStringIndex(c.log.Log(), -1))
		if got >= want || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got != want {
		b.Fatalf("%s: %s logged %d accepted logins, want %d", c.name, c.log.Name, got, want)
	}
}

func lgRedact(s string, secrets [][]byte) string {
	for _, k := range secrets {
		s = testnet.Redact([]byte(s), k)
	}
	return s
}
