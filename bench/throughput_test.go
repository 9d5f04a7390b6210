//go:build bench && linux

package bench

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sshmd5/sshmd5/internal/testnet"
)

const tpSection = "Bulk throughput"

// Case names of the bulk throughput section (the plot draws the MB/s ones).
const (
	tpPlain      = "plain TCP"
	tpMD5        = "MD5 direct"
	tpCopyUp     = "ssh-md5-proxy copy, up"
	tpCopyDown   = "ssh-md5-proxy copy, down"
	tpFdpass     = "ssh-md5-proxy --fdpass"
	tpCopyUpCPU  = "ssh-md5-proxy copy, up: proxy CPU"
	tpCopyDnCPU  = "ssh-md5-proxy copy, down: proxy CPU"
	tpSSHPlain   = "ssh, plain"
	tpSSHCopy    = "ssh via ssh-md5-proxy copy"
	tpSSHFdpass  = "ssh via ssh-md5-proxy --fdpass"
	tpSSHCipher  = "aes128-gcm@openssh.com"
	tpCPUPerGB   = "CPU s/GB"
	tpMBps       = "MB/s"
	tpCopyTarget = 0.90
	tpFdTarget   = 0.98
)

// BenchmarkThroughput measures bulk throughput over loopback (client and
// server in one namespace) and over a veth pair between two namespaces:
// plain TCP and TCP-MD5 between a Go sender and a Go receiver, the same
// through the real ssh-md5-proxy binary in copy mode (its stdin and
// stdout are pipes, as ssh gives them; both directions) and in --fdpass
// mode (the passed socket then sends), and a real ssh session, plain and
// through the proxy, to sshd -i behind a plain and a keyed listener.
func BenchmarkThroughput(b *testing.B) {
	testnet.RequireRoot(b)
	for _, p := range []string{"ssh", "dd", "date", "wc"} {
		if _, err := exec.LookPath(p); err != nil {
			b.Fatalf("required program %s not found: %v", p, err)
		}
	}
	bin := testnet.BuildBinary(b, "cmd/ssh-md5-proxy")
	sshd := testnet.NewSSHD(b, "LogLevel ERROR")
	rawSize, sshSize := int64(256<<20), int64(200e6)
	if Quick() {
		rawSize, sshSize = 16<<20, 16e6
	}
	file := tpDataFile(b, b.TempDir(), sshSize)
	for _, l := range []*tpLab{tpNewLoopback(b), tpNewVeth(b)} {
		tpRaw(b, l, bin, rawSize)
		tpSSH(b, l, bin, sshd, file, sshSize)
	}
	SectionNote(tpSection, fmt.Sprintf("Raw cases: %d MiB per transfer from a Go sender (%d KiB writes) to a Go receiver (%d KiB reads) that discards it; "+
		"MB/s = 10^6 bytes/s from the receiver's first read to EOF, so connecting, starting the proxy or passing the descriptor is not counted. "+
		"Loopback: both ends in one namespace on 127.0.0.1; veth: two namespaces joined by a veth pair. "+
		"MD5 direct keys both sockets itself (Dialer/ListenConfig Control). "+
		"ssh-md5-proxy copy runs the real binary with a 0600 keyring and pipes on stdin and stdout, as ssh gives a ProxyCommand: "+
		"up = the benchmark writes into its stdin pipe and the keyed receiver reads; down = a keyed sender sends and the benchmark reads its stdout pipe. "+
		"Its CPU is the child's rusage (user+system, process start included) per 10^9 bytes moved. "+
		"--fdpass gives the proxy a socketpair, receives the signed socket (SCM_RIGHTS) and sends over it like MD5 direct.",
		rawSize>>20, tpBufSize>>10, tpBufSize>>10))
	SectionNote(tpSection, fmt.Sprintf("ssh cases: %d MB from a file on ssh's stdin, `ssh -c %s -o Compression=no root@HOST '%s'`, "+
		"to sshd -i started per connection behind a plain listener (ssh, plain) or a TCP-MD5 listener (via ssh-md5-proxy); "+
		"the remote command times the data phase itself (first byte to EOF, login excluded) and counts the bytes.",
		sshSize/1e6, tpSSHCipher, tpRemoteTimed))
	cc, err := os.ReadFile("/proc/sys/net/ipv4/tcp_congestion_control")
	if err != nil {
		b.Fatalf("reading the congestion control: %v", err)
	}
	SectionNote(tpSection, fmt.Sprintf("Congestion control: the host's default, %s, in every namespace. "+
		"With bbr, TCP-MD5 over the veth is held near 25 MB/s by BBR's internal pacing (one timer per one-MSS segment, see \"veth anomaly\" below), "+
		"so there the MD5 rows measure that artefact and their ratios are noise around it; the loopback rows show what signing and the proxy cost.",
		strings.TrimSpace(string(cc))))
}

