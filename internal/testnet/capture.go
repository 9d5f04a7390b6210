//go:build linux

package testnet

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/netip"
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
	Segments  int // all segments
	Valid     int // MD5 option present and verified with the secret ("md5 valid")
	Invalid   int // MD5 option present, signature wrong for the secret ("md5  (invalid)")
	Unchecked int // MD5 option present but not verified (Stop with a nil secret)
	// AO counts segments carrying a TCP-AO option (TCP option 29), which
	// tcpdump cannot verify: the kernel's TCPAO* counters and the peer's
	// answer say whether the MAC was right.
	AO           int
	Unsigned     int // neither an MD5 nor a TCP-AO option
	SYNs         int // SYN without ACK
	SYNACKs      int // SYN with ACK
	RSTs         int // RST set
	UnsignedSYNs int // SYNs (without ACK) that carry no MD5 and no TCP-AO option
}

func (s CaptureStats) String() string {
	return fmt.Sprintf("segments %d: md5 valid %d, invalid %d, unchecked %d, tcp-ao %d, unsigned %d; SYN %d (unsigned %d), SYN-ACK %d, RST %d",
		s.Segments, s.Valid, s.Invalid, s.Unchecked, s.AO, s.Unsigned, s.SYNs, s.UnsignedSYNs, s.SYNACKs, s.RSTs)
}

// Plus returns the sum of two summaries.
func (s CaptureStats) Plus(o CaptureStats) CaptureStats {
	return CaptureStats{
		Segments: s.Segments + o.Segments, Valid: s.Valid + o.Valid, Invalid: s.Invalid + o.Invalid,
		Unchecked: s.Unchecked + o.Unchecked, AO: s.AO + o.AO, Unsigned: s.Unsigned + o.Unsigned,
		SYNs: s.SYNs + o.SYNs, SYNACKs: s.SYNACKs + o.SYNACKs, RSTs: s.RSTs + o.RSTs,
		UnsignedSYNs: s.UnsignedSYNs + o.UnsignedSYNs,
	}
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
	// -S: absolute sequence numbers, which a forged segment needs.
	args := []string{"-r", c.file, "-nn", "-vv", "-S"}
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
	byPort := map[uint16]CaptureStats{}
	for _, f := range c.Flows(t, secret) {
		peer := f.Src.Port()
		if int(peer) == c.port {
			peer = f.Dst.Port()
		}
		byPort[peer] = byPort[peer].Plus(f.CaptureStats)
	}
	return byPort
}

// AnalyzeDir is Analyze per direction: the segments sent to the captured
// port (by its clients) and those sent from it (by the server), so that
// a test can say "no SYN-ACK went back" of the server alone.
func (c *Capture) AnalyzeDir(t testing.TB, secret []byte) (toPort, fromPort CaptureStats) {
	t.Helper()
	for _, f := range c.Flows(t, secret) {
		if int(f.Dst.Port()) == c.port {
			toPort = toPort.Plus(f.CaptureStats)
		} else {
			fromPort = fromPort.Plus(f.CaptureStats)
		}
	}
	return toPort, fromPort
}

// Flow is one direction of one connection in a capture: what its sender
// sent.
type Flow struct {
	Src, Dst netip.AddrPort
	CaptureStats
	// AOKeyIDs counts the segments carrying a TCP-AO option by its KeyID
	// (the sender's SendID): which key signed them.
	AOKeyIDs map[uint8]int
	// NextSeq is the sequence number after the last one the sender used
	// (SYN and FIN count one), LastAck its last acknowledgement number,
	// both absolute; HaveSeq says whether a segment showed a sequence
	// number at all. A forged RST in the receiver's window needs these.
	NextSeq, LastAck uint32
	HaveSeq          bool
}

// Flows reads the stopped capture back, like Analyze, and splits it by
// direction and connection, in the order the flows first appear.
func (c *Capture) Flows(t testing.TB, secret []byte) []*Flow {
	t.Helper()
	flows, err := parseFlows(bytes.NewReader(c.readBack(t, "Flows", secret)))
	if err != nil {
		t.Fatalf("testnet: capture: %v", err)
	}
	return flows
}

// parseFlows splits "tcpdump -r -nn -vv -S" output into flows.
func parseFlows(r io.Reader) ([]*Flow, error) {
	var flows []*Flow
	index := map[[2]netip.AddrPort]*Flow{}
	for _, text := range segments(r) {
		m := portsRE.FindStringSubmatch(text)
		if m == nil {
			continue
		}
		src, err1 := parseAddrPort(m[1], m[2])
		dst, err2 := parseAddrPort(m[3], m[4])
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("cannot read the addresses of %q", text)
		}
		key := [2]netip.AddrPort{src, dst}
		f := index[key]
		if f == nil {
			f = &Flow{Src: src, Dst: dst, AOKeyIDs: map[uint8]int{}}
			index[key] = f
			flows = append(flows, f)
		}
		f.add(text)
	}
	return flows, nil
}

func parseAddrPort(addr, port string) (netip.AddrPort, error) {
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return netip.AddrPort{}, err
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return netip.AddrPort{}, err
	}
	return netip.AddrPortFrom(a, uint16(p)), nil
}

var (
	portsRE = regexp.MustCompile(`(\S+)\.(\d+) > (\S+)\.(\d+): Flags`)
	seqRE   = regexp.MustCompile(`, seq (\d+)(?::(\d+))?,`)
	ackRE   = regexp.MustCompile(`, ack (\d+),`)
	aoKeyRE = regexp.MustCompile(`(?:^|,)tcp-ao keyid (\d+) rnextkeyid (\d+)`)
)

// add counts one segment of the flow and follows its sequence numbers.
func (f *Flow) add(text string) {
	m := flagsRE.FindStringSubmatch(text)
	if m == nil {
		return
	}
	f.CaptureStats.add(text)
	if o := optionsRE.FindStringSubmatch(text); o != nil {
		if k := aoKeyRE.FindStringSubmatch(o[1]); k != nil {
			if id, err := strconv.ParseUint(k[1], 10, 8); err == nil {
				f.AOKeyIDs[uint8(id)]++
			}
		}
	}
	if s := seqRE.FindStringSubmatch(text); s != nil {
		end, _ := strconv.ParseUint(s[1], 10, 32)
		if s[2] != "" {
			end, _ = strconv.ParseUint(s[2], 10, 32)
		}
		if strings.ContainsAny(m[1], "SF") {
			end++
		}
		// Later in sequence space (mod 2^32) than what was seen.
		if !f.HaveSeq || int32(uint32(end)-f.NextSeq) > 0 {
			f.NextSeq = uint32(end)
		}
		f.HaveSeq = true
	}
	if a := ackRE.FindStringSubmatch(text); a != nil {
		n, _ := strconv.ParseUint(a[1], 10, 32)
		f.LastAck = uint32(n)
	}
}

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
	// tcpdump 4.99 prints option 29 as "tcp-ao keyid K rnextkeyid R mac 0x…".
	aoAnyRE = regexp.MustCompile(`(^|,)tcp-ao`)
)

// parseTcpdump parses "tcpdump -r -nn -vv [-M secret]" output. With -vv a
// segment takes two lines: the IP header line, which starts at column 0,
// and an indented continuation with ports, Flags [...] and options [...].
// The MD5 and TCP-AO options are looked for only inside "options [...]".
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
	case aoAnyRE.MatchString(opts):
		s.AO++
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
