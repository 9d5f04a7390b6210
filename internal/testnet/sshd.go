//go:build linux

package testnet

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const sshdPath = "/usr/sbin/sshd"

// SSHD is a real OpenSSH server set up for one test: everything lives in a
// temp dir removed at cleanup. Root logs in with ClientKey.
type SSHD struct {
	Dir        string // temp dir holding everything below
	Config     string // sshd_config
	HostKey    string // ed25519 host private key
	HostPub    string // its public half
	ClientKey  string // client private key (ed25519, no passphrase)
	KnownHosts string // known_hosts trusting HostPub for every host ("*")
}

// NewSSHD generates keys and an sshd_config in a temp dir. extra lines are
// added to sshd_config before the defaults, so they override them (sshd
// takes the first value of a keyword); from a line starting with "Match" on
// they go after the defaults, as Match blocks must. Daemon mode needs a
// "ListenAddress ADDR:PORT" line here; inetd mode needs none.
func NewSSHD(t testing.TB, extra ...string) *SSHD {
	t.Helper()
	RequireRoot(t)
	requireBinary(t, sshdPath)
	requireBinary(t, "ssh-keygen")
	requireBinary(t, "ssh")
	// The privsep directory; shared with any system sshd, so only created,
	// never removed.
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		t.Fatalf("testnet: create sshd privsep dir: %v", err)
	}
	dir := t.TempDir()
	s := &SSHD{
		Dir:        dir,
		Config:     filepath.Join(dir, "sshd_config"),
		HostKey:    filepath.Join(dir, "host_ed25519"),
		HostPub:    filepath.Join(dir, "host_ed25519.pub"),
		ClientKey:  filepath.Join(dir, "client_ed25519"),
		KnownHosts: filepath.Join(dir, "known_hosts"),
	}
	for _, k := range []string{s.HostKey, s.ClientKey} {
		if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "testnet", "-f", k).CombinedOutput(); err != nil {
			t.Fatalf("testnet: ssh-keygen %s: %v: %s", k, err, out)
		}
	}
	hostPub := readFile(t, s.HostPub)
	writeFile(t, s.KnownHosts, "* "+hostPub)
	authKeys := filepath.Join(dir, "authorized_keys")
	writeFile(t, authKeys, readFile(t, s.ClientKey+".pub"))

	var head, tail []string
	for i, l := range extra {
		if strings.HasPrefix(strings.ToLower(strings.TrimSpace(l)), "match") {
			tail = extra[i:]
			break
		}
		head = append(head, l)
	}
	conf := append(head,
		"PidFile none",
		"UsePAM no",
		"PermitRootLogin prohibit-password",
		"PasswordAuthentication no",
		"KbdInteractiveAuthentication no",
		"PubkeyAuthentication yes",
		"StrictModes no", // the files are under /tmp
		"HostKey "+s.HostKey,
		"AuthorizedKeysFile "+authKeys,
		"LogLevel VERBOSE",
		"PrintMotd no",
		"PrintLastLog no",
		"UseDNS no",
		"Subsystem sftp internal-sftp",
	)
	conf = append(conf, tail...)
	writeFile(t, s.Config, strings.Join(conf, "\n")+"\n")
	// Fail here, with sshd's own words, rather than in a later login.
	if out, err := exec.Command(sshdPath, "-t", "-f", s.Config).CombinedOutput(); err != nil {
		t.Fatalf("testnet: sshd -t rejects the test config: %v: %s", err, out)
	}
	return s
}

func readFile(t testing.TB, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatalf("testnet: %v", err)
	}
	return string(b)
}

func writeFile(t testing.TB, name, data string) {
	t.Helper()
	if err := os.WriteFile(name, []byte(data), 0o600); err != nil {
		t.Fatalf("testnet: %v", err)
	}
}

// InetdArgs returns argv running sshd in inetd mode on stdin/stdout; it logs
// to stderr.
func (s *SSHD) InetdArgs() []string {
	return []string{sshdPath, "-i", "-e", "-f", s.Config}
}

// DaemonArgs returns argv running sshd in the foreground, logging to stderr.
// sshd needs its absolute path (it re-executes itself per connection).
func (s *SSHD) DaemonArgs() []string {
	return []string{sshdPath, "-D", "-e", "-f", s.Config}
}

