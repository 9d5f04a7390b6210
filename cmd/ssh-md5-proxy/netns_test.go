//go:build linux

package main

import (
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/sshmd5/sshmd5/internal/testnet"
)

// scriptNet is what the netns scripts' commands share: the script's
// namespace, its plain listeners and its running capture.
type scriptNet struct {
	t        testing.TB
	ns       *testnet.NS
	accepted atomic.Int64 // connections the plain listeners took
	capture  *testnet.Capture
}

// TestNetnsScripts runs testdata/netns/*.txtar, each in a fresh network
// namespace named $NS: what the command sends, or that it sends nothing,
// is checked by a capture there.
func TestNetnsScripts(t *testing.T) {
	testnet.RequireRoot(t)
	testscript.Run(t, testscript.Params{
		Dir: "testdata/netns",
		Setup: func(e *testscript.Env) error {
			tb := e.T().(testing.TB)
			n := &scriptNet{t: tb, ns: testnet.NewNS(tb, "proxy")}
			e.Setenv("NS", n.ns.Name)
			e.Setenv("HOME", e.WorkDir)
			e.Setenv("SSH_MD5_KEYRING", "")
			e.Values[scriptNetKey{}] = n
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"exits": testnet.ScriptExits,
			// plainlisten PORT: an unkeyed listener on 127.0.0.1:PORT in
			// $NS, which would take an unsigned connection; sent counts
			// what it accepts.
			"plainlisten": func(ts *testscript.TestScript, neg bool, args []string) {
				if neg || len(args) != 1 {
					ts.Fatalf("usage: plainlisten PORT")
				}
				n := netOf(ts)
				ln := n.ns.Listen(n.t, "tcp4", "127.0.0.1:"+args[0], nil)
				go func() {
					for {
						c, err := ln.Accept()
						if err != nil {
							return
						}
						n.accepted.Add(1)
						c.Close()
					}
				}()
			},
			// capture PORT: start tcpdump on $NS's lo for PORT.
			"capture": func(ts *testscript.TestScript, neg bool, args []string) {
				if neg || len(args) != 1 {
					ts.Fatalf("usage: capture PORT")
				}
				port, err := strconv.Atoi(args[0])
				ts.Check(err)
				n := netOf(ts)
				n.capture = n.ns.StartCapture(n.t, "lo", port)
			},
			// sent none|syns: stop the capture; none: it holds no segment
			// and no plain listener accepted anything; syns: it holds SYNs
			// (the control that shows the capture sees a dial).
			"sent": func(ts *testscript.TestScript, neg bool, args []string) {
				if neg || len(args) != 1 || (args[0] != "none" && args[0] != "syns") {
					ts.Fatalf("usage: sent none|syns")
				}
				n := netOf(ts)
				if n.capture == nil {
					ts.Fatalf("sent: no capture running")
				}
				st := n.capture.Stop(n.t, nil)
				n.capture = nil
				ts.Logf("capture: %v; plain listeners accepted %d", st, n.accepted.Load())
				switch {
				case args[0] == "none" && st.Segments != 0:
					ts.Fatalf("capture %v: want nothing sent", st)
				case args[0] == "none" && n.accepted.Load() != 0:
					ts.Fatalf("a plain listener accepted %d connection(s)", n.accepted.Load())
				case args[0] == "syns" && st.SYNs == 0:
					ts.Fatalf("capture %v: want SYNs", st)
				}
			},
		},
	})
}

type scriptNetKey struct{}

func netOf(ts *testscript.TestScript) *scriptNet {
	n, ok := ts.Value(scriptNetKey{}).(*scriptNet)
	if !ok {
		ts.Fatalf("no script network (Setup did not run)")
	}
	return n
}
