//go:build bench && linux

package bench

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/sshmd5/sshmd5/internal/testnet"
)

// guestMarker starts a result line of bench/guest (its ResultMarker).
const guestMarker = "smd-guest-result "

// guestResult is a line of bench/guest: a Result, or with no Case a
// paragraph (Text) under its section's table.
type guestResult struct {
	Result
	Text string
}

// BenchmarkGuest runs bench/guest, the benchmarks that need TCP-AO: it
// boots the test guest (scripts/testkernel, qemu with TCG) and measures
// TCP-AO next to TCP-MD5 and unsigned there, ssh logins and bulk transfers
// in one run. Its results come back as lines on the guest's console and go
// into this report, each marked as measured under TCG.
func BenchmarkGuest(b *testing.B) {
	testnet.RequireRoot(b)
	dir, err := filepath.Abs("guest")
	if err != nil {
		b.Fatal(err)
	}
	bin := filepath.Join(b.TempDir(), "guest.test")
	// go test runs this in bench/, inside the module.
	if out, err := exec.Command("go", "test", "-c", "-tags", "bench", "-o", bin, "./guest").CombinedOutput(); err != nil {
		b.Fatalf("go test -c ./bench/guest: %v\n%s", err, out)
	}
	args := []string{"-test.run", "^$", "-test.bench", ".", "-test.benchtime", "1x", "-test.v", "-test.timeout", "60m"}
	if Quick() {
		args = append(args, "-quick")
	}
	if *flagRounds > 0 {
		args = append(args, "-rounds", strconv.Itoa(*flagRounds))
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir // GuestMain shares the package's folder with the guest
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatalf("start %s: %v", bin, err)
	}
	// The guest's console, shown as it comes (a run takes minutes), with
	// the result lines taken out.
	var got []guestResult
	var bad []string
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		i := bytes.Index(line, []byte(guestMarker))
		if i < 0 {
			fmt.Printf("guest: %s\n", line)
			continue
		}
		var r guestResult
		if err := json.Unmarshal(line[i+len(guestMarker):], &r); err != nil {
			bad = append(bad, fmt.Sprintf("%v: %q", err, line))
			continue
		}
		got = append(got, r)
	}
	serr := sc.Err()
	if serr != nil {
		io.Copy(os.Stdout, stdout) // let the guest run to its end
	}
	err = cmd.Wait()
	if serr != nil {
		b.Fatalf("reading bench/guest's output: %v", serr)
	}
	if err != nil {
		b.Fatalf("bench/guest failed (its output is above): %v", err)
	}
	if len(bad) > 0 {
		b.Fatalf("bench/guest printed result lines that do not parse (a garbled console?):\n%s", strings.Join(bad, "\n"))
	}
	n := 0
	for _, r := range got {
		if r.Case == "" {
			SectionNote(r.Section, r.Text)
			continue
		}
		r.Result.Guest = true
		Record(b, r.Result)
		n++
	}
	if n == 0 {
		b.Fatalf("bench/guest passed but reported no results")
	}
}
