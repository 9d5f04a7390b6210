//go:build linux

package proxy

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sshmd5/sshmd5/internal/tcpsig"
	"github.com/sshmd5/sshmd5/internal/tcpsig/ao"
	"github.com/sshmd5/sshmd5/internal/tcpsig/md5"
	"github.com/sshmd5/sshmd5/internal/testnet"
)

const aoSecret = "proxy-ao-test-secret"

// aoKey is a client TCP-AO key: the server holds it with the IDs swapped.
func aoKey(name string, send, recv uint8) tcpsig.Key {
	return tcpsig.Key{Secret: tcpsig.Secret(aoSecret), AO: &tcpsig.AO{
		Name: name, SendID: send, RecvID: recv,
		Algorithm: tcpsig.AODefaultAlgorithm, MACLen: tcpsig.AODefaultMACLen,
	}}
}

// kernelHasAO asks the kernel itself, not package ao: an empty struct
// tcp_ao_add (TCP_AO_ADD_KEY, 38; 288 bytes) is refused as invalid by a
// kernel with TCP-AO and as an unknown option (ENOPROTOOPT) by one without.
func kernelHasAO(t *testing.T) bool {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	err = unix.SetsockoptString(fd, unix.IPPROTO_TCP, 38, string(make([]byte, 288)))
	return !errors.Is(err, unix.ENOPROTOOPT)
}

// TestCheck: the keys DialAny refuses before anything is sent, and the
// messages that say which key and why, never with its secret.
func TestCheck(t *testing.T) {
	long := tcpsig.Secret(strings.Repeat("s", tcpsig.MaxKeyLen+1))
	badAlg := aoKey("alice", 1, 101)
	badAlg.AO.Algorithm = "hmac(md5)"
	badMAC := aoKey("alice", 1, 101)
	badMAC.AO.MACLen = 3
	noName := aoKey("", 7, 8)
	noName.Secret = nil
	for _, c := range []struct {
		name string
		keys []tcpsig.Key
		want string // "" means accepted
	}{
		{"none", nil, "proxy: no key given; refusing to dial unsigned"},
		{"md5 empty", []tcpsig.Key{{}}, "proxy: the key (TCP-MD5) has an empty secret; refusing to dial unsigned"},
		{"md5 second empty", append(mdKeys("a"), tcpsig.Key{}), "proxy: key 2 of 2 (TCP-MD5) has an empty secret; refusing to dial unsigned"},
		{"md5 too long", []tcpsig.Key{{Secret: long}}, "proxy: the key (TCP-MD5): secret is 81 bytes, the kernel takes 1 to 80"},
		{"ao empty", []tcpsig.Key{noName}, "proxy: the key (TCP-AO key, send_id 7, recv_id 8) has an empty secret; refusing to dial unsigned"},
		{"ao algorithm", []tcpsig.Key{badAlg}, `proxy: the key (TCP-AO key alice, send_id 1, recv_id 101): algorithm "hmac(md5)" is not one the kernel offers (hmac(sha1), hmac(sha256), cmac(aes128))`},
		{"ao mac", []tcpsig.Key{aoKey("new", 2, 102), badMAC}, "proxy: key 2 of 2 (TCP-AO key alice, send_id 1, recv_id 101): MAC length 3 is outside 4 to 20 bytes"},
		{"md5 ok", mdKeys("a", "b"), ""},
	} {
		err := Check(Options{Host: "h", Port: "22", Keys: c.keys})
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v, want nil", c.name, err)
		case c.want != "" && (err == nil || err.Error() != c.want):
			t.Errorf("%s:\ngot  %v\nwant %s", c.name, err, c.want)
		}
		if err != nil && (strings.Contains(err.Error(), aoSecret) || strings.Contains(err.Error(), string(long))) {
			t.Errorf("%s: the secret is in the error", c.name)
		}
	}
}

