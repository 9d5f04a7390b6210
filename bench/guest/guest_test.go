//go:build bench && linux

// Package guest is the part of the benchmarks that needs the project's
// test kernel (scripts/testkernel: TCP-AO, which the machines' kernels
// lack): TCP-AO next to TCP-MD5 and unsigned, for ssh logins through the
// real ssh-md5-proxy and sshd-md5-socket and for bulk transfers between
// signed Go sockets. TestMain boots the qemu guest and runs the
// benchmarks there (testnet.GuestMain).
//
// It reports nothing itself: each result is one line on stdout, "RESULT"
// marker and JSON (see emit), which bench's BenchmarkGuest reads and puts
// into docs/benchmarks.md. Run it through bench/run; on its own,
// `go test -tags bench -bench . -benchtime 1x ./bench/guest` prints those
// lines.
//
// The guest is qemu with TCG (KVM does not work on these machines): every
// instruction is emulated, and the guest's clock with it, so absolute
// figures are not the host's and only ratios between cases of one table
// mean anything. Each table alternates its cases round by round, as bench
// does.
package guest

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/sshmd5/sshmd5/internal/testnet"
)

var (
	flagQuick  = flag.Bool("quick", false, "few rounds and small sizes: proves the harness works (CI), figures not meaningful")
	flagRounds = flag.Int("rounds", 0, "alternating rounds per comparison (default: 15 logins, 7 transfers; 1 and 2 with -quick)")
)

func TestMain(m *testing.M) {
	testnet.GuestMain(m, "cmd/sshd-md5-socket", "cmd/ssh-md5-proxy")
}

// ResultMarker starts each result line; bench's BenchmarkGuest looks for
// it in the guest's console output.
const ResultMarker = "smd-guest-result "

// guestLink is the link column of every result: a veth pair between two
// namespaces of the guest.
const guestLink = "veth (guest)"

// result is one case of one table, in the shape of bench.Result (the JSON
// field names are the same), so that bench can take it as it is.
type result struct {
	Section string
	Link    string
	Case    string
	Unit    string
	Samples []float64
	// Against is the case this one is divided by; Also are more cases it
	// is divided by, each a row of its own under it.
	Against string   `json:",omitempty"`
	Also    []string `json:",omitempty"`
	Note    string   `json:",omitempty"`
	// Text, with no Case: a paragraph under the section's table.
	Text string `json:",omitempty"`
}

// emit prints r as one line for bench to read. The console is a serial
// line shared with the test's other output, hence one write per line.
func emit(b *testing.B, r result) {
	b.Helper()
	j, err := json.Marshal(r)
	if err != nil {
		b.Fatal(err)
	}
	os.Stdout.Write([]byte(ResultMarker + string(j) + "\n"))
	if r.Case != "" {
		b.Logf("%-24s %-30s %s n=%d %s", r.Section, r.Case, r.Unit, len(r.Samples), strings.Join(fmtAll(r.Samples), " "))
	}
}

// note emits a paragraph under the section's table.
func note(b *testing.B, section, text string) {
	b.Helper()
	emit(b, result{Section: section, Text: text})
}

func fmtAll(xs []float64) []string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = strconv.FormatFloat(x, 'f', 2, 64)
	}
	return s
}

// rounds is how many alternating rounds a table runs: def in a full run,
// quick with -quick.
func rounds(def, quick int) int {
	switch {
	case *flagRounds > 0:
		return *flagRounds
	case *flagQuick:
		return quick
	}
	return def
}

// alternate runs each fn once per round and returns each fn's samples,
// rotating the order every round so that no case always runs first or
// after the same neighbour (bench.Alternate; test files of another
// package cannot be imported).
func alternate(rounds int, fns ...func() float64) [][]float64 {
	out := make([][]float64, len(fns))
	for r := 0; r < rounds; r++ {
		for i := range fns {
			j := (i + r) % len(fns)
			out[j] = append(out[j], fns[j]())
		}
	}
	return out
}

// guestNote says what the guest is, under each table: bench's report
// adds what TCG means for the figures.
func guestNote(b *testing.B, section string) {
	b.Helper()
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		b.Fatal(err)
	}
	cs, err := os.ReadFile("/sys/devices/system/clocksource/clocksource0/current_clocksource")
	if err != nil {
		b.Fatal(err)
	}
	note(b, section, fmt.Sprintf("Guest: kernel %s (%s), %d vCPUs, clocksource %s.",
		unix.ByteSliceToString(u.Release[:]), unix.ByteSliceToString(u.Machine[:]), runtime.NumCPU(), strings.TrimSpace(string(cs))))
}

// netstat reads one TcpExt counter of the namespace ns (TCPAOGood, ...).
func netstat(b *testing.B, ns *testnet.NS, name string) int64 {
	b.Helper()
	var v int64
	err := ns.Do(func() error {
		// thread-self: the namespace of this (switched) thread.
		data, err := os.ReadFile("/proc/thread-self/net/netstat")
		if err != nil {
			return err
		}
		lines := strings.Split(string(data), "\n")
		for i := 0; i+1 < len(lines); i += 2 {
			keys, vals := strings.Fields(lines[i]), strings.Fields(lines[i+1])
			if len(keys) == 0 || keys[0] != "TcpExt:" || len(vals) != len(keys) {
				continue
			}
			for k := range keys {
				if keys[k] == name {
					v, err = strconv.ParseInt(vals[k], 10, 64)
					return err
				}
			}
		}
		return fmt.Errorf("no TcpExt counter %s in /proc/net/netstat", name)
	})
	if err != nil {
		b.Fatalf("%s: counter %s: %v", ns.Name, name, err)
	}
	return v
}
