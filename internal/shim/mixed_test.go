//go:build linux

package shim_test

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A keyring shared with the client side: a [hosts] entry whose key file
// is missing is only a warning here. The shim starts, keys its real
// listener and serves a signed login; it logs the broken entry.
func TestClientEntriesIgnored(t *testing.T) {
	e := newEnv(t)
	k := e.secret()
	kr := filepath.Join(e.dir, "mixed.toml")
	missing := filepath.Join(e.dir, "md5", "bastion.key")
	e.writeFile(kr, fmt.Sprintf("[hosts.bastion]\nkey_file = %q\n[hosts.web]\nkye = \"x\"\n[peers.\"0.0.0.0/0\"]\nkey = %q\n[peers.\"::/0\"]\nkey = %q\n", missing, k, k))
	p := e.start(nil, e.shim, append([]string{"-k", kr, "-l", "[::]:" + strconv.Itoa(port), "--"}, e.sshd.InetdArgs()...)...)
	p.WaitLog(`serving .* in inetd mode`, 10*time.Second)
	p.WaitLog(`warning: keyring `+kr+`:1: hosts\.bastion: key_file `+missing+`: no such file or directory.*\(ignored: sshd-md5-socket uses only \[peers\]\)`, time.Second)
	p.WaitLog(`warning: keyring `+kr+`:4: hosts\.web: unknown field "kye"`, time.Second)
	e.checkKeys(p.Cmd.Process.Pid, "[::]:2222", map[string][]byte{"0.0.0.0/0": k, "::/0": k})
	e.login(e.link.AddrA4, port, e.keyFile(k), "signed ssh login")
	e.expectNoAnswer(hostPort(e.link.AddrA4, port), nil)
}

// A reload with a keyring over the shape bounds (the nesting that made the
// TOML decoder take gigabytes) is refused before decoding, with its line,
// and the old keys stay on the real listener.
func TestReloadShapeBound(t *testing.T) {
	e := newEnv(t)
	k := e.secret()
	kr := filepath.Join(e.dir, "keyring.toml")
	peers := map[string][]byte{"0.0.0.0/0": k, "::/0": k}
	e.writeKeyring(kr, peers)
	p := e.start(nil, e.shim, append([]string{"-k", kr, "-l", "[::]:" + strconv.Itoa(port), "--"}, e.sshd.InetdArgs()...)...)
	p.WaitLog(`serving .* in inetd mode`, 10*time.Second)
	e.writeFile(kr, "[peers.\"0.0.0.0/0\"]\nkey = \"x\"\nx = "+strings.Repeat("{a=", 4000)+"1"+strings.Repeat("}", 4000)+"\n")
	p.Cmd.Process.Signal(syscall.SIGHUP)
	p.WaitLog(`reload: keyring `+kr+`:3: a key more than 4 levels deep.*; keeping the previous keys`, 5*time.Second)
	e.checkKeys(p.Cmd.Process.Pid, "[::]:2222", peers)
	e.login(e.link.AddrA4, port, e.keyFile(k), "signed ssh login after the refused reload")
}