// tpRaw runs the raw cases of one link in alternating rounds.
func tpRaw(b *testing.B, l *tpLab, bin string, n int64) {
	b.Helper()
	plainSink, md5Sink := l.sink(b, nil), l.sink(b, l.serverKeys())
	md5Source := l.source(b, l.serverKeys())
	var upCPU, downCPU []float64
	direct := func(s *tpSink, keyed bool) func() float64 {
		return func() float64 {
			secret := l.secret
			if !keyed {
				secret = nil
			}
			c, err := l.dial(tpPort(s.ln), secret)
			if err != nil {
				b.Fatalf("%s: dial: %v", l.name, err)
			}
			x := tpSendOn(c, s, n)
			if x.err != nil {
				b.Fatalf("%s: direct transfer (keyed %v): %v", l.name, keyed, x.err)
			}
			return x.mbps()
		}
	}
	copyUp := func() float64 {
		mbps, cpu := tpProxyCopyUp(b, l, bin, md5Sink, n)
		upCPU = append(upCPU, cpu)
		return mbps
	}
	copyDown := func() float64 {
		mbps, cpu := tpProxyCopyDown(b, l, bin, md5Source, n)
		downCPU = append(downCPU, cpu)
		return mbps
	}
	fdpass := func() float64 { return tpProxyFdpass(b, l, bin, md5Sink, n) }

	s := Alternate(b, Rounds(), direct(plainSink, false), direct(md5Sink, true), copyUp, copyDown, fdpass)
	Record(b, Result{Section: tpSection, Link: l.name, Case: tpPlain, Unit: tpMBps, Samples: s[0]})
	Record(b, Result{Section: tpSection, Link: l.name, Case: tpMD5, Unit: tpMBps, Samples: s[1], Against: tpPlain})
	Record(b, Result{Section: tpSection, Link: l.name, Case: tpCopyUp, Unit: tpMBps, Samples: s[2], Against: tpMD5,
		Targets: []Target{{Stat: "p50", Min: tpCopyTarget}}})
	Record(b, Result{Section: tpSection, Link: l.name, Case: tpCopyDown, Unit: tpMBps, Samples: s[3], Against: tpMD5,
		Targets: []Target{{Stat: "p50", Min: tpCopyTarget}}})
	Record(b, Result{Section: tpSection, Link: l.name, Case: tpFdpass, Unit: tpMBps, Samples: s[4], Against: tpMD5,
		Targets: []Target{{Stat: "p50", Min: tpFdTarget}}})
	Record(b, Result{Section: tpSection, Link: l.name, Case: tpCopyUpCPU, Unit: tpCPUPerGB, Samples: upCPU})
	Record(b, Result{Section: tpSection, Link: l.name, Case: tpCopyDnCPU, Unit: tpCPUPerGB, Samples: downCPU})
}

// tpSendOn sends n bytes on c, half-closes it and returns what the sink
// measured.
func tpSendOn(c *net.TCPConn, s *tpSink, n int64) tpXfer {
	defer c.Close()
	c.SetWriteDeadline(time.Now().Add(tpLimit(n)))
	if err := tpSend(c, n); err != nil {
		return tpXfer{err: fmt.Errorf("send: %w", err)}
	}
	if err := c.CloseWrite(); err != nil {
		return tpXfer{err: fmt.Errorf("half-close: %w", err)}
	}
	x := s.wait(tpLimit(n))
	if x.err == nil && x.total != n {
		x.err = fmt.Errorf("the receiver got %d bytes, sent %d", x.total, n)
	}
	return x
}

// tpProxyCmd is the proxy in copy or --fdpass mode in the client
// namespace, connecting to port.
func tpProxyCmd(l *tpLab, bin string, port int, fdpass bool) (*exec.Cmd, *bytes.Buffer) {
	args := []string{"-k", l.keyring, "-4"}
	if fdpass {
		args = append(args, "--fdpass")
	}
	cmd := l.client.Cmd(bin, append(args, l.addr.String(), strconv.Itoa(port))...)
	var stderr bytes.Buffer // read only after Wait
	cmd.Stderr = &stderr
	return cmd, &stderr
}