// TestCheckKernel: TCP-AO keys are refused exactly when the kernel has no
// TCP-AO, with ao.Supported's reason (it names CONFIG_TCP_AO), the keys
// by name and IDs, and that nothing was sent; an MD5 key beside them is
// not dialled alone.
func TestCheckKernel(t *testing.T) {
	has := kernelHasAO(t)
	for _, keys := range [][]tcpsig.Key{
		{aoKey("alice", 1, 101)},
		{aoKey("alice-new", 2, 102), aoKey("alice-old", 1, 101)},
		append(mdKeys(aoSecret), aoKey("alice", 1, 101)),
	} {
		err := Check(Options{Host: "bastion", Port: "22", KeyName: "hosts.bastion", Keys: keys})
		if has {
			if err != nil {
				t.Errorf("%d keys: the kernel has TCP-AO, but Check says %v", len(keys), err)
			}
			continue
		}
		if err == nil {
			t.Errorf("%d keys: the kernel has no TCP-AO, but Check accepts its keys", len(keys))
			continue
		}
		msg := err.Error()
		if !errors.Is(err, ao.ErrNoKernel) || !strings.Contains(msg, "CONFIG_TCP_AO") {
			t.Errorf("%d keys: %q, want ao.ErrNoKernel's reason, naming CONFIG_TCP_AO", len(keys), msg)
		}
		what := map[int]string{1: "the key from hosts.bastion is TCP-AO", 2: "the keys from hosts.bastion are TCP-AO", 3: "the keys from hosts.bastion include TCP-AO ones"}[len(keys)+boolInt(keys[0].AO == nil)]
		for _, want := range []string{"bastion port 22: " + what + " (TCP-AO key alice", "send_id 1, recv_id 101", "; nothing was sent"} {
			if !strings.Contains(msg, want) {
				t.Errorf("%d keys: %q lacks %q", len(keys), msg, want)
			}
		}
		if strings.Contains(msg, aoSecret) {
			t.Errorf("the secret is in the error")
		}
	}
}

// TestAOFailsClosed: on a kernel without TCP-AO, a TCP-AO key is never
// dialled unsigned nor as TCP-MD5 with the same secret: neither a plain
// listener nor a TCP-MD5 one keyed with that secret accepts anything, and
// the captures on both ports hold no segment at all. An entry with a
// TCP-MD5 key beside the TCP-AO one is refused whole. The control: the
// same capture sees the TCP-MD5 key's own dial.
func TestAOFailsClosed(t *testing.T) {
	if kernelHasAO(t) {
		t.Fatal("this test is about a kernel without TCP-AO and this one has it; test/guest covers TCP-AO dials")
	}
	ns := testnet.NewNS(t, "aoclosed")
	plain := ns.Listen(t, "tcp4", "127.0.0.1:0", nil)
	keyed := ns.Listen(t, "tcp4", "127.0.0.1:0", []md5.Key{{Prefix: netip.MustParsePrefix("0.0.0.0/0"), Secret: md5.Secret(aoSecret)}})
	accepted := make(chan string, 8)
	for name, ln := range map[string]net.Listener{"plain": plain, "TCP-MD5": keyed} {
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.Close()
				accepted <- name
			}
		}()
	}
	for _, c := range []struct {
		ln   net.Listener
		keys []tcpsig.Key
	}{
		{plain, []tcpsig.Key{aoKey("alice", 1, 101)}},
		{keyed, []tcpsig.Key{aoKey("alice", 1, 101)}},
		{keyed, []tcpsig.Key{aoKey("alice-new", 2, 102), aoKey("alice-old", 1, 101)}},
		{keyed, append(mdKeys(aoSecret), aoKey("alice", 1, 101))},
	} {
		port := c.ln.Addr().(*net.TCPAddr).Port
		capture := ns.StartCapture(t, "lo", port)
		conn, err := dialIn(ns, Options{Host: "127.0.0.1", Port: fmt.Sprint(port), Timeout: 2 * time.Second, Keys: c.keys, KeyName: "hosts.x"})
		st := capture.Stop(t, nil)
		if err == nil {
			conn.Close()
			t.Errorf("%d keys to port %d: Dial succeeded", len(c.keys), port)
		} else if strings.Contains(err.Error(), aoSecret) {
			t.Errorf("the secret is in the error")
		}
		if st.Segments != 0 {
			t.Errorf("%d keys to port %d: capture %v; want nothing sent", len(c.keys), port, st)
		}
		t.Logf("%d keys to port %d: %v; capture: %v", len(c.keys), port, err, st)
	}
	// Control: the capture does see a dial that goes out. The TCP-MD5
	// key alone connects to the TCP-MD5 listener.
	port := keyed.Addr().(*net.TCPAddr).Port
	capture := ns.StartCapture(t, "lo", port)
	conn, err := dialIn(ns, Options{Host: "127.0.0.1", Port: fmt.Sprint(port), Timeout: 5 * time.Second, Keys: mdKeys(aoSecret)})
	if err != nil {
		t.Fatalf("control: the TCP-MD5 key alone: %v", err)
	}
	conn.Close()
	if st := capture.Stop(t, []byte(aoSecret)); st.SYNs == 0 || st.Valid == 0 || st.Unsigned != 0 {
		t.Errorf("control: capture %v; want the signed handshake", st)
	}
	if got := <-accepted; got != "TCP-MD5" {
		t.Errorf("control: accepted by the %s listener", got)
	}
	select {
	case got := <-accepted:
		t.Errorf("the %s listener accepted a connection from a TCP-AO dial", got)
	default:
	}
}

