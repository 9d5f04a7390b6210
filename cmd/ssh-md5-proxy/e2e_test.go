//go:build linux

package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sshmd5/sshmd5/internal/tcpsig/md5"
	"github.com/sshmd5/sshmd5/internal/testnet"
)

// e2e is a client and a server namespace joined by a veth pair, with real
// sshd -i behind a TCP-MD5 listener in the server namespace.
type e2e struct {
	client, server *testnet.NS
	link           *testnet.Link
	sshd           *testnet.SSHD
	port           int
	served         func() int
	bin            string // ssh-md5-proxy
}

// newE2E starts the server side, keyed with serverSecret for every IPv4
// and IPv6 peer.
func newE2E(t *testing.T, serverSecret md5.Secret) *e2e {
	t.Helper()
	testnet.RequireRoot(t)
	e := &e2e{bin: testnet.BuildBinary(t, "cmd/ssh-md5-proxy")}
	e.client, e.server = testnet.NewNS(t, "client"), testnet.NewNS(t, "server")
	e.link = testnet.Connect(t, e.client, e.server)
	e.sshd = testnet.NewSSHD(t)
	var ln net.Listener
	err := e.server.Do(func() error {
		lc := net.ListenConfig{Control: md5.ListenControl([]md5.Key{
			{Prefix: netip.MustParsePrefix("0.0.0.0/0"), Secret: serverSecret},
			{Prefix: netip.MustParsePrefix("::/0"), Secret: serverSecret},
		})}
		lc.SetMultipathTCP(false)
		var err error
		ln, err = lc.Listen(context.Background(), "tcp", "[::]:0")
		return err
	})
	if err != nil {
		t.Fatalf("keyed listener in the server namespace: %v", err)
	}
	e.port = ln.Addr().(*net.TCPAddr).Port
	e.served = testnet.ServeInetd(t, ln, e.sshd.InetdArgs())
	return e
}

// newSecret returns a random printable secret (tcpdump -M takes a string).
func newSecret(t *testing.T) md5.Secret { return md5.Secret(testnet.NewSecret()) }

// writeKeyring writes a 0600 keyring whose entries (TOML table names) all
// use secret, from a key file.
func writeKeyring(t *testing.T, secret md5.Secret, names ...string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "client.key"), secret, 0o600); err != nil {
		t.Fatalf("write key file: %v", err)
	}
	var kr testnet.Keyring
	for _, n := range names {
		kr.Hosts = append(kr.Hosts, testnet.Host(n, "client.key"))
	}
	p := filepath.Join(dir, "keyring.toml")
	kr.Write(t, p)
	return p
}

// writeKeyringKeys writes a 0600 keyring whose entries list keys, newest
// first, each from a key file.
func writeKeyringKeys(t *testing.T, keys []md5.Secret, names ...string) string {
	t.Helper()
	dir := t.TempDir()
	var files []string
	for i, k := range keys {
		f := fmt.Sprintf("key%d", i+1)
		if err := os.WriteFile(filepath.Join(dir, f), k, 0o600); err != nil {
			t.Fatalf("write key file: %v", err)
		}
		files = append(files, f)
	}
	var kr testnet.Keyring
	for _, n := range names {
		kr.Hosts = append(kr.Hosts, testnet.Host(n, files...))
	}
	p := filepath.Join(dir, "keyring.toml")
	kr.Write(t, p)
	return p
}

// ssh runs the real OpenSSH client in the client namespace with
// ssh-md5-proxy as ProxyCommand (proxyArgs before %h %p).
func (e *e2e) ssh(t *testing.T, addr netip.Addr, fdpass bool, stdin []byte, proxyArgs string, command string) (stdout, stderr []byte, err error) {
	t.Helper()
	args := e.sshd.SSHArgs()
	args = append(args, "-p", fmt.Sprint(e.port),
		"-o", "ProxyCommand="+e.bin+" "+proxyArgs+" %h %p")
	if fdpass {
		args = append(args, "-o", "ProxyUseFdpass=yes")
	}
	args = append(args, "root@"+addr.String(), command)
	cmd := e.client.Cmd("ssh", args...)
	cmd.Env = append(os.Environ(), "SHELL=/bin/sh")
	cmd.Stdin = bytes.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = runWithin(cmd, 60*time.Second)
	return out.Bytes(), errb.Bytes(), err
}

