//go:build linux

package inspect

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/sshmd5/sshmd5/internal/stealth"
	"github.com/sshmd5/sshmd5/internal/testnet"
)

// TestCheckStealth: check reports the mode in force from the kernel (is
// our table installed in this namespace?) and what each --stealth would
// do, refusing closed mode where it could not start.
func TestCheckStealth(t *testing.T) {
	ns := testnet.NewNS(t, "inspect")
	run := func(mode stealth.Mode, listen ...string) (string, error) {
		var b strings.Builder
		var err error
		if derr := ns.Do(func() error { err = CheckStealth(&b, mode, listen); return nil }); derr != nil {
			t.Fatal(derr)
		}
		return b.String(), err
	}
	out, err := run(stealth.Filtered)
	if err != nil || !strings.Contains(out, "stealth in force: filtered: no table inet sshd_md5_socket") ||
		!strings.Contains(out, "--stealth filtered (the default): unsigned segments get no answer") {
		t.Errorf("no table, filtered: %v\n%s", err, out)
	}
	out, err = run(stealth.Closed, "[::]:2222")
	if err != nil || !strings.Contains(out, "--stealth closed: closed: would install table inet sshd_md5_socket; unsigned segments to port 2222") {
		t.Errorf("closed, one port: %v\n%s", err, out)
	}
	if err := ns.Do(func() error {
		_, err := stealth.Install([]stealth.Listener{{Addr: netip.IPv6Unspecified(), Port: 2222, IPv4: true, IPv6: true}}, stealth.Options{})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	out, err = run(stealth.Auto, "0.0.0.0:22", "[::]:2222")
	if err != nil || !strings.Contains(out, "stealth in force: closed: table inet sshd_md5_socket is installed") ||
		!strings.Contains(out, "--stealth auto: filtered, because closed mode cannot be used: listeners 0.0.0.0:22 and [::]:2222 have different ports") {
		t.Errorf("table installed, auto with two ports: %v\n%s", err, out)
	}
	out, err = run(stealth.Closed, "0.0.0.0:22", "[::]:2222")
	if err == nil || !strings.Contains(out, "--stealth closed: CANNOT be installed") || !strings.Contains(err.Error(), "use --stealth filtered or auto") {
		t.Errorf("closed with two ports: %v, want an error naming the fix\n%s", err, out)
	}
}
