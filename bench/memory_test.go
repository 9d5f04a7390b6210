//go:build bench && linux

package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/sshmd5/sshmd5/internal/tcpsig/md5"
	"github.com/sshmd5/sshmd5/internal/testnet"
	"golang.org/x/sys/unix"
)

const (
	memSectionProxy = "Memory: ssh-md5-proxy copy"
	memSectionShim  = "Memory: sshd-md5-socket sessions"
	memLink         = "loopback"
)

// memRounds is 3 (2 with -quick) unless -rounds says otherwise.
func memRounds() int {
	switch {
	case *flagRounds > 0:
		return *flagRounds
	case Quick():
		return 2
	}
	return 3
}

// BenchmarkMemory measures peak resident memory (VmHWM) of ssh-md5-proxy
// relaying a large upload in copy mode, next to other stdin/stdout relays
// doing the same, and the resident memory and fds of sshd-md5-socket
// holding many sessions open.
func BenchmarkMemory(b *testing.B) {
	testnet.RequireRoot(b)
	// Sub-benchmarks, so that a failing proxy run still leaves the
	// shim's figures (and the other way round).
	b.Run("proxy", memProxy)
	b.Run("shim", memShim)
}

// memProxy: one namespace, everything over its loopback. ssh-md5-proxy
// dials a keyed Go receiver that discards; its stdin and stdout are pipes,
// as under ssh, and this process writes the data into stdin. Peak RSS is
// VmHWM, polled every 10 ms and read once more after the receiver has
// seen the last byte (the proxy then waits for the server to close, so it
// is still alive).
func memProxy(b *testing.B) {
	size := int64(1 << 30)
	if Quick() {
		size = 64 << 20
	}
	dir := b.TempDir()
	proxy := testnet.BuildBinary(b, "cmd/ssh-md5-proxy")
	ns := testnet.NewNS(b, "memproxy")
	secret := flSecret(b)
	keyFile := filepath.Join(dir, "md5.key")
	flWrite(b, keyFile, secret)

	signed := memReceiver(b, ns, []md5.Key{{Prefix: netip.MustParsePrefix("0.0.0.0/0"), Secret: md5.Secret(secret)}})
	plain := memReceiver(b, ns, nil)
	keyring := filepath.Join(dir, "client.toml")
	testnet.Keyring{Hosts: []testnet.Entry{testnet.Host("127.0.0.1", keyFile)}}.Write(b, keyring)

	type relay struct {
		name string
		comm string // the process name once it runs (after ip netns exec, bash)
		argv []string
		recv *memRecv
		hwm  []float64
		mbps []float64
	}
	relays := []*relay{
		{name: "ssh-md5-proxy (signed)", comm: "ssh-md5-proxy", argv: []string{proxy, "-k", keyring, "127.0.0.1", strconv.Itoa(signed.port)}, recv: signed},
	}
	if _, err := exec.LookPath("spiped"); err == nil {
		// spiped -d in front of the plain receiver; spipe is the
		// stdin/stdout client, the one used as an ssh ProxyCommand.
		spKey := filepath.Join(dir, "spiped.key")
		flWrite(b, spKey, flSecret(b))
		port := memFreePort(b, ns)
		d := startProc(b, ns, "spiped", secret, "spiped", "-d", "-F", "-s", fmt.Sprintf("[127.0.0.1]:%d", port),
			"-t", fmt.Sprintf("[127.0.0.1]:%d", plain.port), "-k", spKey)
		d.WaitListen(port, 10*time.Second)
		relays = append(relays, &relay{name: "spipe (spiped, unsigned)", comm: "spipe", argv: []string{"spipe", "-t", fmt.Sprintf("[127.0.0.1]:%d", port), "-k", spKey}, recv: plain})
	} else {
		SectionNote(memSectionProxy, "spiped is not installed, so there is no spipe row (bench/run installs it).")
	}
	if p, err := exec.LookPath("socat"); err == nil {
		relays = append(relays, &relay{name: "socat (unsigned)", comm: "socat", argv: []string{p, "-", fmt.Sprintf("TCP:127.0.0.1:%d", plain.port)}, recv: plain})
	}
	relays = append(relays, &relay{name: "cat >/dev/tcp (unsigned)", comm: "cat", argv: []string{"bash", "-c", fmt.Sprintf("exec cat >/dev/tcp/127.0.0.1/%d", plain.port)}, recv: plain})

	var fns []func() float64
	for _, r := range relays {
		fns = append(fns, func() float64 {
			hwm, d := memCopy(b, ns, r.comm, r.argv, r.recv, size, secret)
			r.hwm = append(r.hwm, hwm)
			r.mbps = append(r.mbps, float64(size)/1e6/d.Seconds())
			return hwm
		})
	}
	Alternate(b, memRounds(), fns...)

	var speeds []string
	for i, r := range relays {
		res := Result{Section: memSectionProxy, Link: memLink, Case: r.name + ", VmHWM", Unit: "MiB", Samples: r.hwm}
		if i == 0 && len(relays) > 1 {
			res.Against = relays[1].name + ", VmHWM"
		}
		if i == 0 {
			res.Note = fmt.Sprintf("peak RSS of the relay process while %s flow from its stdin (a pipe) to a receiver that discards", memSize(size))
		}
		Record(b, res)
		speeds = append(speeds, fmt.Sprintf("%s %.0f MB/s", r.name, Percentile(r.mbps, 50)))
	}
	SectionNote(memSectionProxy, fmt.Sprintf("Each relay copies %s from this process through a pipe on its stdin to a Go receiver in the same namespace (loopback) that discards it; stdout is a pipe too, as under ssh. "+
		"ssh-md5-proxy runs in copy mode (no --fdpass) to a receiver keyed for 0.0.0.0/0; the unsigned relays go to an unkeyed receiver (spipe via a spiped -d in front of it). "+
		"VmHWM is read from /proc/PID/status, polled every 10 ms and once more after the receiver has counted the last byte, while the relay still runs; %d round(s), relays interleaved. "+
		"Median copy speeds, for context (not the point here): %s.", memSize(size), memRounds(), strings.Join(speeds, ", ")))
}

