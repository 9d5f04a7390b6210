//go:build linux

package shim_test

import (
	"errors"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sshmd5/sshmd5/internal/stealth"
)

// --stealth closed on a socket passed the systemd way, in listener mode:
// the table is installed for the socket's own address and port before
// sshd -D gets the socket, an unsigned connect is refused as by a closed
// port while a key holder logs in, and the table stays while that sshd
// (the shim's pid, exec'd) serves; once it is gone, the table is stale
// and a filtered start removes it.
func TestStealthClosedListenerMode(t *testing.T) {
	e := newEnv(t)
	k := e.secret()
	kr := e.keyring(map[string][]byte{"0.0.0.0/0": k})
	addr := hostPort(e.link.AddrA4, port)
	ln := e.server.Listen(t, "tcp4", addr, nil)
	f, err := ln.File()
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
	p := e.start([]*os.File{f}, "sh", append([]string{"-c", `export LISTEN_PID=$$ LISTEN_FDS=1; exec "$0" "$@"`,
		e.shim, "--mode", "listener", "--stealth", "closed", "-k", kr, "--"}, e.sshd.DaemonArgs()...)...)
	f.Close()
	p.WaitLog(`stealth closed: closed: unsigned segments to `+strings.ReplaceAll(addr, ".", `\.`), 10*time.Second)
	listing := e.server.Run(t, "nft", "list", "table", "inet", stealth.TableName)
	if !strings.Contains(listing, "ip daddr "+e.link.AddrA4.String()+" tcp dport 2222") || strings.Contains(listing, "meta nfproto ipv6") {
		t.Errorf("the table does not match the passed socket (IPv4 %s only):\n%s", addr, listing)
	}
	e.login(e.link.AddrA4, port, e.keyFile(k), "signed ssh login")
	c, err := e.dial(addr, nil, 5*time.Second)
	if c != nil {
		c.Close()
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("unsigned dial in closed mode: %v, want connection refused", err)
	}
	var exists, alive bool
	var o stealth.Owner
	if err := e.server.Do(func() (err error) { exists, o, alive, err = stealth.Installed(); return }); err != nil {
		t.Fatal(err)
	}
	if !exists || !alive || o.PID != p.Cmd.Process.Pid {
		t.Errorf("table owner %v (exists %v, alive %v), want the running sshd, pid %d", o, exists, alive, p.Cmd.Process.Pid)
	}
	syscall.Kill(-p.Cmd.Process.Pid, syscall.SIGKILL)
	<-p.Done
	p2 := e.start(nil, e.shim, "-k", kr, "-l", hostPort(e.link.AddrA4, port+1), "--", "/bin/true")
	p2.WaitLog(`stealth filtered: removed the table inet `+stealth.TableName+` an earlier run left`, 10*time.Second)
}
