//go:build bench && linux

package bench

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestReportGuestTable: a result with two bases gets a ratio row for each,
// and a table measured in the guest says that its figures show relative
// cost only. (go test -tags bench -run TestReport ./bench; bench/run runs
// no tests.)
func TestReportGuestTable(t *testing.T) {
	rs := []Result{
		{Section: "S", Link: "veth (guest)", Case: "unsigned", Unit: "ms", Samples: []float64{10, 10}, Guest: true},
		{Section: "S", Link: "veth (guest)", Case: "TCP-MD5", Unit: "ms", Samples: []float64{20, 20}, Against: "unsigned", Guest: true},
		{Section: "S", Link: "veth (guest)", Case: "TCP-AO", Unit: "ms", Samples: []float64{30, 30}, Against: "TCP-MD5", Also: []string{"unsigned"}, Guest: true},
		{Section: "Host", Link: "veth", Case: "plain", Unit: "ms", Samples: []float64{1}},
	}
	path := filepath.Join(t.TempDir(), "b.md")
	if err := writeReport(path, rs, map[string][]string{}); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := string(data)
	for _, want := range []string{
		"| veth (guest) | TCP-AO | ms | 2 | 30.0 | 30.0 | 30.0..30.0 | TCP-MD5 | 1.500x | 1.500x |",
		"| veth (guest) | TCP-AO (same samples) | | | | | | unsigned | 3.000x | 3.000x |",
		"TCG figures show relative cost only",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	// Only under the guest's table.
	if host := out[strings.Index(out, "### Host"):]; strings.Contains(host, "TCG") {
		t.Errorf("the host's table got the TCG note:\n%s", host)
	}
	rs[2].Also = []string{"nothing"}
	if err := writeReport(path, rs, nil); err == nil || !strings.Contains(err.Error(), `"nothing"`) {
		t.Errorf("a base with no result: %v, want an error naming it", err)
	}
}
