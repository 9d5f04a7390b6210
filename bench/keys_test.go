//go:build bench && linux

package bench

import (
	"bufio"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sshmd5/sshmd5/internal/tcpsig"
	"github.com/sshmd5/sshmd5/internal/tcpsig/md5"
	"github.com/sshmd5/sshmd5/internal/testnet"
)

const keysSection = "Keys per listener"

// keysCounts are the listener key counts compared: the catch-all 0.0.0.0/0
// plus n-1 /32 peer prefixes.
var keysCounts = []int{1, 10, 100, 1000, 10000}

// keysSet is one listener's key set and the keyring file saying the same.
type keysSet struct {
	n       int
	keys    []md5.Key
	catch   md5.Secret // the 0.0.0.0/0 key, the one the client signs with
	keyring string
	flip    bool // which of two keys the changing entry has now
	changeA md5.Secret
	changeB md5.Secret
}

func keysSecret() md5.Secret { return md5.Secret(testnet.NewSecret()) }

// keysMake builds n prefixes: 0.0.0.0/0 and n-1 /32s in 10.251.0.0/16,
// where no real peer lives. The last prefix is the one a reload changes.
func keysMake(b *testing.B, dir string, n int) *keysSet {
	s := &keysSet{n: n, catch: keysSecret(), changeA: keysSecret(), changeB: keysSecret()}
	filler := keysSecret()
	s.keys = append(s.keys, md5.Key{Prefix: netip.MustParsePrefix("0.0.0.0/0"), Secret: s.catch})
	for i := 1; i < n; i++ {
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 251, byte(i / 250), byte(1 + i%250)}), 32)
		sec := filler
		if i == n-1 {
			sec = s.changeA
		}
		s.keys = append(s.keys, md5.Key{Prefix: p, Secret: sec})
	}
	s.keyring = filepath.Join(dir, fmt.Sprintf("keyring-%d.toml", n))
	s.write(b)
	return s
}

// write writes the keyring (atomically, as an editor would). The key
// that changes is the last /32's, or with n=1 the catch-all's: then the
// signed client's key changes too, but the client dials other listeners.
func (s *keysSet) write(b *testing.B) {
	var kr testnet.Keyring
	for i, k := range s.keys {
		sec := k.Secret
		if i == len(s.keys)-1 {
			sec = s.changeA
			if s.flip {
				sec = s.changeB
			}
		}
		kr.Peers = append(kr.Peers, testnet.Entry{Name: k.Prefix.String(), Key: []byte(sec)})
	}
	kr.Write(b, s.keyring)
}

// keysShim is a running sshd-md5-socket whose log lines arrive on lines.
type keysShim struct {
	cmd   *os.Process
	lines chan string
}

func keysStartShim(b *testing.B, ns *testnet.NS, bin, keyring, addr string) *keysShim {
	cmd := ns.Cmd(bin, "-k", keyring, "-l", addr, "--", "/bin/true")
	out, err := cmd.StderrPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatalf("start sshd-md5-socket: %v", err)
	}
	s := &keysShim{cmd: cmd.Process, lines: make(chan string, 64)}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			s.lines <- sc.Text()
		}
		close(s.lines)
	}()
	b.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return s
}

// wait returns the first line matching re (and the lines before it).
func (s *keysShim) wait(b *testing.B, re *regexp.Regexp, timeout time.Duration) string {
	b.Helper()
	deadline := time.After(timeout)
	var seen []string
	for {
		select {
		case l, ok := <-s.lines:
			if !ok {
				b.Fatalf("sshd-md5-socket exited; its log:\n%s", strings.Join(seen, "\n"))
			}
			seen = append(seen, l)
			if re.MatchString(l) {
				return strings.Join(seen, "\n")
			}
		case <-deadline:
			b.Fatalf("no log line matching %q after %v; log:\n%s", re, timeout, strings.Join(seen, "\n"))
		}
	}
}

