//go:build linux

package plan_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sshmd5/sshmd5/internal/inspect"
	"github.com/sshmd5/sshmd5/internal/listenaddr"
	"github.com/sshmd5/sshmd5/internal/plan"
)

// TestPlanAgreesWithCheck: over a table of keyrings and listeners, the
// refusal the shim stops at (the keyring's error, the plan's first
// refusal, or the first listener's) is in `check`'s answer, check names
// every refusal of the plan, and check says ok exactly when the plan
// refuses nothing. The binaries are compared for real in
// internal/shim's TestCheckAgreesWithShim.
func TestPlanAgreesWithCheck(t *testing.T) {
	const (
		all4   = "[peers.\"0.0.0.0/0\"]\nkey = \"SECRET-plan-4\"\n"
		all6   = "[peers.\"::/0\"]\nkey = \"SECRET-plan-6\"\n"
		both   = all4 + all6
		dual   = "[::]:22"
		v4     = "127.0.0.1:22"
		v6     = "[::1]:22"
		lo     = "[peers.\"10.0.0.0/8\"]\nkey = \"SECRET-plan-lo\"\ninterface = \"lo\"\n"
		nosuch = "[peers.\"10.1.0.0/16\"]\nkey = \"SECRET-plan-no\"\ninterface = \"nosuch0\"\n"
	)
	for _, c := range []struct {
		name, keyring string
		listen        []string
		ok            bool
		reason        string // where the shim stops, and in check's answer
		also          string // a later refusal only check names
	}{
		{"both families, dual-stack", both, []string{dual}, true, "", ""},
		{"both families, IPv4", both, []string{v4}, true, "", ""},
		{"both families, IPv6", both, []string{v6}, true, "", ""},
		{"both families, two listeners", both, []string{v4, v6}, true, "", ""},
		{"IPv4 key, IPv4 listener", all4, []string{v4}, true, "", ""},
		{"IPv6 key, IPv6 listener", all6, []string{v6}, true, "", ""},
		{"specific and catch-all", all4 + "[peers.\"192.0.2.0/24\"]\nkey = \"SECRET-plan-s\"\n", []string{v4}, true, "", ""},
		{"client entry with a missing key file", both + "[hosts.elsewhere]\nkey_file = \"/nonexistent/x.key\"\n", []string{dual}, true, "", ""},
		{"IPv4 key, dual-stack", all4, []string{dual}, false, "no key covers ::/0", ""},
		{"IPv6 key, dual-stack", all6, []string{dual}, false, "no key covers 0.0.0.0/0", ""},
		{"IPv6 key, IPv4 listener", all6, []string{v4}, false, "no key covers 0.0.0.0/0", ""},
		{"IPv4 key, second listener IPv6", all4, []string{v4, v6}, false, "no key covers ::/0", ""},
		{"specific prefix only", "[peers.\"10.0.0.0/8\"]\nkey = \"SECRET-plan-10\"\n", []string{v4}, false, "no key covers 0.0.0.0/0", ""},
		{"no [peers]", "[hosts.elsewhere]\nkey = \"SECRET-plan-h\"\n", []string{dual}, false, "has no [peers]", ""},
		{"empty keyring", "", []string{dual}, false, "has no [peers]", ""},
		{"syntax error", "[peers.\"0.0.0.0/0\"\nkey = \"SECRET-plan-x\"\n", []string{dual}, false, "syntax error", ""},
		{"interface that is not a VRF", all4 + lo, []string{v4}, false, "is not an L3 master device (VRF)", ""},
		{"interface that does not exist", all4 + nosuch, []string{v4}, false, `interface "nosuch0"`, ""},
		{"two bad interfaces", all4 + lo + nosuch, []string{v4}, false, `interface "nosuch0"`, "is not an L3 master device (VRF)"},
		{"bad interface and uncovered", all4 + nosuch, []string{dual}, false, `interface "nosuch0"`, "no key covers ::/0"},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "keyring.toml")
			if err := os.WriteFile(path, []byte(c.keyring), 0o600); err != nil {
				t.Fatal(err)
			}
			addrs, err := listenaddr.Parse(c.listen)
			if err != nil {
				t.Fatal(err)
			}
			// What the shim does: stop at the first refusal.
			var stop error
			var all []error
			pl, err := plan.Load(path)
			if err != nil {
				stop, all = err, []error{err}
			} else {
				all = append(all, pl.Refusals...)
				for _, a := range addrs {
					lp := pl.For(a.Socket)
					if lp.Err == nil && len(lp.Apply) == 0 {
						t.Errorf("%s: covered but no keys to install", a.Arg)
					}
					if lp.Err != nil {
						all = append(all, lp.Err)
					}
				}
				if len(all) > 0 {
					stop = all[0]
				}
			}
			var out bytes.Buffer
			cerr := inspect.Check(&out, path, c.listen)
			if (stop == nil) != c.ok || (cerr == nil) != c.ok {
				t.Fatalf("plan refuses with %v, check with %v; want ok %v\ncheck:\n%s", stop, cerr, c.ok, out.String())
			}
			if strings.Contains(out.String(), "SECRET-") || (cerr != nil && strings.Contains(cerr.Error(), "SECRET-")) {
				t.Errorf("a key appears in check's output")
			}
			if c.ok {
				if !strings.Contains(out.String(), "ok: sshd-md5-socket would start") {
					t.Errorf("check says ok without saying so:\n%s", out.String())
				}
				return
			}
			if !strings.Contains(stop.Error(), c.reason) {
				t.Errorf("the shim would stop at %q, want %q", stop, c.reason)
			}
			for _, r := range all {
				if !strings.Contains(cerr.Error(), r.Error()) {
					t.Errorf("check does not name the plan's refusal %q:\n%v", r, cerr)
				}
			}
			if c.also != "" && !strings.Contains(cerr.Error(), c.also) {
				t.Errorf("check does not name %q:\n%v", c.also, cerr)
			}
		})
	}
}
