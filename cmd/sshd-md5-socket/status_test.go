//go:build linux

package main

import (
	"strconv"
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
				ns := &testnet.NS{Name: ts.Getenv("NS")}
				ts.Check(ns.WaitListen(port, 10*time.Second, nil))
			},
		},
	})
}
