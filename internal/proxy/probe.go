//go:build linux

package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/sshmd5/sshmd5/internal/fingerprint"
)

// DefaultUnsignedTimeout is how long Probe waits for an unsigned
// connection that should get no answer.
const DefaultUnsignedTimeout = 3 * time.Second

// ProbeResult is what Probe found. OK is true only when the signed
// connection reached an SSH server and the unsigned one got no answer.
type ProbeResult struct {
	Host    string `json:"host"`
	Port    string `json:"port"`
	Address string `json:"address,omitempty"` // the address the signed connection reached
	KeyName string `json:"key"`               // where the key came from, e.g. hosts.bastion
	// KeyFingerprint is that of the key the signed connection was made
	// with, to compare with the server's (sshd-md5-socket status);
	// KeyIndex is its place in the entry's list, from 1 (newest), of
	// Keys. Both are empty or 0 when no key connected.
	KeyFingerprint string `json:"key_fingerprint,omitempty"`
	KeyIndex       int    `json:"key_index,omitempty"`
	Keys           int    `json:"keys"`
	// Backend is "TCP-MD5" or "TCP-AO": that of the key that connected,
	// else that of the entry's keys ("TCP-MD5 or TCP-AO" for a mix).
	Backend string `json:"backend"`
	// AO names the TCP-AO key that connected, by name, IDs and MAC (its
	// fingerprint is KeyFingerprint, AOKEY:SHA256:...). Nil for TCP-MD5
	// and when no key connected.
	AO     *ProbeAO `json:"ao,omitempty"`
	OK     bool     `json:"ok"`
	Signed struct {
		OK          bool    `json:"ok"`
		ConnectMS   float64 `json:"connect_ms"`
		Banner      string  `json:"banner,omitempty"`
		HostKeyType string  `json:"host_key_type,omitempty"`
		Fingerprint string  `json:"host_key_fingerprint,omitempty"`
		Error       string  `json:"error,omitempty"`
	} `json:"signed"`
	Unsigned struct {
		OK     bool   `json:"ok"`
		Result string `json:"result"`
	} `json:"unsigned"`
}

// ProbeAO is a TCP-AO key as probe reports it: what the server's keyring
// names it by.
type ProbeAO struct {
	Name      string `json:"name,omitempty"`
	SendID    uint8  `json:"send_id"`
	RecvID    uint8  `json:"recv_id"`
	Algorithm string `json:"algorithm"`
	MACLen    int    `json:"mac_len"`
}

// errGotHostKey stops the SSH handshake once the host key is known: the
// probe never authenticates.
var errGotHostKey = errors.New("host key recorded")

// Probe connects to o.Host signed with o.Keys (racing them as DialAny
// does), reads the SSH banner and
// host key, then tries the same address unsigned, which a correctly keyed
// server must leave unanswered within unsignedTimeout, or refuse as a
// closed port (--stealth closed).
func Probe(ctx context.Context, o Options, unsignedTimeout time.Duration) ProbeResult {
	r := ProbeResult{Host: o.Host, Port: o.Port, KeyName: o.KeyName, Keys: len(o.Keys), Backend: kinds(len(o.Keys), aoParts(o.Keys))}
	r.Unsigned.Result = "not tried: the signed connection failed"
	start := time.Now()
	conn, i, err := DialAny(ctx, o)
	if err != nil {
		r.Signed.Error = err.Error()
		return r
	}
	k := o.Keys[i]
	r.KeyIndex, r.Backend = i+1, k.Backend()
	if k.AO != nil {
		r.AO = &ProbeAO{Name: k.AO.Name, SendID: k.AO.SendID, RecvID: k.AO.RecvID, Algorithm: k.AO.Algorithm, MACLen: k.AO.MACLen}
		r.KeyFingerprint = fingerprint.OfAO(k.Secret)
	} else {
		r.KeyFingerprint = fingerprint.Of(k.Secret)
	}
	r.Signed.ConnectMS = float64(time.Since(start).Microseconds()) / 1000
	r.Address = conn.RemoteAddr().String()
	if err := readHostKey(conn, o.Timeout, &r); err != nil {
		r.Signed.Error = fmt.Sprintf("%s: connected signed, but %v", r.Address, err)
	} else {
		r.Signed.OK = true
	}
	conn.Close()

	d := net.Dialer{Timeout: unsignedTimeout}
	uc, err := d.DialContext(ctx, "tcp", r.Address)
	var ne net.Error
	switch {
	case err == nil:
		uc.Close()
		why := "lacks a catch-all key"
		if r.AO != nil {
			why = "is not sealed (ao_required)"
		}
		r.Unsigned.Result = fmt.Sprintf("FAIL: %s accepted an unsigned connection: the server's listener %s (check it with sshd-md5-socket check/status)", r.Address, why)
	case errors.As(err, &ne) && ne.Timeout():
		r.Unsigned.OK = true
		r.Unsigned.Result = fmt.Sprintf("no answer within %s, as it should be: unsigned SYNs are dropped", unsignedTimeout)
	case errors.Is(err, syscall.ECONNREFUSED):
		// sshd-md5-socket --stealth closed: the port answers unsigned
		// SYNs as a closed port does. Nothing took the connection.
		r.Unsigned.OK = true
		r.Unsigned.Result = "refused, as by a closed port, as it should be (sshd-md5-socket --stealth closed): nothing took the unsigned connection"
	default:
		r.Unsigned.Result = fmt.Sprintf("FAIL: %s answered an unsigned connection: %v (a %s listener drops it silently; something else answers there)", r.Address, err, r.Backend)
	}
	r.OK = r.Signed.OK && r.Unsigned.OK
	return r
}

