//go:build linux

package testnet

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"testing"
	"time"
)

// Session is a long-running ssh session: ssh runs a loop on the server
// that echoes each line it reads back as "got LINE", so a test can check
// at any time that the session still carries data, or see it end.
type Session struct {
	Cmd    *os.Process
	Stderr *LockedBuffer // ssh's (and its ProxyCommand's) stderr
	in     io.WriteCloser
	lines  chan string
	exited chan struct{}
	err    error
}

// SessionCommand is the remote command a Session runs.
const SessionCommand = `while read l; do echo "got $l"; done`

// StartSession runs ssh with args (which end with the destination; the
// session's command is appended) in the namespace, and checks that the
// session answers within timeout. ssh is killed at cleanup.
func (ns *NS) StartSession(t testing.TB, args []string, timeout time.Duration) *Session {
	t.Helper()
	cmd := ns.Cmd("ssh", append(args, SessionCommand)...)
	// ProxyCommand runs through $SHELL.
	cmd.Env = append(os.Environ(), "SHELL=/bin/sh")
	s := &Session{Stderr: &LockedBuffer{}, lines: make(chan string, 100), exited: make(chan struct{})}
	cmd.Stderr = s.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	s.in = in
	cmd.WaitDelay = 2 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatalf("testnet: start ssh: %v", err)
	}
	s.Cmd = cmd.Process
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			s.lines <- sc.Text()
		}
		close(s.lines)
		s.err = cmd.Wait()
		close(s.exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-s.exited
	})
	if err := s.Echo("hello", timeout); err != nil {
		t.Fatalf("testnet: ssh session did not come up: %v; stderr:\n%s", err, s.Stderr)
	}
	return s
}

// Echo sends word through the session and waits for it to come back.
func (s *Session) Echo(word string, timeout time.Duration) error {
	if _, err := io.WriteString(s.in, word+"\n"); err != nil {
		return fmt.Errorf("write: %v", err)
	}
	select {
	case got, ok := <-s.lines:
		if !ok {
			return fmt.Errorf("session ended")
		}
		if got != "got "+word {
			return fmt.Errorf("session answered %q to %q", got, word)
		}
		return nil
	case <-time.After(timeout):
		return fmt.Errorf("no answer to %q within %v", word, timeout)
	}
}

// WaitExit waits for ssh to end; false if it is still running after
// limit.
func (s *Session) WaitExit(limit time.Duration) bool {
	select {
	case <-s.exited:
		return true
	case <-time.After(limit):
		return false
	}
}

// Exited reports whether ssh has ended.
func (s *Session) Exited() bool {
	select {
	case <-s.exited:
		return true
	default:
		return false
	}
}

// Err is ssh's exit error, once it has exited.
func (s *Session) Err() error {
	<-s.exited
	return s.err
}