// BenchmarkKeys measures what the number of keys on a listener costs: the
// signed handshake and accept rate, installing the keys, and a reload of
// the real sshd-md5-socket where one key of N changed.
func BenchmarkKeys(b *testing.B) {
	testnet.RequireRoot(b)
	dir := b.TempDir()
	srv := testnet.NewNS(b, "keys-srv")
	cli := testnet.NewNS(b, "keys-cli")
	link := testnet.Connect(b, srv, cli)
	// About 140 bytes of option memory per key: 10,000 need ~1.4 MB,
	// far above the default. Per namespace, so only the bench's own.
	srv.Run(b, "sysctl", "-qw", "net.core.optmem_max=8388608")
	shimBin := testnet.BuildBinary(b, "cmd/sshd-md5-socket")

	dials := 300
	if Quick() {
		dials = 40
	}
	sets := make([]*keysSet, len(keysCounts))
	lns := make([]net.Listener, len(keysCounts))
	shims := make([]*keysShim, len(keysCounts))
	inForce := regexp.MustCompile(`reload: \d+ key\(s\) from .* in force|keeping the previous keys`)
	for i, n := range keysCounts {
		s := keysMake(b, dir, n)
		sets[i] = s
		addr := netip.AddrPortFrom(link.AddrA4, uint16(3000+i)).String()
		if err := srv.Do(func() error {
			lc := net.ListenConfig{Control: md5.ListenControl(s.keys)}
			lc.SetMultipathTCP(false)
			var err error
			lns[i], err = lc.Listen(b.Context(), "tcp4", addr)
			return err
		}); err != nil {
			b.Fatalf("listener with %d keys: %v", n, err)
		}
		ln := lns[i]
		b.Cleanup(func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
		shims[i] = keysStartShim(b, srv, shimBin, s.keyring, netip.AddrPortFrom(link.AddrA4, uint16(4000+i)).String())
		shims[i].wait(b, regexp.MustCompile(`serving`), 60*time.Second)
	}

	latency := make([][]float64, len(keysCounts)) // µs per handshake, all dials
	rate := make([][]float64, len(keysCounts))    // handshakes per second, per round
	install := make([][]float64, len(keysCounts)) // ms to put N keys on a fresh socket
	reload := make([][]float64, len(keysCounts))  // ms from SIGHUP to "in force"
	apply := make([][]float64, len(keysCounts))   // ms the shim spent rekeying, from its log
	var diffMu sync.Mutex
	diffs := map[int]string{}

	fns := make([]func() float64, len(keysCounts))
	for i := range keysCounts {
		fns[i] = func() float64 {
			s := sets[i]
			addr := lns[i].Addr().String()
			// Signed handshakes, one after another: connect() returns
			// when the SYN-ACK is in, so it times the listener's lookups.
			start := time.Now()
			for range dials {
				var c net.Conn
				err := cli.Do(func() error {
					d := net.Dialer{Timeout: 5 * time.Second, Control: md5.DialControl(s.catch)}
					t0 := time.Now()
					var err error
					c, err = d.Dial("tcp4", addr)
					latency[i] = append(latency[i], float64(time.Since(t0).Microseconds()))
					return err
				})
				if err != nil {
					b.Fatalf("signed dial to the listener with %d keys: %v", s.n, err)
				}
				c.Close()
			}
			rate[i] = append(rate[i], float64(dials)/time.Since(start).Seconds())

			// Installing all N keys on a new socket, as the shim does
			// at start (ListenControl).
			if err := srv.Do(func() error {
				fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
				if err != nil {
					return err
				}
				defer syscall.Close(fd)
				ts, err := tcpsig.Inspect(fd)
				if err != nil {
					return err
				}
				sock := md5.Socket{Socket: ts}
				t0 := time.Now()
				err = sock.Install(s.keys)
				install[i] = append(install[i], float64(time.Since(t0).Microseconds())/1000)
				return err
			}); err != nil {
				b.Fatalf("installing %d keys: %v", s.n, err)
			}

			// Reload of the real shim with one key changed.
			s.flip = !s.flip
			s.write(b)
			t0 := time.Now()
			shims[i].cmd.Signal(syscall.SIGHUP)
			log := shims[i].wait(b, inForce, 30*time.Second)
			ms := float64(time.Since(t0).Microseconds()) / 1000
			reload[i] = append(reload[i], ms)
			if strings.Contains(log, "keeping the previous keys") {
				b.Fatalf("reload with %d keys failed:\n%s", s.n, log)
			}
			m := regexp.MustCompile(`: (\d+ added, \d+ replaced, \d+ deleted) in (\S+)`).FindStringSubmatch(log)
			if m == nil || m[1] != "0 added, 1 replaced, 0 deleted" {
				b.Fatalf("reload with %d keys, one changed: want 0 added, 1 replaced, 0 deleted; log:\n%s", s.n, log)
			}
			took, err := time.ParseDuration(m[2])
			if err != nil {
				b.Fatalf("reload log: %v", err)
			}
			apply[i] = append(apply[i], float64(took.Microseconds())/1000)
			diffMu.Lock()
			diffs[s.n] = m[1]
			diffMu.Unlock()
			return ms
		}
	}
	Alternate(b, Rounds(), fns...)

	base := fmt.Sprintf("%d key", keysCounts[0])
	name := func(n int) string {
		if n == 1 {
			return base
		}
		return fmt.Sprintf("%d keys", n)
	}
	for _, m := range []struct {
		what, unit string
		data       [][]float64
	}{
		{"signed handshake", "µs", latency},
		{"signed handshakes/s", "conn/s", rate},
		{"install on a new socket", "ms", install},
		{"shim reload, 1 changed", "ms", reload},
		{"shim rekey on reload, 1 changed", "ms", apply},
	} {
		for i, n := range keysCounts {
			r := Result{Section: keysSection, Link: "veth", Case: m.what + ", " + name(n), Unit: m.unit, Samples: m.data[i]}
			if n != keysCounts[0] {
				r.Against = m.what + ", " + base
			}
			Record(b, r)
		}
	}
	last := len(keysCounts) - 1
	verdict := func(xs []float64) string {
		v := "met"
		if Percentile(xs, 99) >= 50 {
			v = "**missed**"
		}
		return fmt.Sprintf("%s (p50 %.1f ms, p99 %.1f ms)", v, Percentile(xs, 50), Percentile(xs, 99))
	}
	SectionNote(keysSection, fmt.Sprintf(
		"Each listener has 0.0.0.0/0 and N-1 /32 prefixes in net.core.optmem_max raised to 8 MiB in the bench's server namespace; the signed client matches only 0.0.0.0/0, so the kernel's longest-prefix lookup walks the whole list. "+
			"Handshake: time of connect() (SYN out, SYN-ACK in) of %d sequential signed dials per round over the veth; rate: those dials per second. "+
			"Install: md5.Socket.Install of all N keys on a fresh socket, what the shim does before listen. "+
			"Reload: the real sshd-md5-socket, SIGHUP after rewriting the keyring with one key changed, until its log says the keys are in force "+
			"(keyring read and parse, read-back attempt, reconcile); rekey: the part of that the shim logs as spent on the socket (read-back attempt and reconcile). Every reload logged %q. "+
			"Target: a reload of %d prefixes with 1 changed applies 1 change under 50 ms. Applying it: %s. The whole reload, keyring parse included: %s.",
		dials, diffs[keysCounts[last]], keysCounts[last], verdict(apply[last]), verdict(reload[last])))
}