// runWithin runs cmd, killing it if it takes longer than limit, so that a
// hang fails the test with a reason instead of hitting go test's timeout.
func runWithin(cmd *exec.Cmd, limit time.Duration) error {
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(limit):
		_ = cmd.Process.Kill()
		<-done
		return fmt.Errorf("%s still running after %v, killed", cmd.Path, limit)
	}
}

func noSecret(t *testing.T, secret md5.Secret, what string, b []byte) {
	t.Helper()
	if bytes.Contains(b, secret) {
		t.Errorf("the secret appears in %s", what)
	}
}

// TestSSHSigned logs in with real ssh through ssh-md5-proxy, copy mode and
// fdpass, over IPv4 and IPv6, and checks with tcpdump -M that every segment
// on the wire carried a valid signature.
func TestSSHSigned(t *testing.T) {
	for _, fam := range []string{"v4", "v6"} {
		for _, mode := range []string{"copy", "fdpass"} {
			t.Run(mode+"-"+fam, func(t *testing.T) {
				t.Parallel()
				secret := newSecret(t)
				e := newE2E(t, secret)
				kr := writeKeyring(t, secret, "10.0.0.0/8", "fd00::/8")
				addr := e.link.AddrB4
				if fam == "v6" {
					addr = e.link.AddrB6
				}
				proxyArgs := "-k " + kr
				if mode == "fdpass" {
					proxyArgs = "--fdpass " + proxyArgs
				}
				capt := e.server.StartCapture(t, e.link.IfB, e.port)
				out, errb, err := e.ssh(t, addr, mode == "fdpass", nil, proxyArgs, "echo ok")
				st := capt.Stop(t, secret)
				noSecret(t, secret, "ssh's stderr", errb)
				if err != nil || string(out) != "ok\n" {
					t.Fatalf("ssh via proxy: %v; stdout %q; stderr:\n%s", err, out, errb)
				}
				t.Logf("%s %s: %v", mode, fam, st)
				if st.Segments == 0 || st.Valid != st.Segments || st.Unsigned != 0 {
					t.Errorf("want every segment signed and valid, got %v", st)
				}
				if e.served() != 1 {
					t.Errorf("sshd served %d connections, want 1", e.served())
				}
			})
		}
	}
}

// TestSSHBulk streams 16 MB each way through copy mode: stdin to a remote
// sha256sum, which only answers after EOF, and a remote cat to stdout.
func TestSSHBulk(t *testing.T) {
	t.Parallel()
	secret := newSecret(t)
	e := newE2E(t, secret)
	kr := writeKeyring(t, secret, "10.0.0.0/8")
	data := make([]byte, 16<<20)
	if _, err := rand.Read(data); err != nil {
		t.Fatalf("random data: %v", err)
	}
	sum := sha256.Sum256(data)
	want := hex.EncodeToString(sum[:])
	file := filepath.Join(t.TempDir(), "data")
	if err := os.WriteFile(file, data, 0o644); err != nil {
		t.Fatalf("write data: %v", err)
	}

	capt := e.server.StartCapture(t, e.link.IfB, e.port)
	start := time.Now()
	out, errb, err := e.ssh(t, e.link.AddrB4, false, data, "-k "+kr, "sha256sum")
	if err != nil {
		t.Fatalf("upload: %v; stderr:\n%s", err, errb)
	}
	if got := strings.Fields(string(out)); len(got) == 0 || got[0] != want {
		t.Fatalf("upload: remote sha256 %q, want %s", out, want)
	}
	t.Logf("upload 16 MiB: %v", time.Since(start))

	start = time.Now()
	out, errb, err = e.ssh(t, e.link.AddrB4, false, nil, "-k "+kr, "cat "+file)
	if err != nil {
		t.Fatalf("download: %v; stderr:\n%s", err, errb)
	}
	if got := sha256.Sum256(out); !bytes.Equal(got[:], sum[:]) {
		t.Fatalf("download: got %d bytes with another hash, want the 16 MiB sent", len(out))
	}
	t.Logf("download 16 MiB: %v", time.Since(start))
	st := capt.Stop(t, secret)
	t.Logf("bulk: %v", st)
	if st.Segments == 0 || st.Valid != st.Segments || st.Unsigned != 0 {
		t.Errorf("want every segment signed and valid, got %v", st)
	}
}