// tpStartCopy starts the proxy in copy mode with pipes on its stdin and
// stdout, as ssh gives them, and returns our ends of both.
func tpStartCopy(b *testing.B, l *tpLab, bin string, port int) (cmd *exec.Cmd, stderr *bytes.Buffer, stdin, stdout *os.File) {
	b.Helper()
	inR, inW, err := os.Pipe()
	if err != nil {
		b.Fatal(err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		b.Fatal(err)
	}
	cmd, stderr = tpProxyCmd(l, bin, port, false)
	cmd.Stdin, cmd.Stdout = inR, outW
	err = cmd.Start()
	inR.Close()
	outW.Close()
	if err != nil {
		inW.Close()
		outR.Close()
		b.Fatalf("%s: start ssh-md5-proxy: %v", l.name, err)
	}
	return cmd, stderr, inW, outR
}

// tpWait waits for the proxy (killing it after limit) and returns its
// user+system CPU time in seconds.
func tpWait(b *testing.B, l *tpLab, what string, cmd *exec.Cmd, stderr *bytes.Buffer, limit time.Duration) float64 {
	b.Helper()
	kill := time.AfterFunc(limit, func() { cmd.Process.Kill() })
	err := cmd.Wait()
	kill.Stop()
	tpNoSecret(b, l.secret, "ssh-md5-proxy's stderr", stderr.Bytes())
	if err != nil {
		b.Fatalf("%s: %s: ssh-md5-proxy: %v\n%s", l.name, what, err, stderr)
	}
	ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	if !ok {
		b.Fatalf("%s: %s: no rusage for ssh-md5-proxy", l.name, what)
	}
	return time.Duration(syscall.TimevalToNsec(ru.Utime) + syscall.TimevalToNsec(ru.Stime)).Seconds()
}

// tpProxyCopyUp writes n bytes into the proxy's stdin pipe; the keyed
// sink receives them. It returns MB/s and the proxy's CPU s/GB.
func tpProxyCopyUp(b *testing.B, l *tpLab, bin string, s *tpSink, n int64) (float64, float64) {
	b.Helper()
	cmd, stderr, inW, outR := tpStartCopy(b, l, bin, tpPort(s.ln))
	defer outR.Close()
	go io.Copy(io.Discard, outR) // the receiver sends nothing; EOF when the proxy exits
	inW.SetWriteDeadline(time.Now().Add(tpLimit(n)))
	werr := tpSend(inW, n)
	inW.Close()
	x := s.wait(tpLimit(n))
	cpu := tpWait(b, l, "copy up", cmd, stderr, tpLimit(n))
	if werr != nil {
		b.Fatalf("%s: copy up: writing to the proxy's stdin: %v\n%s", l.name, werr, stderr)
	}
	if x.err == nil && x.total != n {
		x.err = fmt.Errorf("the receiver got %d bytes, sent %d", x.total, n)
	}
	if x.err != nil {
		b.Fatalf("%s: copy up: %v\n%s", l.name, x.err, stderr)
	}
	return x.mbps(), cpu / (float64(n) / 1e9)
}

// tpProxyCopyDown has the keyed source send n bytes through the proxy,
// read from its stdout pipe while its stdin stays open and silent.
func tpProxyCopyDown(b *testing.B, l *tpLab, bin string, s *tpSource, n int64) (float64, float64) {
	b.Helper()
	s.setSize(n)
	cmd, stderr, inW, outR := tpStartCopy(b, l, bin, tpPort(s.ln))
	defer inW.Close()
	defer outR.Close()
	outR.SetReadDeadline(time.Now().Add(tpLimit(n)))
	x := tpDrain(outR) // EOF: the server closed, the proxy exited
	cpu := tpWait(b, l, "copy down", cmd, stderr, tpLimit(n))
	if err := <-s.err; err != nil {
		b.Fatalf("%s: copy down: the sender: %v", l.name, err)
	}
	if x.err == nil && x.total != n {
		x.err = fmt.Errorf("read %d bytes from the proxy, the server sent %d", x.total, n)
	}
	if x.err != nil {
		b.Fatalf("%s: copy down: %v\n%s", l.name, x.err, stderr)
	}
	return x.mbps(), cpu / (float64(n) / 1e9)
}

// tpProxyFdpass runs the proxy with --fdpass on a socketpair, as ssh
// does with ProxyUseFdpass, takes the signed socket it passes and sends n
// bytes over it to the keyed sink.
func tpProxyFdpass(b *testing.B, l *tpLab, bin string, s *tpSink, n int64) float64 {
	b.Helper()
	sp, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		b.Fatalf("socketpair: %v", err)
	}
	ours, theirs := sp[0], os.NewFile(uintptr(sp[1]), "proxy-stdio")
	defer unix.Close(ours)
	cmd, stderr := tpProxyCmd(l, bin, tpPort(s.ln), true)
	cmd.Stdin, cmd.Stdout = theirs, theirs
	err = cmd.Start()
	theirs.Close()
	if err != nil {
		b.Fatalf("%s: start ssh-md5-proxy --fdpass: %v", l.name, err)
	}
	// Blocks until the proxy sends or exits (its end then closes).
	buf, oob := make([]byte, 1), make([]byte, unix.CmsgSpace(4))
	m, oobn, _, _, rerr := unix.Recvmsg(ours, buf, oob, 0)
	tpWait(b, l, "fdpass", cmd, stderr, 30*time.Second)
	if rerr != nil || m != 1 {
		b.Fatalf("%s: fdpass: recvmsg: %d bytes, %v", l.name, m, rerr)
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		b.Fatalf("%s: fdpass: %d control messages, %v", l.name, len(msgs), err)
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		b.Fatalf("%s: fdpass: rights %v, %v", l.name, fds, err)
	}
	f := os.NewFile(uintptr(fds[0]), "passed")
	c, err := net.FileConn(f)
	f.Close()
	if err != nil {
		b.Fatalf("%s: fdpass: the passed descriptor: %v", l.name, err)
	}
	tc, ok := c.(*net.TCPConn)
	if !ok {
		c.Close()
		b.Fatalf("%s: fdpass: passed a %T, not a TCP socket", l.name, c)
	}
	x := tpSendOn(tc, s, n)
	if x.err != nil {
		b.Fatalf("%s: fdpass: %v", l.name, x.err)
	}
	return x.mbps()
}