// memShim: sshd-md5-socket in inetd mode on 127.0.0.1 in a namespace,
// with `/bin/cat` as its COMMAND (to measure the shim alone; cat echoes,
// which proves each session has its child). N signed connections from
// this process are opened and held; once every one has echoed, the shim's
// VmRSS, VmHWM and fd count are read. A fresh shim each round.
func memShim(b *testing.B) {
	n := 100
	if Quick() {
		n = 10
	}
	dir := b.TempDir()
	shimBin := testnet.BuildBinary(b, "cmd/sshd-md5-socket")
	ns := testnet.NewNS(b, "memshim")
	secret := flSecret(b)
	keyFile := filepath.Join(dir, "md5.key")
	flWrite(b, keyFile, secret)
	keyring := filepath.Join(dir, "server.toml")
	testnet.Keyring{Peers: testnet.Both(keyFile)}.Write(b, keyring)

	var idleRSS, idleHWM, idleFDs, rss, hwm, fds, afterRSS []float64
	for r := 0; r < memRounds(); r++ {
		port := memFreePort(b, ns)
		shim := startProc(b, ns, filepath.Base(shimBin), secret, shimBin, "-k", keyring, "-l", fmt.Sprintf("127.0.0.1:%d", port),
			// /bin/cat never authenticates, so every session counts as
			// pending, all from 127.0.0.1: lift those limits too.
			"--max-conns", strconv.Itoa(2*n), "--max-startups", strconv.Itoa(2*n),
			"--per-source-max-startups", strconv.Itoa(2*n), "--", "/bin/cat")
		shim.WaitLog(`serving .* in inetd mode`, 20*time.Second)
		pid := shim.Cmd.Process.Pid
		time.Sleep(300 * time.Millisecond)
		st := memStatus(b, pid)
		idleRSS, idleHWM = append(idleRSS, st.rss), append(idleHWM, st.hwm)
		idleFDs = append(idleFDs, float64(memFDs(b, pid)))

		d := net.Dialer{Control: md5.DialControl(md5.Secret(secret)), Timeout: 10 * time.Second}
		d.SetMultipathTCP(false)
		conns := make([]net.Conn, 0, n)
		for i := 0; i < n; i++ {
			var c net.Conn
			err := ns.Do(func() error {
				var err error
				c, err = d.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
				return err
			})
			if err != nil {
				b.Fatalf("signed connection %d to the shim: %v", i, err)
			}
			conns = append(conns, c)
		}
		// Every session echoes through its own cat: all N children run.
		for i, c := range conns {
			_ = c.SetDeadline(time.Now().Add(20 * time.Second))
			msg := fmt.Sprintf("session %d\n", i)
			if _, err := io.WriteString(c, msg); err != nil {
				b.Fatalf("session %d: write: %v", i, err)
			}
			got, err := bufio.NewReader(c).ReadString('\n')
			if err != nil || got != msg {
				b.Fatalf("session %d: echo %q, %v", i, got, err)
			}
		}
		if k := memChildren(pid); k != n {
			b.Fatalf("the shim has %d children with %d sessions open", k, n)
		}
		st = memStatus(b, pid)
		rss, hwm = append(rss, st.rss), append(hwm, st.hwm)
		fds = append(fds, float64(memFDs(b, pid)))
		for _, c := range conns {
			c.Close()
		}
		deadline := time.Now().Add(30 * time.Second)
		for memChildren(pid) != 0 {
			if time.Now().After(deadline) {
				b.Fatalf("the shim still has %d children 30 s after the sessions closed", memChildren(pid))
			}
			time.Sleep(20 * time.Millisecond)
		}
		time.Sleep(200 * time.Millisecond)
		afterRSS = append(afterRSS, memStatus(b, pid).rss)
		if strings.Contains(shim.Log(), string(secret)) {
			b.Fatalf("the secret appears in sshd-md5-socket's log")
		}
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		<-shim.Done
	}
	idle := "idle, VmRSS"
	sess := fmt.Sprintf("%d sessions", n)
	Record(b, Result{Section: memSectionShim, Link: memLink, Case: idle, Unit: "MiB", Samples: idleRSS,
		Note: "fresh shim, keyed listener, no connection served yet"})
	Record(b, Result{Section: memSectionShim, Link: memLink, Case: sess + ", VmRSS", Unit: "MiB", Samples: rss, Against: idle})
	Record(b, Result{Section: memSectionShim, Link: memLink, Case: "idle, VmHWM", Unit: "MiB", Samples: idleHWM})
	Record(b, Result{Section: memSectionShim, Link: memLink, Case: sess + ", VmHWM", Unit: "MiB", Samples: hwm, Against: "idle, VmHWM"})
	Record(b, Result{Section: memSectionShim, Link: memLink, Case: "after the sessions closed, VmRSS", Unit: "MiB", Samples: afterRSS, Against: idle})
	Record(b, Result{Section: memSectionShim, Link: memLink, Case: "idle, open fds", Unit: "fds", Samples: idleFDs})
	Record(b, Result{Section: memSectionShim, Link: memLink, Case: sess + ", open fds", Unit: "fds", Samples: fds, Against: "idle, open fds"})
	perSess := (Percentile(rss, 50) - Percentile(idleRSS, 50)) * 1024 / float64(n)
	SectionNote(memSectionShim, fmt.Sprintf("sshd-md5-socket in inetd mode on 127.0.0.1 in its own namespace, keyed for 0.0.0.0/0 and ::/0, with `/bin/cat` as COMMAND instead of `sshd -i` so that only the shim is measured: what the child uses is the child's, not counted here, and the shim does the same work per session whatever the child is. "+
		"This process opens %d signed connections and holds them; once every one has echoed a line through its own cat, the shim's VmRSS and VmHWM are read from /proc/PID/status and its fds counted in /proc/PID/fd. "+
		"A fresh shim per round, %d round(s). Median growth: %.0f KiB of RSS and %.1f fds per open session; the shim keeps no copy of a session's socket once the child has it, and the extra fds are the pidfds Go holds for running children.",
		n, memRounds(), perSess, (Percentile(fds, 50)-Percentile(idleFDs, 50))/float64(n)))
}