// TestBackendOf: a key is dialled by its own kind.
func TestBackendOf(t *testing.T) {
	if b := backendOf(aoKey("a", 1, 2)); b.Name() != "TCP-AO" {
		t.Errorf("AO key: backend %s", b.Name())
	}
	if b := backendOf(mdKeys("x")[0]); b.Name() != "TCP-MD5" {
		t.Errorf("MD5 key: backend %s", b.Name())
	}
}

// TestNoAnswerMessageAO: with TCP-AO keys the message names each key by
// name and IDs and says what a silent drop means for TCP-AO.
func TestNoAnswerMessageAO(t *testing.T) {
	keys := []tcpsig.Key{aoKey("alice", 1, 101)}
	e := &NoAnswerError{Host: "bastion", Port: "22", Tried: []string{"192.0.2.7"}, Timeout: 10 * time.Second,
		KeyName: "hosts.bastion", Keys: 1, AO: aoParts(keys)}
	want := "bastion port 22: no answer within 10s from 192.0.2.7 (signed with TCP-AO key alice, send_id 1, recv_id 101, from hosts.bastion). " +
		"Likely causes: the server does not hold this key: the secret or MAC algorithm differs; " +
		"it has no key with recv_id 1 (our send_id) for your address, an unknown KeyID; " +
		"or the key was revoked (removed from the server's keyring). " +
		"The server drops such a SYN without a word and counts it (nstat TcpExtTCPAOKeyNotFound for an unknown KeyID, TcpExtTCPAOBad for a wrong secret). " +
		"Or: a NAT between you and the server rewrites addresses, which breaks TCP-AO; the host is down or filtered; " +
		"nothing listens on that port (its reset is unsigned, so it is dropped and looks the same)."
	if got := e.Error(); got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}

	keys = []tcpsig.Key{aoKey("alice-new", 2, 102), aoKey("alice-old", 1, 101)}
	e = &NoAnswerError{Host: "db", Port: "22", KeyName: "hosts.db", Keys: 2, AO: aoParts(keys)}
	got := e.Error()
	for _, want := range []string{
		"(signed with each of the 2 keys from hosts.db, one connection each: TCP-AO key alice-new, send_id 2, recv_id 102; TCP-AO key alice-old, send_id 1, recv_id 101)",
		"the server does not hold any of these keys:",
		"no key with recv_id 2 or 1 (our send_id)",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("two keys: %q lacks %q", got, want)
		}
	}

	// A mixed entry lists each key in order, the TCP-MD5 one by kind.
	keys = append(mdKeys("x"), aoKey("alice", 1, 101))
	e = &NoAnswerError{Host: "db", Port: "22", KeyName: "hosts.db", Keys: 2, AO: aoParts(keys)}
	if got, want := e.Error(), "one connection each: TCP-MD5 key; TCP-AO key alice, send_id 1, recv_id 101)"; !strings.Contains(got, want) {
		t.Errorf("mixed: %q lacks %q", got, want)
	}
}

