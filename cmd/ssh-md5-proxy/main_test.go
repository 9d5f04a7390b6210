//go:build linux

package main

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/sshmd5/sshmd5/internal/testnet"
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
			"exits":    testnet.ScriptExits,
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