// memRecv is a receiver in a namespace: each accepted connection is read
// to EOF and discarded, its byte count reported on got, and it is closed
// only when release is signalled, so the sender is still running then.
type memRecv struct {
	port     int
	progress atomic.Int64 // bytes received over all connections so far
	base     atomic.Int64 // progress when the current connection was accepted
	got      chan int64
	release  chan struct{}
}

func memReceiver(b *testing.B, ns *testnet.NS, keys []md5.Key) *memRecv {
	b.Helper()
	var ln net.Listener
	err := ns.Do(func() error {
		var lc net.ListenConfig
		lc.SetMultipathTCP(false)
		if keys != nil {
			lc.Control = md5.ListenControl(keys)
		}
		var err error
		ln, err = lc.Listen(context.Background(), "tcp4", "127.0.0.1:0")
		return err
	})
	if err != nil {
		b.Fatalf("receiver: %v", err)
	}
	r := &memRecv{port: ln.Addr().(*net.TCPAddr).Port, got: make(chan int64, 1), release: make(chan struct{})}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, 256<<10)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			var total int64
			r.base.Store(r.progress.Load())
			for {
				k, err := c.Read(buf)
				total += int64(k)
				r.progress.Add(int64(k))
				if err != nil {
					break
				}
			}
			r.got <- total
			<-r.release
			c.Close()
		}
	}()
	b.Cleanup(func() {
		ln.Close()
		close(r.release)
		wg.Wait()
	})
	return r
}

