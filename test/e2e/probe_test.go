//go:build linux

package e2e

import (
	"encoding/json"
	"errors"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

// TestProbe runs `ssh-md5-proxy probe` from the client against the real
// sshd-md5-socket: with the server's key both checks hold (exit 0, the
// banner and host key read through the signed connection, the unsigned
// connect unanswered); with another key the signed connect gets no answer
// (exit 1), and so does a signed connect to the unkeyed control port,
// whose listener has no key and drops signed SYNs. The secrets never
// reach its output.
func TestProbe(t *testing.T) {
	l := newLab(t)
	l.startShim()
	l.startPlain()
	wrong := newSecret()
	wrongKeyring := l.writeKeyring("wrong", "hosts", wrong, l.server.a4.String(), l.server.a6.String())
	for _, c := range []struct {
		name, keyring string
		port          int
		want          int
		says          []string
	}{
		{"right key", l.clientKeyring, protectedPort, 0, []string{"signed:   connected", "banner SSH-2.0-OpenSSH", "unsigned: no answer", "ok: the server takes signed connections only"}},
		{"wrong key", wrongKeyring, protectedPort, 1, []string{"signed:   FAIL", "no answer within 5s", "the server does not have this key", "unsigned: not tried"}},
		{"unkeyed port", l.clientKeyring, plainPort, 1, []string{"signed:   FAIL", "no answer within 5s", "unsigned: not tried"}},
	} {
		for _, addr := range []string{l.server.a4.String(), l.server.a6.String()} {
			t.Run(c.name+"/"+addr, func(t *testing.T) {
				cmd := l.client.ns.Cmd(l.proxy, "probe", "-k", c.keyring, "-t", "5s", addr, strconv.Itoa(c.port))
				out, err := cmd.CombinedOutput()
				code := 0
				var ee *exec.ExitError
				if errors.As(err, &ee) {
					code = ee.ExitCode()
				} else if err != nil {
					t.Fatal(err)
				}
				checkNoSecret(t, "probe's output", string(out), [][]byte{l.secret, wrong})
				if code != c.want {
					t.Errorf("probe %s port %d: exit %d, want %d\n%s", addr, c.port, code, c.want, out)
				}
				for _, s := range c.says {
					if !strings.Contains(string(out), s) {
						t.Errorf("probe %s port %d: no %q in its output:\n%s", addr, c.port, s, out)
					}
				}
				t.Logf("probe %s port %d: exit %d\n%s", addr, c.port, code, out)
			})
		}
	}

	// A shim in --stealth closed refuses the unsigned connection as a
	// closed port would: that is a pass too, and says so.
	lc := newLab(t)
	lc.startShim("--stealth", "closed")
	for _, addr := range []string{lc.server.a4.String(), lc.server.a6.String()} {
		out, err := lc.client.ns.Cmd(lc.proxy, "probe", "-k", lc.clientKeyring, "-t", "5s", addr, strconv.Itoa(protectedPort)).CombinedOutput()
		checkNoSecret(t, "probe's output", string(out), [][]byte{lc.secret})
		if err != nil || !strings.Contains(string(out), "unsigned: refused, as by a closed port") || !strings.Contains(string(out), "ok: the server takes signed connections only") {
			t.Errorf("probe %s port %d, --stealth closed: %v, want exit 0 and the refusal named:\n%s", addr, protectedPort, err, out)
		}
		t.Logf("probe %s port %d, --stealth closed:\n%s", addr, protectedPort, out)
	}

	// --json for scripts: the same verdict, machine-readable.
	out, err := l.client.ns.Cmd(l.proxy, "probe", "-k", l.clientKeyring, "--json", l.server.a4.String(), strconv.Itoa(protectedPort)).Output()
	if err != nil {
		t.Fatalf("probe --json: %v\n%s", err, out)
	}
	var r map[string]any
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("probe --json printed no JSON object: %v\n%s", err, out)
	}
	if r["ok"] != true {
		t.Errorf("probe --json: \"ok\" is %v, want true", r["ok"])
	}
	t.Logf("probe --json: %s", out)
}
