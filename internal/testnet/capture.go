//go:build linux

package testnet

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Capture is a running tcpdump writing one port's TCP segments to a file.
type Capture struct {
	ns      *NS
	port    int // the port captured
	file    string
	cmd     *exec.Cmd
	stderr  *LockedBuffer
	done    chan error // result of cmd.Wait
	stopped bool
}

// LockedBuffer is a bytes.Buffer safe to fill from exec's copier goroutine
// while a test reads it (tcpdump's stderr, a container's console).
type LockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *LockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *LockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// StartCapture starts tcpdump on iface inside the namespace, recording TCP
// segments to or from port into a file, and returns once tcpdump reports
// that it is listening. No secret is involved here: signatures are checked
// when the file is read back in Stop, so no key appears in a running
// process's argv for longer than the read-back takes.
func (ns *NS) StartCapture(t testing.TB, iface string, port int) *Capture {
	t.Helper()
	requireBinary(t, "tcpdump")
	c := &Capture{
		ns:     ns,
		port:   port,
		file:   filepath.Join(t.TempDir(), "capture.pcap"),
		stderr: &LockedBuffer{},
		done:   make(chan error, 1),
	}
	// -Z root: Debian's tcpdump otherwise drops to user tcpdump and cannot
	// write into the test's 0700 temp dir. --immediate-mode and -U so that
	// every segment is in the file by the time Stop signals tcpdump.
	c.cmd = ns.Cmd("tcpdump", "-i", iface, "-nn", "-Z", "root", "--immediate-mode", "-U",
		"-w", c.file, "tcp port "+strconv.Itoa(port))
	c.cmd.Stderr = c.stderr
	if err := c.cmd.Start(); err != nil {
		t.Fatalf("testnet: start tcpdump in %s: %v", ns.Name, err)
	}
	go func() { c.done <- c.cmd.Wait() }()
	t.Cleanup(func() { c.kill() })
	deadline := time.After(10 * time.Second)
	for !strings.Contains(c.stderr.String(), "listening on") {
		select {
		case err := <-c.done:
			c.stopped = true
			t.Fatalf("testnet: tcpdump on %s in %s exited before listening: %v\n%s", iface, ns.Name, err, c.stderr)
		case <-deadline:
			t.Fatalf("testnet: tcpdump on %s in %s not listening after 10s:\n%s", iface, ns.Name, c.stderr)
		case <-time.After(10 * time.Millisecond):
		}
	}
	return c
}

// kill ends tcpdump at cleanup if Stop was never reached.
func (c *Capture) kill() {
	if c.stopped {
		return
	}
	c.stopped = true
	_ = c.cmd.Process.Kill()
	<-c.done
}

// CaptureStats summarises a capture. Every count is of TCP segments on the
// captured port.
type CaptureStats struct {
	Segments     int // all segments
	Valid        int // MD5 option present and verified with the secret ("md5 valid")
	Invalid      int // MD5 option present, signature wrong for the secret ("md5  (invalid)")
	Unchecked    int // MD5 option present but not verified (Stop with a nil secret)
	Unsigned     int // no MD5 option
	SYNs         int // SYN without ACK
	SYNACKs      int // SYN with ACK
	RSTs         int // RST set
	UnsignedSYNs int // SYNs (without ACK) that carry no MD5 option
}

func (s CaptureStats) String() string {
	return fmt.Sprintf("segments %d: md5 valid %d, invalid %d, unchecked %d, unsigned %d; SYN %d (unsigned %d), SYN-ACK %d, RST %d",
		s.Segments, s.Valid, s.Invalid, s.Unchecked, s.Unsigned, s.SYNs, s.UnsignedSYNs, s.SYNACKs, s.RSTs)
}

// Stop stops tcpdump and analyses the capture, verifying signatures with
// secret (nil: no key expected, signed segments count as Unchecked). The
// secret is passed to tcpdump -M in argv, which is acceptable for a
// short-lived process; it is never printed.
func (c *Capture) Stop(t testing.TB, secret []byte) CaptureStats {
	t.Helper()
	if c.stopped {
		t.Fatalf("testnet: capture stopped twice")
	}
	// The packet socket delivers asynchronously; give segments sent just
	// before Stop a moment to reach tcpdump.
	time.Sleep(100 * time.Millisecond)
	c.stopped = true
	_ = c.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-c.done: // exits with status 0 on SIGINT; its stderr says enough on trouble
	case <-time.After(10 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.done
		t.Fatalf("testnet: tcpdump did not stop on SIGINT:\n%s", c.stderr)
	}
	return c.Analyze(t, secret)
}

// Analyze reads the stopped capture back, verifying signatures with secret
// like Stop does; use it to check the same capture with other secrets.
func (c *Capture) Analyze(t testing.TB, secret []byte) CaptureStats {
	t.Helper()
	return parseTcpdump(bytes.NewReader(c.readBack(t, "Analyze", secret)))
}

