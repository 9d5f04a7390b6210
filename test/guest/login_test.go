//go:build linux

package guest

import (
	"fmt"
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
	testnet.Keyring{Peers: []testnet.Entry{{Name: "0.0.0.0/0", Key: key}}}.Write(t, skr)
	testnet.Keyring{Hosts: []testnet.Entry{{Name: "*", Key: key}}}.Write(t, ckr)
	s := startShim(t, server, nil, append([]string{"-k", skr, "-l", fmt.Sprintf("%s:%d", link.AddrA4, port), "--"}, sshd.InetdArgs()...)...)
	s.waitLog(`serving`)

	capture := client.StartCapture(t, link.IfB, port)
	args := append(sshd.SSHArgs(), "-p", fmt.Sprint(port), "-o", "ProxyCommand="+proxy+" -k "+ckr+" %h %p",
		"root@"+link.AddrA4.String(), "echo", "signed-login-ok")
	out, err := client.Cmd("ssh", args...).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "signed-login-ok") {
		t.Fatalf("ssh through sshd-md5-socket: %v\n%s\nshim log:\n%s", err, out, s.Log())
	}
	st := capture.Stop(t, key)
	t.Logf("capture: %s", st)
	if st.Valid == 0 || st.Invalid != 0 || st.Unsigned != 0 {
		t.Fatalf("want every segment md5 valid, got %s", st)
	}
}
