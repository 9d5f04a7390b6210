//go:build bench && linux

package bench

import (
	"testing"

	"github.com/sshmd5/sshmd5/internal/testnet"
)

// startProc runs prog in ns (see testnet.Proc); secret is kept out of the
// output shown when the benchmark fails.
func startProc(b *testing.B, ns *testnet.NS, name string, secret []byte, prog string, args ...string) *testnet.Proc {
	b.Helper()
	p := ns.NewProc(prog, args...)
	p.Name = name
	p.Secrets = func() [][]byte { return [][]byte{secret} }
	return p.Start(b)
}

func redact(out, secret []byte) string { return testnet.Redact(out, secret) }
