//go:build linux

package main

import (
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/sshmd5/sshmd5/internal/testnet"
)

// TestNetnsScripts runs testdata/netns/*.txtar, each in a fresh network
// namespace named $NS, so that status sees only the script's own shim.
func TestNetnsScripts(t *testing.T) {
	testnet.RequireRoot(t)
	testscript.Run(t, testscript.Params{
		Dir: "testdata/netns",
		Setup: func(e *testscript.Env) error {
			ns := testnet.NewNS(e.T().(testing.TB), "st")
			e.Setenv("NS", ns.Name)
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"exits": testnet.ScriptExits,
			// waitlisten PORT waits (up to 10s) until a TCP socket listens
			// on PORT in $NS.
			"waitlisten": func(ts *testscript.TestScript, neg bool, args []string) {
				if neg || len(args) != 1 {
					ts.Fatalf("usage: waitlisten PORT")
				}
				port, err := strconv.Atoi(args[0])
				ts.Check(err)
				want := fmt.Sprintf(":%04X 00000000:0000 0A", port)
				want6 := fmt.Sprintf(":%04X 00000000000000000000000000000000:0000 0A", port)
				for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
					out, err := exec.Command("ip", "netns", "exec", ts.Getenv("NS"), "cat", "/proc/net/tcp", "/proc/net/tcp6").Output()
					ts.Check(err)
					if strings.Contains(string(out), want) || strings.Contains(string(out), want6) {
						return
					}
				}
				ts.Fatalf("nothing listens on port %d in %s after 10s", port, ts.Getenv("NS"))
			},
		},
	})
}
