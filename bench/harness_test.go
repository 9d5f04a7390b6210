//go:build bench && linux

// Package bench measures, side by side in one run, what TCP-MD5 signing
// costs and what ssh-md5-proxy and sshd-md5-socket add on top. Every
// comparison alternates its cases round by round and reports medians and
// ratios; nothing asserts on absolute time, because these machines are
// noisy. Run it with bench/run, which writes docs/benchmarks.md and the plot.
//
// The files carry the "bench" build tag so that `go test ./...` (the test
// suite) does not run them; scripts/test still vets them.
package bench

import (
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"
)

var (
	flagReport = flag.String("report", "", "update the results block of this markdown file (docs/benchmarks.md)")
	flagPlot   = flag.String("plot", "", "write the throughput plot (PNG) here")
	flagRounds = flag.Int("rounds", 0, "alternating rounds per comparison (default 7, 2 with -quick)")
	flagQuick  = flag.Bool("quick", false, "small sizes and few rounds: proves the harness works (CI), figures not meaningful")
	flagCmd    = flag.String("cmdline", "bench/run", "the command line to print in the report")
)

// Result is one case of one comparison: its samples, in Unit, one per round.
type Result struct {
	Section string // the table it goes in, e.g. "Bulk throughput"
	Link    string // "loopback", "veth", or "" where it does not apply
	Case    string // e.g. "plain TCP", "MD5 direct", "ssh-md5-proxy copy"
	Unit    string // e.g. "MB/s", "ms", "MiB", "CPU s/GB"
	Samples []float64
	// Against names the Case, in the same Section and Link, that this
	// one is divided by: ratio = this p50 / that p50 (and p99 / p99).
	Against string
	// Also names more cases it is divided by, each in a row of its own
	// under this one (TCP-AO against TCP-MD5, and against unsigned).
	Also    []string
	Targets []Target
	Note    string // one line printed under the table
	// Guest marks a result measured in the TCG test guest (BenchmarkGuest):
	// its table then says that its figures show relative cost only.
	Guest bool
}

// Target is a bound on the ratio of one statistic ("p50" or "p99") to the
// same statistic of Against. Min 0 or Max 0 means no bound on that side.
type Target struct {
	Stat     string
	Min, Max float64
}

func (t Target) String() string {
	switch {
	case t.Min > 0 && t.Max > 0:
		return fmt.Sprintf("%s %.2f..%.2fx", t.Stat, t.Min, t.Max)
	case t.Min > 0:
		return fmt.Sprintf("%s >= %.2fx", t.Stat, t.Min)
	default:
		return fmt.Sprintf("%s <= %.2fx", t.Stat, t.Max)
	}
}

var (
	resultsMu sync.Mutex
	results   []Result
	notes     = map[string][]string{} // section -> paragraphs printed under its table
)

// Record adds a result to the report and prints it. It also reports the
// median to the testing framework, so `go test -bench` output and
// benchstat see it.
func Record(b *testing.B, r Result) {
	b.Helper()
	if len(r.Samples) == 0 {
		b.Fatalf("bench: %s/%s/%s: no samples", r.Section, r.Link, r.Case)
	}
	resultsMu.Lock()
	results = append(results, r)
	resultsMu.Unlock()
	b.Logf("%-20s %-9s %-34s p50 %10.2f p99 %10.2f %s (n=%d)", r.Section, r.Link, r.Case, Percentile(r.Samples, 50), Percentile(r.Samples, 99), r.Unit, len(r.Samples))
}

// SectionNote adds a paragraph under a section's table (a finding, the
// reason for a missed target, what was measured exactly).
func SectionNote(section, text string) {
	resultsMu.Lock()
	defer resultsMu.Unlock()
	notes[section] = append(notes[section], text)
}

// Rounds is how many alternating rounds a comparison runs.
func Rounds() int {
	switch {
	case *flagRounds > 0:
		return *flagRounds
	case *flagQuick:
		return 2
	}
	return 7
}

// Quick reports whether this is a -quick run: sizes should shrink so the
// whole harness runs in a couple of minutes.
func Quick() bool { return *flagQuick }

// Alternate runs each fn once per round and returns each fn's samples. The
// order rotates every round, so no case always runs first, right after
// the same neighbour, or in the same quiet or busy moment of the machine.
func Alternate(b *testing.B, rounds int, fns ...func() float64) [][]float64 {
	b.Helper()
	out := make([][]float64, len(fns))
	for r := 0; r < rounds; r++ {
		for i := range fns {
			j := (i + r) % len(fns)
			out[j] = append(out[j], fns[j]())
		}
	}
	return out
}

// Percentile is the p-th percentile (nearest rank) of xs.
func Percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	rank := int(math.Ceil(p/100*float64(len(s)))) - 1
	rank = max(0, min(rank, len(s)-1))
	return s[rank]
}

func TestMain(m *testing.M) {
	flag.Parse()
	// Fail before a run of many minutes, not after it. go test runs in
	// the package's directory, so a relative path is taken from bench/.
	for _, f := range []string{*flagReport, *flagPlot} {
		if f == "" {
			continue
		}
		if st, err := os.Stat(filepath.Dir(f)); err != nil || !st.IsDir() {
			fmt.Fprintf(os.Stderr, "bench: cannot write %s: no folder %s (a relative path is taken from bench/; bench/run passes absolute ones)\n", f, filepath.Dir(f))
			os.Exit(2)
		}
	}
	code := m.Run()
	if code == 0 && *flagReport != "" {
		if err := writeReport(*flagReport, results, notes); err != nil {
			fmt.Fprintf(os.Stderr, "bench: writing %s: %v\n", *flagReport, err)
			code = 1
		}
	}
	if code == 0 && *flagPlot != "" {
		if err := writePlot(*flagPlot, results); err != nil {
			fmt.Fprintf(os.Stderr, "bench: writing %s: %v\n", *flagPlot, err)
			code = 1
		}
	}
	os.Exit(code)
}
