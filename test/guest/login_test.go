//go:build linux

package guest

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sshmd5/sshmd5/internal/testnet"
)

// TestSignedLogin is a whole signed ssh login in the guest, the way the
// README sets it up: sshd-md5-socket in front of real sshd, real ssh with
// ssh-md5-proxy as ProxyCommand, tcpdump -M checking every segment. It
// proves the guest runs what the TCP-AO suite will need.
func TestSignedLogin(t *testing.T) {
	server, client := testnet.NewNS(t, "srv"), testnet.NewNS(t, "cli")
	link := testnet.Connect(t, server, client)
	sshd := testnet.NewSSHD(t)
	proxy := testnet.BuildBinary(t, "cmd/ssh-md5-proxy")
	dir := t.TempDir()
	key := secret(t)
	skr, ckr := filepath.Join(dir, "server.toml"), filepath.Join(dir, "client.toml")
	if err := os.WriteFile(skr, fmt.Appendf(nil, "[peers.\"0.0.0.0/0\"]\nkey = %q\n", key), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(ckr, fmt.Appendf(nil, "[hosts.\"*\"]\nkey = %q\n", key), 0o600); err != nil {
		t.Fatal(err)
	}
	s := startShim(t, server, nil, append([]string{"-k", skr, "-l", fmt.Sprintf("%s:%d", link.AddrA4, port), "--"}, sshd.InetdArgs()...)...)
	s.waitLog(`serving`)

	capture := client.StartCapture(t, link.IfB, port)
	args := append(sshd.SSHArgs(), "-p", fmt.Sprint(port), "-o", "ProxyCommand="+proxy+" -k "+ckr+" %h %p",
		"root@"+link.AddrA4.String(), "echo", "signed-login-ok")
	out, err := client.Cmd("ssh", args...).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "signed-login-ok") {
		t.Fatalf("ssh through sshd-md5-socket: %v\n%s\nshim log:\n%s", err, out, s.log)
	}
	st := capture.Stop(t, key)
	t.Logf("capture: %s", st)
	if st.Valid == 0 || st.Invalid != 0 || st.Unsigned != 0 {
		t.Fatalf("want every segment md5 valid, got %s", st)
	}
}
