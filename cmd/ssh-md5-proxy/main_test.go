package main

import (
	"errors"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"
)

func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"ssh-md5-proxy": main,
	})
}

// TestScript runs testdata/*.txtar: usage, and every error the command
// reports before or instead of a connection, with its exit status.
func TestScript(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir: "testdata",
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"exits":    cmdExits,
			"checkkey": cmdCheckKey,
		},
		Setup: func(e *testscript.Env) error {
			// Keep the user's own keyring out of the tests.
			e.Setenv("HOME", e.WorkDir)
			e.Setenv("SSH_MD5_KEYRING", "")
			// txtar files are written 0644; keyrings must be 0600.
			for _, f := range []string{"keyring.toml", "bastion.key"} {
				p := e.WorkDir + "/" + f
				if _, err := os.Stat(p); err == nil {
					if err := os.Chmod(p, 0o600); err != nil {
						return err
					}
				}
			}
			return nil
		},
	})
}

// cmdExits runs "exits N command [args...]": command must exit with status
// N. testscript's "! exec" only tells zero from non-zero, and the status
// is part of the interface (2 usage, 255 like ssh).
func cmdExits(ts *testscript.TestScript, neg bool, args []string) {
	if neg {
		ts.Fatalf("usage: exits N command [args...] (no !)")
	}
	if len(args) < 2 {
		ts.Fatalf("usage: exits N command [args...]")
	}
	want, err := strconv.Atoi(args[0])
	if err != nil {
		ts.Fatalf("exits: bad status %q", args[0])
	}
	err = ts.Exec(args[1], args[2:]...)
	got := 0
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		got = ee.ExitCode()
	case err != nil:
		ts.Fatalf("exits: %v", err)
	}
	if got != want {
		ts.Fatalf("%s exited with status %d, want %d", args[1], got, want)
	}
}

var keyFormat = regexp.MustCompile(`^[A-Za-z0-9_-]{43}\n$`)

// cmdCheckKey runs "checkkey FILE": FILE is a key as keygen writes it
// (mode 0600, 43 base64url characters and a newline), and the last
// command printed no part of it.
func cmdCheckKey(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: checkkey FILE")
	}
	p := ts.MkAbs(args[0])
	fi, err := os.Stat(p)
	ts.Check(err)
	if perm := fi.Mode().Perm(); perm != 0o600 {
		ts.Fatalf("%s has mode %04o, want 0600", args[0], perm)
	}
	key := ts.ReadFile(args[0])
	if !keyFormat.MatchString(key) {
		ts.Fatalf("%s does not hold 43 base64url characters and a newline (%d bytes)", args[0], len(key))
	}
	key = strings.TrimSuffix(key, "\n")
	for _, out := range []string{"stdout", "stderr"} {
		// Any 8-character run of the key counts as a leak.
		text := ts.ReadFile(out)
		for i := 0; i+8 <= len(key); i++ {
			if strings.Contains(text, key[i:i+8]) {
				ts.Fatalf("%s shows part of the key", out)
			}
		}
	}
}
