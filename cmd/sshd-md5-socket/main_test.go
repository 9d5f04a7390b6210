//go:build linux

package main

import (
	"net"
	"os"
	"strconv"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/sshmd5/sshmd5/internal/testnet"
)

func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"sshd-md5-socket": func() { os.Exit(Main()) },
	})
}

// TestUsageScripts: help, usage errors and their exit codes. They open no
// socket and read no key, so they need no root.
func TestUsageScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir:  "testdata/usage",
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){"exits": testnet.ScriptExits},
	})
}

// The scripts check what the command says and does before it serves
// anything: each reason to refuse to start.
func TestScripts(t *testing.T) {
	testnet.RequireRoot(t) // keying and reading keys back need root
	testscript.Run(t, testscript.Params{
		Dir: "testdata",
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"exits": testnet.ScriptExits,
			// holdport binds a loopback port and sets $PORT to it, so that
			// a script can show what "address in use" looks like.
			"holdport": func(ts *testscript.TestScript, neg bool, args []string) {
				ln, err := net.Listen("tcp4", "127.0.0.1:0")
				ts.Check(err)
				ts.Defer(func() { ln.Close() })
				ts.Setenv("PORT", strconv.Itoa(ln.Addr().(*net.TCPAddr).Port))
			},
		},
	})
}
