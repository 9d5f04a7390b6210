//go:build linux

package shim_test

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"syscall"
	"testing"
	"time"
)

const port = 2222

func hostPort(a netip.Addr, p int) string { return netip.AddrPortFrom(a, uint16(p)).String() }

// A dual-stack -l [::] listener in inetd mode: keyed for both families
// (and a more specific /32), real ssh logins over IPv4 and IPv6, no answer
// for unsigned or wrongly signed peers.
func TestInetdDualStack(t *testing.T) {
	e := newEnv(t)
	k4, k6, kc := e.secret(), e.secret(), e.secret()
	clientNet := netip.PrefixFrom(e.link.AddrB4, 32).String()
	peers := map[string][]byte{"0.0.0.0/0": k4, "::/0": k6, clientNet: kc}
	kr := e.keyring(peers)
	p := e.start(nil, e.shim, append([]string{"-k", kr, "-l", "[::]:" + strconv.Itoa(port), "--"}, e.sshd.InetdArgs()...)...)
	p.WaitLog(`serving .* in inetd mode`, 10*time.Second)

	e.checkKeys(p.Cmd.Process.Pid, "[::]:2222", peers)

	for _, tc := range []struct {
		addr netip.Addr
		key  []byte
	}{{e.link.AddrA4, kc}, {e.link.AddrA6, k6}} {
		e.login(tc.addr, port, e.keyFile(tc.key), fmt.Sprintf("signed ssh login to %s", tc.addr))
	}
	p.WaitLog(`connection from `+e.link.AddrB4.String()+`:\d+ \(peers `+clientNet+`\) -> sshd pid`, 5*time.Second)
	p.WaitLog(`connection from \[`+e.link.AddrB6.String()+`\]:\d+ \(peers ::/0\) -> sshd pid`, 5*time.Second)

	e.expectNoAnswer(hostPort(e.link.AddrA4, port), nil)
	e.expectNoAnswer(hostPort(e.link.AddrA6, port), nil)
	e.expectNoAnswer(hostPort(e.link.AddrA4, port), k4) // the /32's key is needed
	e.expectNoAnswer(hostPort(e.link.AddrA6, port), e.secret())
}

// The activation race, through systemd-socket-activate: the socket exists
// unkeyed, an unsigned peer completes its handshake and thereby starts the
// service. The shim must key the socket, close that connection without a
// byte from sshd, and then serve signed peers. Both modes.
func TestSystemdActivation(t *testing.T) {
	for _, mode := range []string{"inetd", "listener"} {
		t.Run(mode, func(t *testing.T) {
			e := newEnv(t)
			k := e.secret()
			peers := map[string][]byte{"0.0.0.0/0": k}
			kr := e.keyring(peers)
			addr := hostPort(e.link.AddrA4, port)
			argv := e.sshd.InetdArgs()
			if mode == "listener" {
				argv = e.sshd.DaemonArgs()
			}
			p := e.start(nil, "systemd-socket-activate", append([]string{"-l", addr, "--", e.shim, "--mode", mode, "-k", kr, "--"}, argv...)...)
			p.WaitLog(`Listening on `, 5*time.Second)

			// systemd-socket-activate starts the service on the first
			// connection; only an unsigned one can complete its handshake
			// on the unkeyed socket.
			c, err := e.dial(addr, nil, 5*time.Second)
			if err != nil {
				t.Fatalf("unsigned dial to the unkeyed socket: %v", err)
			}
			defer c.Close()
			expectClosed(t, c)
			p.WaitLog(`closed unsigned connection from `+regexp.QuoteMeta(c.LocalAddr().String())+` queued before the keys were set`, 5*time.Second)

			e.login(e.link.AddrA4, port, e.keyFile(k), "signed ssh login")
			// systemd-socket-activate execs the shim, which in listener
			// mode execs sshd: one pid throughout.
			e.checkKeys(p.Cmd.Process.Pid, addr, peers)
			e.expectNoAnswer(addr, nil)
		})
	}
}

// The race without systemd: a socket listened on without keys, with an
// unsigned connection already queued, passed as LISTEN_FDS the way
// systemd does (LISTEN_PID has to be the shim's pid, hence sh's exec).
func TestQueuedUnsignedClosed(t *testing.T) {
	for _, mode := range []string{"inetd", "listener"} {
		t.Run(mode, func(t *testing.T) {
			e := newEnv(t)
			k := e.secret()
			peers := map[string][]byte{"0.0.0.0/0": k}
			kr := e.keyring(peers)
			addr := hostPort(e.link.AddrA4, port)
			ln := e.server.Listen(t, "tcp4", addr, nil)
			c, err := e.dial(addr, nil, 5*time.Second)
			if err != nil {
				t.Fatalf("unsigned dial to the unkeyed socket: %v", err)
			}
			defer c.Close()
			f, err := ln.File()
			if err != nil {
				t.Fatal(err)
			}
			argv := e.sshd.InetdArgs()
			if mode == "listener" {
				argv = e.sshd.DaemonArgs()
			}
			p := e.start([]*os.File{f}, "sh", append([]string{"-c", `export LISTEN_PID=$$ LISTEN_FDS=1; exec "$0" "$@"`, e.shim, "--mode", mode, "-k", kr, "--"}, argv...)...)
			f.Close()
			ln.Close()
			expectClosed(t, c)
			p.WaitLog(`closed unsigned connection from `+regexp.QuoteMeta(c.LocalAddr().String())+` queued before the keys were set`, 5*time.Second)
			e.login(e.link.AddrA4, port, e.keyFile(k), "signed ssh login")
			e.checkKeys(p.Cmd.Process.Pid, addr, peers)
		})
	}
}

// Stale keys on a socket from an earlier run (systemd keeps the socket)
// are removed before serving: the key set read back is the keyring's.
func TestStaleKeysReconciled(t *testing.T) {
	e := newEnv(t)
	kOld, kNew := e.secret(), e.secret()
	kr := filepath.Join(e.dir, "keyring.toml")
	addr := hostPort(e.link.AddrA4, port)
	ln := e.server.Listen(t, "tcp4", addr, nil)
	f, _ := ln.File()
	defer f.Close()
	// First run: keys for 0/0 and 10.99.0.0/16.
	e.writeKeyring(kr, map[string][]byte{"0.0.0.0/0": kOld, "10.99.0.0/16": kOld})
	p1 := e.start([]*os.File{f}, "sh", "-c", `export LISTEN_PID=$$ LISTEN_FDS=1; exec "$0" "$@"`, e.shim, "-k", kr, "--", "/bin/true")
	p1.WaitLog(`serving`, 10*time.Second)
	p1.Cmd.Process.Signal(syscall.SIGTERM)
	p1.WaitLog(`stopped accepting`, 5*time.Second)
	// Second run with another keyring, on the same socket.
	want := map[string][]byte{"0.0.0.0/0": kNew}
	e.writeKeyring(kr, want)
	p2 := e.start([]*os.File{f}, "sh", "-c", `export LISTEN_PID=$$ LISTEN_FDS=1; exec "$0" "$@"`, e.shim, "-k", kr, "--", "/bin/true")
	p2.WaitLog(`keys reconciled \(0 added, 1 replaced, 1 deleted\)`, 10*time.Second)
	e.checkKeys(p2.Cmd.Process.Pid, addr, want)
}
