//go:build bench && linux

package bench

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"
)

const lgTputSection = "Throughput vs spiped"

// lgCipher is the ssh cipher of every throughput case.
const lgCipher = "aes128-gcm@openssh.com"

// BenchmarkSpipedThroughput pushes data through an ssh session over the
// veth: plain ssh to sshd -D, ssh via ssh-md5-proxy (copy and --fdpass) to
// sshd-md5-socket in inetd mode, and ssh via spipe to spiped in front of
// sshd -D. The remote command counts the bytes (wc -c), so each transfer
// is checked to have arrived whole.
func BenchmarkSpipedThroughput(b *testing.B) {
	e := lgNewEnv(b)
	size := 200 << 20
	if Quick() {
		size = 16 << 20
	}
	const chunk = 1 << 20
	buf := make([]byte, chunk)
	if _, err := rand.Read(buf); err != nil {
		b.Fatal(err)
	}
	host := e.link.AddrA4.String()
	cases := e.cases(false)
	cases[0].name = "plain ssh"
	for i := range cases[1:] {
		cases[i+1].name = strings.Replace(cases[i+1].name, "shim inetd, proxy", "ssh-md5-proxy", 1)
		cases[i+1].name = strings.Replace(cases[i+1].name, "spipe -> spiped -> sshd -D", "spipe -> spiped", 1)
	}

	// push sends size bytes through ssh and returns MB/s of the data
	// phase: from when ssh has taken the first MiB from its stdin (the
	// channel is open: ssh reads stdin only then) to ssh's exit.
	push := func(c lgCase) float64 {
		cmd := e.sshCmd(c, host, []string{"-c", lgCipher, "-o", "Compression=no"}, "wc -c")
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		in, err := cmd.StdinPipe()
		if err != nil {
			b.Fatal(err)
		}
		// Far beyond any rate seen here (MD5 over veth: tens of MB/s):
		// a transfer still running then has stalled.
		limit := 60*time.Second + time.Duration(size/(2<<20))*time.Second
		stop, err := lgStartIn(e.cli, cmd, limit)
		if err != nil {
			b.Fatalf("%s: start ssh: %v", c.name, err)
		}
		var t0 time.Time
		var werr error
		for sent := 0; sent < size; sent += chunk {
			if _, werr = in.Write(buf); werr != nil {
				break
			}
			if sent == 0 {
				t0 = time.Now()
			}
		}
		in.Close()
		err = cmd.Wait()
		d := time.Since(t0)
		if stop() {
			b.Fatalf("%s: the transfer of %d MiB stalled: ssh still running after %v, killed (ssh and its ProxyCommand)\n%s", c.name, size>>20, limit, redact(stderr.Bytes(), e.secret))
		}
		if werr != nil || err != nil {
			b.Fatalf("%s: ssh transfer: write: %v; ssh: %v\n%s", c.name, werr, err, redact(stderr.Bytes(), e.secret))
		}
		if got := strings.TrimSpace(stdout.String()); got != strconv.Itoa(size) {
			b.Fatalf("%s: the server counted %q bytes, sent %d", c.name, got, size)
		}
		return float64(size-chunk) / 1e6 / d.Seconds()
	}
	fns := make([]func() float64, len(cases))
	for i, c := range cases {
		push(c) // warm-up, not recorded
		fns[i] = func() float64 { return push(c) }
	}
	samples := Alternate(b, Rounds(), fns...)
	e.check()
	for i, c := range cases {
		r := Result{Section: lgTputSection, Link: "veth", Case: c.name, Unit: "MB/s", Samples: samples[i]}
		if i > 0 {
			r.Against = cases[0].name
		}
		Record(b, r)
	}
	SectionNote(lgTputSection, fmt.Sprintf("%d MiB of random data per transfer through one ssh session over the veth (`ssh -c %s root@HOST 'wc -c'`, stdin fed from a pipe, the count checked), timed from when ssh has taken the first MiB from its stdin (the session channel is open) to ssh's exit; MB/s = 10^6 bytes/s. Plain ssh goes to sshd -D, the ssh-md5-proxy cases to sshd-md5-socket in inetd mode (every segment TCP-MD5 signed), spipe to spiped -d in front of sshd -D (the data is encrypted twice: by ssh and by spiped). Copy mode adds the proxy's copy in both directions on the client; --fdpass leaves ssh on the signed socket itself.", size>>20, lgCipher))
}
