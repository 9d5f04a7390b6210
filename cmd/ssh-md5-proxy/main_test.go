package main

import (
	"errors"
	"os"
	"os/exec"
	"strconv"
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
			"exits": cmdExits,
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
