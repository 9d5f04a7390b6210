//go:build linux

package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sshmd5/sshmd5/internal/fingerprint"
	"github.com/sshmd5/sshmd5/internal/proxy"
	"github.com/sshmd5/sshmd5/internal/tcpsig/md5"
)

// TestProbe runs probe against real sshd behind a TCP-MD5 listener: with
// the right key both checks hold and the host key is sshd's; with a wrong
// key the signed connect gets no answer. Neither prints the secret.
func TestProbe(t *testing.T) {
	secret := newSecret(t)
	e := newE2E(t, secret)
	fp := strings.Fields(string(mustRun(t, exec.Command("ssh-keygen", "-l", "-E", "sha256", "-f", e.sshd.HostPub))))[1]

	for _, fam := range []string{"v4", "v6"} {
		addr := e.link.AddrB4.String()
		if fam == "v6" {
			addr = e.link.AddrB6.String()
		}
		t.Run("good-"+fam, func(t *testing.T) {
			kr := writeKeyring(t, secret, addr)
			out, errb, code := e.probe(t, "-k", kr, addr, fmt.Sprint(e.port))
			noSecret(t, secret, "probe's stdout", out)
			noSecret(t, secret, "probe's stderr", errb)
			if code != 0 {
				t.Fatalf("probe exited %d, want 0; stdout:\n%s\nstderr:\n%s", code, out, errb)
			}
			for _, re := range []string{
				`(?m)^signed:   connected to \S+ in [0-9.]+ ms$`,
				`(?m)^          banner SSH-2\.0-OpenSSH_`,
				`(?m)^          host key ssh-ed25519 ` + regexp.QuoteMeta(fp) + `\n          TCP-MD5 key ` + regexp.QuoteMeta(fingerprint.Of(secret)) + `$`,
				`(?m)^unsigned: no answer within 1s, as it should be`,
				`(?m)^ok: the server takes signed connections only$`,
			} {
				if !regexp.MustCompile(re).Match(out) {
					t.Errorf("stdout does not match %s:\n%s", re, out)
				}
			}
		})
	}

	t.Run("json", func(t *testing.T) {
		addr := e.link.AddrB4.String()
		kr := writeKeyring(t, secret, addr)
		out, errb, code := e.probe(t, "-k", kr, "--json", addr, fmt.Sprint(e.port))
		noSecret(t, secret, "probe's stdout", out)
		if code != 0 {
			t.Fatalf("probe --json exited %d; stdout:\n%s\nstderr:\n%s", code, out, errb)
		}
		var r proxy.ProbeResult
		if err := json.Unmarshal(out, &r); err != nil {
			t.Fatalf("probe --json: %v:\n%s", err, out)
		}
		if !r.OK || !r.Signed.OK || !r.Unsigned.OK || r.Signed.Fingerprint != fp || r.Signed.ConnectMS <= 0 {
			t.Errorf("probe --json: %+v, want ok with fingerprint %s", r, fp)
		}
		if r.KeyFingerprint != fingerprint.Of(secret) || r.KeyIndex != 1 || r.Keys != 1 {
			t.Errorf("probe --json: key %d of %d, %s; want 1 of 1, %s", r.KeyIndex, r.Keys, r.KeyFingerprint, fingerprint.Of(secret))
		}
	})

	// During a rotation the entry lists two keys; probe says which one
	// the server took, wherever it is in the list.
	for _, serverFirst := range []bool{true, false} {
		t.Run(fmt.Sprintf("rotation-server-key-first-%v", serverFirst), func(t *testing.T) {
			addr := e.link.AddrB4.String()
			other := newSecret(t)
			keys, want := []md5.Secret{secret, other}, 1
			if !serverFirst {
				keys, want = []md5.Secret{other, secret}, 2
			}
			kr := writeKeyringKeys(t, keys, addr)
			out, errb, code := e.probe(t, "-k", kr, addr, fmt.Sprint(e.port))
			noSecret(t, secret, "probe's stdout", out)
			noSecret(t, other, "probe's stdout", out)
			if code != 0 {
				t.Fatalf("probe exited %d, want 0; stdout:\n%s\nstderr:\n%s", code, out, errb)
			}
			re := fmt.Sprintf(`(?m)^          TCP-MD5 key %d of 2: %s$`, want, regexp.QuoteMeta(fingerprint.Of(secret)))
			if !regexp.MustCompile(re).Match(out) {
				t.Errorf("stdout does not match %s:\n%s", re, out)
			}
		})
	}
	t.Run("rotation-no-key-matches", func(t *testing.T) {
		addr := e.link.AddrB4.String()
		kr := writeKeyringKeys(t, []md5.Secret{newSecret(t), newSecret(t)}, addr)
		out, errb, code := e.probe(t, "-k", kr, "-t", "1s", addr, fmt.Sprint(e.port))
		if code != 1 {
			t.Fatalf("probe exited %d, want 1; stdout:\n%s\nstderr:\n%s", code, out, errb)
		}
		if want := "signed with each of the 2 keys from hosts."; !bytes.Contains(out, []byte(want)) {
			t.Errorf("stdout lacks %q:\n%s", want, out)
		}
	})

	t.Run("wrong-key", func(t *testing.T) {
		addr := e.link.AddrB4.String()
		kr := writeKeyring(t, newSecret(t), addr)
		out, errb, code := e.probe(t, "-k", kr, "-t", "1s", addr, fmt.Sprint(e.port))
		noSecret(t, secret, "probe's stdout", out)
		if code != 1 {
			t.Fatalf("probe exited %d, want 1; stdout:\n%s\nstderr:\n%s", code, out, errb)
		}
		for _, want := range []string{"signed:   FAIL: ", "no answer within 1s", "unsigned: not tried"} {
			if !bytes.Contains(out, []byte(want)) {
				t.Errorf("stdout lacks %q:\n%s", want, out)
			}
		}
	})
}

// probe runs ssh-md5-proxy probe in the client namespace, with a 1s wait
// for the unsigned connection.
func (e *e2e) probe(t *testing.T, args ...string) (stdout, stderr []byte, code int) {
	t.Helper()
	cmd := e.client.Cmd(e.bin, append([]string{"probe", "-u", "1s"}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := runWithin(cmd, 30*time.Second)
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("probe: %v", err)
	}
	return out.Bytes(), errb.Bytes(), code
}

func mustRun(t *testing.T, cmd *exec.Cmd) []byte {
	t.Helper()
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v", cmd, err)
	}
	return out
}