// SSHArgs returns ssh client arguments for a non-interactive login with
// ClientKey that trusts only HostPub and ignores the user's ssh config.
// Append more -o options (ProxyCommand=...), then "root@HOST" and a command.
func (s *SSHD) SSHArgs() []string {
	return []string{
		"-F", "/dev/null",
		"-i", s.ClientKey,
		"-o", "IdentitiesOnly=yes",
		"-o", "IdentityAgent=none",
		"-o", "BatchMode=yes",
		"-o", "StrictHostKeyChecking=yes",
		"-o", "UserKnownHostsFile=" + s.KnownHosts,
		"-o", "GlobalKnownHostsFile=/dev/null",
		"-o", "UpdateHostKeys=no",
		"-o", "ConnectTimeout=10",
		"-o", "LogLevel=ERROR",
	}
}

// ServeInetd serves every connection accepted on ln with its own process
// running argv (typically SSHD.InetdArgs) with the connection as stdin and
// stdout, like inetd. Each line the process writes to stderr goes to the
// test log prefixed "sshd:". It returns a function reporting how many
// connections were handed to a process so far.
//
// Each process runs as PID 1 of a new PID namespace (via unshare), so
// whatever it starts dies with it. At cleanup ln is closed, the remaining
// processes are killed and all of them are waited for.
func ServeInetd(t testing.TB, ln net.Listener, argv []string) (served func() int) {
	t.Helper()
	if len(argv) == 0 {
		t.Fatalf("testnet: ServeInetd: empty argv")
	}
	unshare := requireBinary(t, "unshare")
	var (
		n  atomic.Int64
		wg sync.WaitGroup
	)
	ctx, cancel := context.WithCancel(context.Background())
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				if ctx.Err() == nil {
					t.Logf("testnet: ServeInetd: accept: %v (serving stopped)", err)
				}
				return
			}
			tc, ok := conn.(*net.TCPConn)
			if !ok {
				t.Logf("testnet: ServeInetd: %T is not a TCP connection", conn)
				conn.Close()
				continue
			}
			// File dups the socket; the child gets the dup, we drop both
			// of our descriptors once it is started.
			f, err := tc.File()
			conn.Close()
			if err != nil {
				t.Logf("testnet: ServeInetd: %v", err)
				continue
			}
			// In a PID namespace of its own, so that when the process
			// ends (or is killed) the kernel kills everything it left
			// behind: sshd runs session commands under setsid(), out of
			// reach of a process-group kill, and they outlive a dropped
			// connection.
			cmd := exec.CommandContext(ctx, unshare,
				append([]string{"--pid", "--fork", "--kill-child", "--"}, argv...)...)
			cmd.Stdin, cmd.Stdout = f, f
			lw := &lineLogger{t: t, prefix: "sshd: "}
			cmd.Stderr = lw
			// Killing unshare kills its child (--kill-child), the PID
			// namespace's init, and with it the namespace.
			cmd.Cancel = func() error { return cmd.Process.Kill() }
			// A forked session holding stderr must not block Wait forever.
			cmd.WaitDelay = 2 * time.Second
			err = cmd.Start()
			f.Close()
			if err != nil {
				t.Logf("testnet: ServeInetd: start %s: %v", argv[0], err)
				continue
			}
			n.Add(1)
			wg.Add(1)
			go func() {
				defer wg.Done()
				_ = cmd.Wait() // sshd's exit status is in its log lines
				lw.flush()
			}()
		}
	}()
	t.Cleanup(func() {
		cancel()
		ln.Close()
		wg.Wait()
	})
	return func() int { return int(n.Load()) }
}

// lineLogger writes complete lines to the test log.
type lineLogger struct {
	t      testing.TB
	prefix string
	mu     sync.Mutex
	buf    []byte
}

func (l *lineLogger) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, p...)
	for {
		i := bytes.IndexByte(l.buf, '\n')
		if i < 0 {
			return len(p), nil
		}
		l.t.Log(l.prefix + strings.TrimRight(string(l.buf[:i]), "\r"))
		l.buf = l.buf[i+1:]
	}
}

func (l *lineLogger) flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.buf) > 0 {
		l.t.Log(l.prefix + string(l.buf))
		l.buf = nil
	}
}
