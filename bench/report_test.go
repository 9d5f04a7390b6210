//go:build bench && linux

package bench

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"
)

const (
	beginMark = "<!-- begin results: written by bench/run, do not edit by hand -->"
	endMark   = "<!-- end results -->"
)

// tcgNote is said under every table measured in the test guest.
const tcgNote = "**TCG: relative cost only.** This table was measured in the test guest (scripts/testkernel: qemu with TCG, the kernel built with CONFIG_TCP_AO, which this machine's kernel lacks), by bench/guest, which BenchmarkGuest runs. " +
	"TCG emulates every instruction, and the guest's clock is emulated too, so its milliseconds and MB/s are not the host's and cannot be compared with the tables measured on the host: " +
	"TCG figures show relative cost only, and only the ratios between the cases of this table, measured in one run with their rounds interleaved, mean anything."

// writeReport replaces the results block of the markdown file at path
// (creating the file if needed), leaving the prose around it alone.
func writeReport(path string, rs []Result, notes map[string][]string) error {
	var b strings.Builder
	b.WriteString(beginMark + "\n\n")
	fmt.Fprintf(&b, "Command: `%s`, %s.\n\n", *flagCmd, time.Now().UTC().Format("2006-01-02 15:04 MST"))
	b.WriteString("Machine:\n\n")
	for _, l := range machine() {
		fmt.Fprintf(&b, "- %s\n", l)
	}
	b.WriteString("\nn is the number of samples: one per round, the cases of a table interleaved and their order rotated each round (7 rounds by default; logins 50, memory 3). p50 is the median; p99 is the nearest-rank 99th percentile, so with few samples it is the worst one; min..max shows the spread, so a ratio can be told from noise. Ratios divide this case's statistic by the same statistic of the case named in \"vs\".\n")
	if Quick() {
		b.WriteString("\n**This is a -quick run: sizes and rounds are cut down; the figures prove the harness runs, nothing more.**\n")
	}
	var sections []string
	seen := map[string]bool{}
	for _, r := range rs {
		if !seen[r.Section] {
			seen[r.Section] = true
			sections = append(sections, r.Section)
		}
	}
	for _, sec := range sections {
		fmt.Fprintf(&b, "\n### %s\n\n", sec)
		b.WriteString("| link | case | unit | n | p50 | p99 | min..max | vs | ratio p50 | ratio p99 | target | met |\n")
		b.WriteString("|---|---|---|--:|--:|--:|--:|---|--:|--:|---|---|\n")
		var rowNotes []string
		guest := false
		for _, r := range rs {
			if r.Section != sec {
				continue
			}
			p50, p99 := Percentile(r.Samples, 50), Percentile(r.Samples, 99)
			vs, r50, r99, tgt, met := "", "", "", "", ""
			if r.Against != "" {
				base, ok := find(rs, r.Section, r.Link, r.Against)
				if !ok {
					return fmt.Errorf("%s/%s/%s: compared against %q, which has no result", r.Section, r.Link, r.Case, r.Against)
				}
				vs = r.Against
				q50 := p50 / Percentile(base.Samples, 50)
				q99 := p99 / Percentile(base.Samples, 99)
				r50, r99 = fmt.Sprintf("%.3fx", q50), fmt.Sprintf("%.3fx", q99)
				var ts, ms []string
				for _, t := range r.Targets {
					q := q50
					if t.Stat == "p99" {
						q = q99
					}
					ok := (t.Min == 0 || q >= t.Min) && (t.Max == 0 || q <= t.Max)
					ts = append(ts, t.String())
					ms = append(ms, map[bool]string{true: "yes", false: "**no**"}[ok])
				}
				tgt, met = strings.Join(ts, ", "), strings.Join(ms, ", ")
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %d | %s | %s | %s..%s | %s | %s | %s | %s | %s |\n",
				r.Link, r.Case, r.Unit, len(r.Samples), num(p50), num(p99), num(Percentile(r.Samples, 0)), num(Percentile(r.Samples, 100)), vs, r50, r99, tgt, met)
			// More bases: a row each, naming the case again and leaving its
			// figures to the row above.
			for _, also := range r.Also {
				base, ok := find(rs, r.Section, r.Link, also)
				if !ok {
					return fmt.Errorf("%s/%s/%s: compared against %q, which has no result", r.Section, r.Link, r.Case, also)
				}
				fmt.Fprintf(&b, "| %s | %s (same samples) | | | | | | %s | %.3fx | %.3fx | | |\n",
					r.Link, r.Case, also, p50/Percentile(base.Samples, 50), p99/Percentile(base.Samples, 99))
			}
			if r.Guest {
				guest = true
			}
			if r.Note != "" {
				rowNotes = append(rowNotes, fmt.Sprintf("- %s (%s): %s", r.Case, r.Link, r.Note))
			}
		}
		if len(rowNotes) > 0 {
			b.WriteString("\n" + strings.Join(rowNotes, "\n") + "\n")
		}
		for _, n := range notes[sec] {
			b.WriteString("\n" + n + "\n")
		}
		if guest {
			b.WriteString("\n" + tcgNote + "\n")
		}
	}
	b.WriteString("\n" + endMark + "\n")

	old, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	var out []byte
	i, j := bytes.Index(old, []byte(beginMark)), bytes.Index(old, []byte(endMark))
	if i >= 0 && j > i {
		out = append(append(append([]byte{}, old[:i]...), b.String()...), old[j+len(endMark)+1:]...)
	} else {
		out = append(append(old, '\n'), b.String()...)
	}
	return os.WriteFile(path, out, 0o644)
}

func find(rs []Result, sec, link, c string) (Result, bool) {
	for _, r := range rs {
		if r.Section == sec && r.Link == link && r.Case == c {
			return r, true
		}
	}
	return Result{}, false
}

func num(f float64) string {
	switch {
	case f >= 100:
		return fmt.Sprintf("%.0f", f)
	case f >= 10:
		return fmt.Sprintf("%.1f", f)
	}
	return fmt.Sprintf("%.2f", f)
}

// machine describes the host, so a reader can tell what the figures mean.
func machine() []string {
	first := func(name string, args ...string) string {
		out, err := exec.Command(name, args...).CombinedOutput()
		if err != nil {
			return "unknown (" + name + ": " + err.Error() + ")"
		}
		return strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0])
	}
	cpu := "unknown"
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(data), "\n") {
			if strings.HasPrefix(l, "model name") {
				cpu = strings.TrimSpace(strings.SplitN(l, ":", 2)[1])
				break
			}
		}
	}
	mem := "unknown"
	if data, err := os.ReadFile("/proc/meminfo"); err == nil {
		mem = strings.Join(strings.Fields(strings.SplitN(string(data), "\n", 2)[0])[1:], " ")
	}
	return []string{
		"kernel: " + first("uname", "-srm"),
		fmt.Sprintf("CPU: %s, %d logical CPUs; memory %s", cpu, runtime.NumCPU(), mem),
		"Go: " + runtime.Version(),
		"OpenSSH: " + first("ssh", "-V"),
		"spiped: " + first("sh", "-c", "dpkg-query -W -f '${Version}' spiped 2>/dev/null || echo 'not installed'"),
		"virtualisation: " + first("sh", "-c", "systemd-detect-virt 2>/dev/null || echo unknown"),
	}
}