// tpSSH runs the ssh cases of one link in alternating rounds.
func tpSSH(b *testing.B, l *tpLab, bin string, sshd *testnet.SSHD, file string, n int64) {
	b.Helper()
	srv := l.sshServer(b, sshd)
	proxy := "ProxyCommand=" + bin + " -k " + l.keyring + " -4 %h %p"
	fdpass := "ProxyCommand=" + bin + " --fdpass -k " + l.keyring + " -4 %h %p"
	run := func(name string, port int, opts ...string) func() float64 {
		return func() float64 {
			args := append(sshd.SSHArgs(), "-p", strconv.Itoa(port), "-c", tpSSHCipher, "-o", "Compression=no")
			args = append(append(args, opts...), "root@"+l.addr.String(), tpRemoteTimed)
			cmd := l.client.Cmd("ssh", args...)
			cmd.Env = append(os.Environ(), "SHELL=/bin/sh")
			in, err := os.Open(file)
			if err != nil {
				b.Fatal(err)
			}
			defer in.Close()
			var stdout, stderr bytes.Buffer
			cmd.Stdin, cmd.Stdout, cmd.Stderr = in, &stdout, &stderr
			if err := cmd.Start(); err != nil {
				b.Fatalf("%s: %s: start ssh: %v", l.name, name, err)
			}
			kill := time.AfterFunc(tpLimit(n), func() { cmd.Process.Kill() })
			err = cmd.Wait()
			kill.Stop()
			tpNoSecret(b, l.secret, "ssh's stderr", stderr.Bytes())
			if err != nil {
				b.Fatalf("%s: %s: ssh: %v\n%s", l.name, name, err, stderr.String())
			}
			got, d, err := tpParseTimed(stdout.Bytes())
			if err != nil {
				b.Fatalf("%s: %s: %v", l.name, name, err)
			}
			if got != n-1 {
				b.Fatalf("%s: %s: the server counted %d bytes after the first, want %d", l.name, name, got, n-1)
			}
			return float64(got) / 1e6 / d.Seconds()
		}
	}
	s := Alternate(b, Rounds(),
		run(tpSSHPlain, srv.plainPort),
		run(tpSSHCopy, srv.md5Port, "-o", proxy),
		run(tpSSHFdpass, srv.md5Port, "-o", fdpass, "-o", "ProxyUseFdpass=yes"),
	)
	Record(b, Result{Section: tpSection, Link: l.name, Case: tpSSHPlain, Unit: tpMBps, Samples: s[0]})
	Record(b, Result{Section: tpSection, Link: l.name, Case: tpSSHCopy, Unit: tpMBps, Samples: s[1], Against: tpSSHPlain})
	Record(b, Result{Section: tpSection, Link: l.name, Case: tpSSHFdpass, Unit: tpMBps, Samples: s[2], Against: tpSSHPlain})
}
