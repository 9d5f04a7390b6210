//go:build bench && linux

// Package guest is the part of the benchmarks that needs the project's
// test kernel (scripts/testkernel: TCP-AO, which the machines' kernels
// lack): TCP-AO next to TCP-MD5 and unsigned, for ssh logins through the
// real ssh-md5-proxy and sshd-md5-socket and for bulk transfers, from
// signed Go sockets and through the proxy. TestMain boots the qemu guest and runs the
// benchmarks there (testnet.GuestMain).
//
// It reports nothing itself: each result is one line on stdout,
// ResultMarker and JSON (see emit), which bench's BenchmarkGuest reads and puts
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
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sshmd5/sshmd5/internal/tcpsig"
	"github.com/sshmd5/sshmd5/internal/tcpsig/ao"
	"github.com/sshmd5/sshmd5/internal/testnet"
)

var (
	flagQuick  = flag.Bool("quick", false, "few rounds and small sizes: proves the harness works (CI), figures not meaningful")
	flagRounds = flag.Int("rounds", 0, "alternating rounds per comparison (default: 15 logins, 5 transfers; 1 with -quick)")
)

func TestMain(m *testing.M) {
	testnet.GuestMain(m, "cmd/sshd-md5-socket", "cmd/ssh-md5-proxy")
}

// ResultMarker starts each result line; bench's BenchmarkGuest looks for
// it in the guest's console output.
const ResultMarker = "smd-guest-result "

// tcgTimeout replaces the 10 s connect timeouts of ssh and ssh-md5-proxy
// in the guest: under TCG, on a loaded host, a connection and the banner
// exchange behind it (sshd -i exec'd per connection) can take longer.
const tcgTimeout = 2 * time.Minute

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

// clocksource is the guest kernel's current clocksource. Under TCG the
// kernel may find the TSC unstable and fall back to jiffies mid-run, which
// changes what a measured duration means; the notes say so.
func clocksource(b *testing.B) string {
	b.Helper()
	cs, err := os.ReadFile("/sys/devices/system/clocksource/clocksource0/current_clocksource")
	if err != nil {
		b.Fatalf("the guest's clocksource: %v", err)
	}
	return strings.TrimSpace(string(cs))
}

// guestNote says what the guest is, under each table (bench's report adds
// what TCG means for the figures); cs0 is the clocksource when the
// benchmark started.
func guestNote(b *testing.B, section, cs0 string) {
	b.Helper()
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		b.Fatal(err)
	}
	cs := "clocksource " + cs0
	if now := clocksource(b); now != cs0 {
		cs = fmt.Sprintf("clocksource %s at the start and %s at the end (the kernel switched during the run, so durations before and after the switch were timed by different clocks; the interleaved rounds spread that over all cases)", cs0, now)
	}
	note(b, section, fmt.Sprintf("Guest: kernel %s (%s), %d vCPUs, %s.",
		unix.ByteSliceToString(u.Release[:]), unix.ByteSliceToString(u.Machine[:]), runtime.NumCPU(), cs))
}

// The TCP-AO key IDs, as a keyring would give them: the server's entry
// for the user has send_id 101 and recv_id 1, the client's the mirror.
const aoServerSend, aoServerRecv = 101, 1

// keyrings are the key files and keyrings of both kinds, as an admin
// writes them: a TCP-MD5 key for every peer, and a TCP-AO key for the
// user alice.
type keyrings struct {
	md5Key, aoKey        tcpsig.Secret
	md5Server, md5Client string // keyring files: [peers], [hosts]
	aoServer, aoClient   string
}

func (k keyrings) secrets() [][]byte { return [][]byte{k.md5Key, k.aoKey} }

func writeKeyrings(b *testing.B, dir string) keyrings {
	b.Helper()
	k := keyrings{md5Key: testnet.NewSecret(), aoKey: testnet.NewSecret()}
	md5File, aoFile := filepath.Join(dir, "md5.key"), filepath.Join(dir, "alice.key")
	testnet.WriteFile(b, md5File, string(k.md5Key))
	testnet.WriteFile(b, aoFile, string(k.aoKey))
	k.md5Server, k.md5Client = filepath.Join(dir, "md5-server.toml"), filepath.Join(dir, "md5-client.toml")
	testnet.Keyring{Peers: []testnet.Entry{testnet.Peer("0.0.0.0/0", md5File)}}.Write(b, k.md5Server)
	testnet.Keyring{Hosts: []testnet.Entry{testnet.Host("*", md5File)}}.Write(b, k.md5Client)
	// testnet.Keyring writes no TCP-AO entries; these are the README's.
	k.aoServer, k.aoClient = filepath.Join(dir, "ao-server.toml"), filepath.Join(dir, "ao-client.toml")
	testnet.WriteFile(b, k.aoServer, fmt.Sprintf("[peers.\"0.0.0.0/0\"]\nao = [ { name = \"alice\", send_id = %d, recv_id = %d, key_file = %q } ]\n", aoServerSend, aoServerRecv, aoFile))
	testnet.WriteFile(b, k.aoClient, fmt.Sprintf("[hosts.\"*\"]\nao = [ { send_id = %d, recv_id = %d, key_file = %q } ]\n", aoServerRecv, aoServerSend, aoFile))
	return k
}

// aoGood reads the TCP-AO counter TCPAOGood of the namespace ns: the
// kernel's count of segments whose TCP-AO MAC verified.
func aoGood(b *testing.B, ns *testnet.NS) uint64 {
	b.Helper()
	var c ao.Counters
	err := ns.Do(func() error {
		// thread-self: the namespace of this (switched) thread.
		var err error
		c, err = ao.ReadCountersAt("/proc/thread-self/net/netstat")
		return err
	})
	if err != nil {
		b.Fatalf("%s: TCP-AO counters: %v", ns.Name, err)
	}
	return c.Good
}