// memCopy runs argv in ns with pipes on stdin and stdout, writes size bytes
// into stdin and returns the process's peak RSS in MiB and how long the
// receiver took to get everything.
func memCopy(b *testing.B, ns *testnet.NS, comm string, argv []string, recv *memRecv, size int64, secret []byte) (float64, time.Duration) {
	b.Helper()
	cmd := ns.Cmd(argv[0], argv[1:]...)
	// A pipe of our own rather than StdinPipe, to ask it how much is
	// queued (FIONREAD) if the relay stalls.
	pr, stdin, err := os.Pipe()
	if err != nil {
		b.Fatal(err)
	}
	cmd.Stdin = pr
	defer stdin.Close()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	errb := &testnet.LockedBuffer{}
	cmd.Stderr = errb
	t0 := time.Now()
	err = cmd.Start()
	pr.Close()
	if err != nil {
		b.Fatalf("start %s: %v", argv[0], err)
	}
	pid := cmd.Process.Pid
	var peak float64
	var peakMu sync.Mutex
	poll := func() {
		// Before the exec of the relay itself, the pid is ip (netns
		// exec) or bash, whose peak must not count.
		if st, ok := memReadStatus(pid); ok && st.name == comm {
			peakMu.Lock()
			peak = max(peak, st.hwm)
			peakMu.Unlock()
		}
	}
	stopPoll := make(chan struct{})
	polled := make(chan struct{})
	go func() {
		defer close(polled)
		for {
			poll()
			select {
			case <-stopPoll:
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}()
	go func() { _, _ = io.Copy(io.Discard, stdout) }()
	writeErr := make(chan error, 1)
	go func() {
		buf := make([]byte, 1<<20)
		var err error
		for left := size; left > 0 && err == nil; {
			k := min(left, int64(len(buf)))
			_, err = stdin.Write(buf[:k])
			left -= k
		}
		stdin.Close()
		writeErr <- err
	}()
	// A relay that makes no progress for memStallLimit fails the
	// benchmark: a stall is a finding, not something to wait out.
	var got int64
	last, lastChange := recv.progress.Load(), time.Now()
	for waiting := true; waiting; {
		select {
		case got = <-recv.got:
			waiting = false
		case <-time.After(time.Second):
			if p := recv.progress.Load(); p != last {
				last, lastChange = p, time.Now()
			} else if time.Since(lastChange) > memStallLimit {
				queued := "unknown"
				if rc, err := stdin.SyscallConn(); err == nil {
					_ = rc.Control(func(fd uintptr) {
						if q, err := unix.IoctlGetInt(int(fd), unix.TIOCINQ); err == nil {
							queued = strconv.Itoa(q)
						}
					})
				}
				alive := "alive"
				if st, ok := memReadStatus(pid); !ok || st.name != comm {
					alive = "gone"
				}
				_ = cmd.Process.Kill()
				b.Fatalf("%s stalled: the receiver has %d of %d bytes and got nothing for %v; the relay is %s and %s bytes wait in its stdin pipe; stderr:\n%s",
					argv[0], p-recv.base.Load(), size, memStallLimit, alive, queued, redact([]byte(errb.String()), secret))
			}
		}
	}
	el := time.Since(t0)
	poll() // the relay is still alive unless it exits on its own at EOF (cat)
	close(stopPoll)
	<-polled
	recv.release <- struct{}{}
	if err := <-writeErr; err != nil {
		b.Fatalf("%s: writing its stdin: %v", argv[0], err)
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	var werr error
	select {
	case werr = <-waited:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-waited
		b.Fatalf("%s did not exit within 30 s of the receiver closing", argv[0])
	}
	var ee *exec.ExitError
	if werr != nil && !errors.As(werr, &ee) {
		b.Fatalf("%s: %v", argv[0], werr)
	}
	if werr != nil {
		b.Fatalf("%s exited with %v; stderr:\n%s", argv[0], werr, redact([]byte(errb.String()), secret))
	}
	if got != size {
		b.Fatalf("%s: the receiver got %d bytes of %d", argv[0], got, size)
	}
	if peak == 0 {
		b.Fatalf("%s: no VmHWM read", argv[0])
	}
	return peak, el
}

type memStat struct {
	name     string  // the process's comm
	rss, hwm float64 // MiB
}

// memReadStatus reads VmRSS and VmHWM of pid.
func memReadStatus(pid int) (memStat, bool) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return memStat{}, false
	}
	var s memStat
	var n int
	for _, l := range strings.Split(string(data), "\n") {
		f := strings.Fields(l)
		if len(f) == 2 && f[0] == "Name:" {
			s.name = f[1]
		}
		if len(f) < 3 || f[2] != "kB" {
			continue
		}
		kb, err := strconv.ParseFloat(f[1], 64)
		if err != nil {
			continue
		}
		switch f[0] {
		case "VmRSS:":
			s.rss = kb / 1024
			n++
		case "VmHWM:":
			s.hwm = kb / 1024
			n++
		}
	}
	return s, n == 2
}

func memStatus(b *testing.B, pid int) memStat {
	b.Helper()
	s, ok := memReadStatus(pid)
	if !ok {
		b.Fatalf("no VmRSS/VmHWM for pid %d", pid)
	}
	return s
}

func memFDs(b *testing.B, pid int) int {
	b.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		b.Fatalf("fds of %d: %v", pid, err)
	}
	return len(ents)
}

// memChildren counts the live (not zombie) children of pid.
func memChildren(pid int) int {
	n := 0
	for _, st := range testnet.Children(pid) {
		if st != "Z" {
			n++
		}
	}
	return n
}

// memFreePort returns a port free on the namespace's loopback.
func memFreePort(b *testing.B, ns *testnet.NS) int {
	b.Helper()
	var port int
	err := ns.Do(func() error {
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			return err
		}
		port = ln.Addr().(*net.TCPAddr).Port
		return ln.Close()
	})
	if err != nil {
		b.Fatal(err)
	}
	return port
}

func memSize(n int64) string {
	if n >= 1<<30 {
		return fmt.Sprintf("%d GiB", n>>30)
	}
	return fmt.Sprintf("%d MiB", n>>20)
}

// memStallLimit is how long a copy may make no progress at all.
const memStallLimit = 15 * time.Second