// readHostKey reads the server's version line and host key, stopping
// the handshake before any authentication.
func readHostKey(conn net.Conn, timeout time.Duration, r *ProbeResult) error {
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	conn.SetDeadline(time.Now().Add(timeout))
	br := bufio.NewReader(conn)
	// RFC 4253 4.2: lines before the version line are allowed.
	var seen strings.Builder
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			if errors.Is(err, io.EOF) {
				return errors.New("the server closed the connection before sending an SSH banner (is it sshd? was the connection's key accepted by the shim?)")
			}
			return fmt.Errorf("reading the SSH banner: %w", err)
		}
		seen.WriteString(line)
		if strings.HasPrefix(line, "SSH-") {
			r.Signed.Banner = strings.TrimRight(line, "\r\n")
			break
		}
		if seen.Len() > 8192 {
			return errors.New("no SSH banner in the first 8 KiB: not an SSH server")
		}
	}
	pc := &prefixConn{Conn: conn, r: io.MultiReader(strings.NewReader(seen.String()), br)}
	cfg := &ssh.ClientConfig{
		User: "probe",
		HostKeyCallback: func(_ string, _ net.Addr, key ssh.PublicKey) error {
			r.Signed.HostKeyType = key.Type()
			r.Signed.Fingerprint = ssh.FingerprintSHA256(key)
			return errGotHostKey
		},
		Timeout: timeout,
	}
	_, _, _, err := ssh.NewClientConn(pc, conn.RemoteAddr().String(), cfg)
	if r.Signed.Fingerprint != "" {
		return nil
	}
	return fmt.Errorf("SSH handshake: %v", err)
}

// prefixConn replays what was read before the SSH library took over.
type prefixConn struct {
	net.Conn
	r io.Reader
}

func (c *prefixConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// Text formats r for people.
func (r ProbeResult) Text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "probe %s port %s (%s key from %s)\n", r.Host, r.Port, r.Backend, r.KeyName)
	if r.Signed.Error != "" && r.Address == "" {
		fmt.Fprintf(&b, "signed:   FAIL: %s\n", r.Signed.Error)
	} else {
		fmt.Fprintf(&b, "signed:   connected to %s in %.1f ms\n", r.Address, r.Signed.ConnectMS)
		if r.Signed.OK {
			fmt.Fprintf(&b, "          banner %s\n          host key %s %s\n", r.Signed.Banner, r.Signed.HostKeyType, r.Signed.Fingerprint)
		} else {
			fmt.Fprintf(&b, "          FAIL: %s\n", r.Signed.Error)
		}
		// After the host key: a script that takes the first SHA256: of
		// the output gets the host key's, as before keys had
		// fingerprints.
		which := r.KeyFingerprint
		if r.AO != nil {
			name := ""
			if r.AO.Name != "" {
				name = r.AO.Name + " "
			}
			which = fmt.Sprintf("%s(send_id %d, recv_id %d, %s, %d-byte MAC) %s", name, r.AO.SendID, r.AO.RecvID, r.AO.Algorithm, r.AO.MACLen, r.KeyFingerprint)
		}
		if r.Keys > 1 {
			fmt.Fprintf(&b, "          %s key %d of %d: %s\n", r.Backend, r.KeyIndex, r.Keys, which)
		} else {
			fmt.Fprintf(&b, "          %s key %s\n", r.Backend, which)
		}
	}
	fmt.Fprintf(&b, "unsigned: %s\n", r.Unsigned.Result)
	if r.OK {
		b.WriteString("ok: the server takes signed connections only\n")
	}
	return b.String()
}
