//go:build linux

package e2e

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// bulkSize is how many random bytes TestBulkTransfer sends per login.
const bulkSize = 50_000_000

// TestBulkTransfer: 50 MB of random data go through a signed ssh session
// (client to server, sshd runs sha256sum on it) in the proxy's copy mode
// and in its fdpass mode, over IPv4 and IPv6. The digest the server
// computes matches the local one, and every segment on the server's link
// carries a valid signature (none unsigned).
func TestBulkTransfer(t *testing.T) {
	l := newLab(t)
	shim := l.startShim()

	// One random file, hashed locally.
	file := filepath.Join(t.TempDir(), "bulk.bin")
	f, err := os.Create(file)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	if _, err := io.CopyN(io.MultiWriter(f, h), rand.Reader, bulkSize); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	want := hex.EncodeToString(h.Sum(nil))

	for _, mode := range []string{"copy", "fdpass"} {
		for _, dst := range []netip.Addr{l.server.a4, l.server.a6} {
			name := mode + "/" + map[bool]string{true: "v4", false: "v6"}[dst.Is4()]
			t.Run(name, func(t *testing.T) {
				proxyArgs := "-k " + l.clientKeyring
				var opts []string
				if mode == "fdpass" {
					proxyArgs = "--fdpass " + proxyArgs
					opts = []string{"-o", "ProxyUseFdpass=yes"}
				}
				in, err := os.Open(file)
				if err != nil {
					t.Fatal(err)
				}
				defer in.Close()
				capt := l.server.ns.StartCapture(t, l.server.ifc, protectedPort)
				start := time.Now()
				out, errb, err := l.runSSHStdin(l.client.ns, l.sshArgsOpts(true, dst, proxyArgs, opts, "sha256sum"), in, 5*time.Minute)
				elapsed := time.Since(start)
				capt.Stop(t, nil)
				astart := time.Now()
				st := capt.Analyze(t, l.secret)
				checkNoSecret(t, "ssh's stderr", errb, [][]byte{l.secret})
				mbs := float64(bulkSize) / 1e6 / elapsed.Seconds()
				t.Logf("%s: %d bytes in %v (%.1f MB/s, login included); wire on the server (checked in %v): %v",
					name, bulkSize, elapsed.Round(time.Millisecond), mbs, time.Since(astart).Round(time.Millisecond), st)
				if err != nil {
					t.Fatalf("ssh: %v; stderr:\n%s", err, errb)
				}
				got, _, _ := strings.Cut(strings.TrimSpace(out), " ")
				if got != want {
					t.Errorf("server's sha256 %q, want %q", got, want)
				}
				// 50 MB in segments of at most ~1.4 kB: at least 34,000
				// data segments, unless tcpdump lost some (it says so
				// on stderr; the counts below still hold for the rest).
				if st.Segments < 1000 || st.Valid != st.Segments || st.Unsigned != 0 || st.Invalid != 0 {
					t.Errorf("want every segment validly signed, got %v", st)
				}
			})
		}
	}
	checkNoSecret(t, "sshd-md5-socket's log", shim.Log(), [][]byte{l.secret})
}