// TestClassifyAO: classify carries the AO keys into the errors, copied:
// the error does not alias the caller's keys.
func TestClassifyAO(t *testing.T) {
	keys := []tcpsig.Key{aoKey("alice", 1, 101)}
	o := Options{Host: "h", Port: "22", Timeout: time.Second, KeyName: "hosts.h", Keys: keys}
	op := func(err error) error { return &net.OpError{Op: "dial", Net: "tcp", Err: err} }
	var na *NoAnswerError
	if err := classify(op(errTimeout{}), o, []string{"192.0.2.1"}); !errors.As(err, &na) || len(na.AO) != 1 || na.AO[0].Name != "alice" {
		t.Fatalf("deadline: got %#v", err)
	}
	keys[0].AO.Name = "changed"
	if na.AO[0].Name != "alice" {
		t.Errorf("the error aliases the caller's key")
	}
	var re *RefusedError
	err := classify(op(unix.ECONNREFUSED), o, []string{"192.0.2.1"})
	if !errors.As(err, &re) {
		t.Fatalf("refused: got %v", err)
	}
	want := "h port 22: connection refused by 192.0.2.1 (signed with TCP-AO key changed, send_id 1, recv_id 101, from hosts.h). " +
		"Nothing accepts connections on that port: the TCP-AO listener or sshd is not running, the port is wrong, or a firewall rejects it."
	if got := err.Error(); got != want {
		t.Errorf("refused:\ngot  %q\nwant %q", got, want)
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

type errTimeout struct{}

func (errTimeout) Error() string { return "i/o timeout" }
func (errTimeout) Timeout() bool { return true }

// TestProbeTextAO: probe names the backend and the TCP-AO key that worked
// by name, IDs, MAC and its AOKEY fingerprint; never by its bytes.
func TestProbeTextAO(t *testing.T) {
	r := ProbeResult{Host: "db", Port: "22", KeyName: "hosts.db", Keys: 2, KeyIndex: 2, Backend: "TCP-AO",
		Address: "192.0.2.7:22", KeyFingerprint: "AOKEY:SHA256:f", AO: &ProbeAO{Name: "alice-old", SendID: 1, RecvID: 101, Algorithm: "hmac(sha256)", MACLen: 12}}
	r.Signed.OK, r.Signed.Banner, r.Signed.HostKeyType, r.Signed.Fingerprint = true, "SSH-2.0-OpenSSH_9.2", "ssh-ed25519", "SHA256:x"
	text := r.Text()
	for _, want := range []string{
		"probe db port 22 (TCP-AO key from hosts.db)\n",
		"\n          host key ssh-ed25519 SHA256:x\n          TCP-AO key 2 of 2: alice-old (send_id 1, recv_id 101, hmac(sha256), 12-byte MAC) AOKEY:SHA256:f\n",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("text lacks %q:\n%s", want, text)
		}
	}
	r.Keys, r.KeyIndex = 1, 1
	if want := "\n          TCP-AO key alice-old (send_id 1, recv_id 101, hmac(sha256), 12-byte MAC) AOKEY:SHA256:f\n"; !strings.Contains(r.Text(), want) {
		t.Errorf("one key: text lacks %q:\n%s", want, r.Text())
	}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"key_fingerprint":"AOKEY:SHA256:f"`, `"backend":"TCP-AO"`, `"ao":{"name":"alice-old","send_id":1,"recv_id":101,"algorithm":"hmac(sha256)","mac_len":12}`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("JSON lacks %s: %s", want, b)
		}
	}
}