// TestWrongKey: the server has another key. Its kernel drops our signed
// SYNs silently; the proxy gives up at -t with the "no answer" message,
// and nothing unsigned ever left.
func TestWrongKey(t *testing.T) {
	for _, fdpass := range []bool{false, true} {
		t.Run(fmt.Sprintf("fdpass=%v", fdpass), func(t *testing.T) {
			t.Parallel()
			serverSecret, clientSecret := newSecret(t), newSecret(t)
			e := newE2E(t, serverSecret)
			kr := writeKeyring(t, clientSecret, "10.0.0.0/8")
			proxyArgs := "-t 2s -k " + kr
			if fdpass {
				proxyArgs = "--fdpass " + proxyArgs
			}
			before := e.server.MD5Counters(t)
			capt := e.server.StartCapture(t, e.link.IfB, e.port)
			start := time.Now()
			out, errb, err := e.ssh(t, e.link.AddrB4, fdpass, nil, proxyArgs, "echo ok")
			elapsed := time.Since(start)
			st := capt.Stop(t, clientSecret)
			d := e.server.MD5Counters(t).Sub(before)
			noSecret(t, clientSecret, "ssh's stderr", errb)
			noSecret(t, serverSecret, "ssh's stderr", errb)
			t.Logf("wrong key: %v after %v; server counters +%+v; stderr:\n%s", st, elapsed, d, errb)
			if err == nil {
				t.Fatalf("ssh succeeded with the wrong key; stdout %q", out)
			}
			if elapsed > 2*time.Second+8*time.Second {
				t.Errorf("ssh took %v to fail, want about -t 2s", elapsed)
			}
			wantMsg := fmt.Sprintf("ssh-md5-proxy: %s port %d: no answer within 2s from %s (signed with the key from hosts.\"10.0.0.0/8\"). Likely causes: the server does not have this key or has another one;",
				e.link.AddrB4, e.port, e.link.AddrB4)
			if !strings.Contains(string(errb), wantMsg) {
				t.Errorf("stderr lacks %q", wantMsg)
			}
			if d.Failure == 0 {
				t.Errorf("server's TCPMD5Failure did not increase (%+v)", d)
			}
			if st.SYNs == 0 || st.UnsignedSYNs != 0 || st.SYNACKs != 0 || st.Unsigned != 0 {
				t.Errorf("want only signed SYNs and no SYN-ACK, got %v", st)
			}
			if st.Valid != st.Segments {
				t.Errorf("want every SYN signed with the client's key, got %v", st)
			}
			if e.served() != 0 {
				t.Errorf("sshd served %d connections, want 0", e.served())
			}
		})
	}
}

// TestNoKey: the keyring has nothing for the host, so the proxy refuses
// before dialling: not one segment reaches the wire.
func TestNoKey(t *testing.T) {
	t.Parallel()
	secret := newSecret(t)
	e := newE2E(t, secret)
	kr := writeKeyring(t, secret, "192.0.2.0/24")
	before := e.server.MD5Counters(t)
	capt := e.server.StartCapture(t, e.link.IfB, e.port)
	out, errb, err := e.ssh(t, e.link.AddrB4, false, nil, "-k "+kr, "echo ok")
	st := capt.Stop(t, nil)
	d := e.server.MD5Counters(t).Sub(before)
	noSecret(t, secret, "ssh's stderr", errb)
	t.Logf("no key: %v; server counters +%+v; stderr:\n%s", st, d, errb)
	if err == nil {
		t.Fatalf("ssh succeeded without a key; stdout %q", out)
	}
	wantMsg := fmt.Sprintf("ssh-md5-proxy: no key for %s in %s; it will not connect unsigned", e.link.AddrB4, kr)
	if !strings.Contains(string(errb), wantMsg) {
		t.Errorf("stderr lacks %q", wantMsg)
	}
	if st.Segments != 0 {
		t.Errorf("want no segment at all (no dial), got %v", st)
	}
	if d != (testnet.MD5Counters{}) || e.served() != 0 {
		t.Errorf("server saw something: counters +%+v, served %d", d, e.served())
	}
}