// readBack prints the stopped capture with tcpdump -r, verifying
// signatures with secret (nil: none).
func (c *Capture) readBack(t testing.TB, caller string, secret []byte) []byte {
	t.Helper()
	if !c.stopped {
		t.Fatalf("testnet: %s before Stop", caller)
	}
	if bytes.IndexByte(secret, 0) >= 0 {
		t.Fatalf("testnet: secret contains a NUL byte, which tcpdump -M cannot take")
	}
	args := []string{"-r", c.file, "-nn", "-vv"}
	if secret != nil {
		args = append(args, "-M", string(secret))
	}
	out, err := exec.Command("tcpdump", args...).CombinedOutput()
	if err != nil {
		// The argv holds the secret: report neither it nor the command line.
		t.Fatalf("testnet: reading capture back with tcpdump -r: %v\n%s", err, redact(out, secret))
	}
	return out
}

// AnalyzeByPort is Analyze per connection: the stats of the segments to
// and from each peer port (the end that is not the captured port), so
// that a test can tell which of a client's connections got an answer.
func (c *Capture) AnalyzeByPort(t testing.TB, secret []byte) map[uint16]CaptureStats {
	t.Helper()
	out := c.readBack(t, "AnalyzeByPort", secret)
	byPort := map[uint16]CaptureStats{}
	for _, seg := range segments(bytes.NewReader(out)) {
		m := portsRE.FindStringSubmatch(seg)
		if m == nil {
			continue
		}
		peer := m[1]
		if peer == strconv.Itoa(c.port) {
			peer = m[2]
		}
		n, err := strconv.ParseUint(peer, 10, 16)
		if err != nil {
			continue
		}
		st := byPort[uint16(n)]
		st.add(seg)
		byPort[uint16(n)] = st
	}
	return byPort
}

var portsRE = regexp.MustCompile(`\S+\.(\d+) > \S+\.(\d+): Flags`)

// redact hides the secret should tcpdump ever echo it.
func redact(out, secret []byte) []byte {
	if len(secret) == 0 {
		return out
	}
	return bytes.ReplaceAll(out, secret, []byte("[secret]"))
}

var (
	flagsRE   = regexp.MustCompile(`Flags \[([^\]]*)\]`)
	optionsRE = regexp.MustCompile(`options \[([^\]]*)\]`)
	// tcpdump 4.99 prints "md5 valid", "md5  (invalid)" (two spaces), or
	// without -M "md5 shared secret not supplied with -M, can't check - <hex>".
	md5ValidRE   = regexp.MustCompile(`(^|,)md5 valid(,|$)`)
	md5InvalidRE = regexp.MustCompile(`(^|,)md5 +\(?invalid\)?(,|$)`)
	md5AnyRE     = regexp.MustCompile(`(^|,)md5 `)
)

// parseTcpdump parses "tcpdump -r -nn -vv [-M secret]" output. With -vv a
// segment takes two lines: the IP header line, which starts at column 0,
// and an indented continuation with ports, Flags [...] and options [...].
// The MD5 option is looked for only inside "options [...]".
func parseTcpdump(r io.Reader) CaptureStats {
	var s CaptureStats
	for _, seg := range segments(r) {
		s.add(seg)
	}
	return s
}

// segments splits tcpdump -vv output into one text per segment.
func segments(r io.Reader) []string {
	var out []string
	var seg strings.Builder
	flush := func() {
		if seg.Len() > 0 {
			out = append(out, seg.String())
			seg.Reset()
		}
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			continue
		}
		if line[0] != ' ' && line[0] != '\t' {
			flush() // a new segment starts at column 0
		}
		seg.WriteString(line)
		seg.WriteByte('\n')
	}
	flush()
	return out
}

// add counts one segment's text.
func (s *CaptureStats) add(text string) {
	m := flagsRE.FindStringSubmatch(text)
	if m == nil {
		return // "reading from file ..." and similar
	}
	s.Segments++
	flags := m[1]
	syn := strings.Contains(flags, "S")
	ack := strings.Contains(flags, ".")
	var opts string
	if o := optionsRE.FindStringSubmatch(text); o != nil {
		opts = o[1]
	}
	signed := true
	switch {
	case md5ValidRE.MatchString(opts):
		s.Valid++
	case md5InvalidRE.MatchString(opts):
		s.Invalid++
	case md5AnyRE.MatchString(opts):
		s.Unchecked++
	default:
		signed = false
		s.Unsigned++
	}
	switch {
	case syn && ack:
		s.SYNACKs++
	case syn:
		s.SYNs++
		if !signed {
			s.UnsignedSYNs++
		}
	}
	if strings.Contains(flags, "R") {
		s.RSTs++
	}
}
