//go:build bench && linux

package bench

import (
	"fmt"
	"path/filepath"
	"testing"

	"github.com/sshmd5/sshmd5/internal/testnet"
)

const rotSection = "Login during a key rotation"

// BenchmarkLoginRotation times a login whose [hosts] entry lists two keys,
// the server's second (a client given the new key beside the old before
// the server switches: every login sends a SYN the server drops), against
// a login with the server's key alone, in both proxy modes over the veth.
// Same logins as BenchmarkLogin, against the same sshd-md5-socket (inetd
// mode).
func BenchmarkLoginRotation(b *testing.B) {
	e := lgNewEnv(b)
	rounds := lgRounds()
	newKey := filepath.Join(e.dir, "new.key")
	flWrite(b, newKey, testnet.NewSecret())
	twoKR := filepath.Join(e.dir, "client-two-keys.toml")
	testnet.Keyring{Hosts: []testnet.Entry{testnet.Host("*", newKey, filepath.Join(e.dir, "md5.key"))}}.Write(b, twoKR)

	proxyOpts := func(kr string, fdpass bool) []string {
		if fdpass {
			return []string{"-o", "ProxyCommand=" + e.proxy + " --fdpass -k " + kr + " %h %p", "-o", "ProxyUseFdpass=yes"}
		}
		return []string{"-o", "ProxyCommand=" + e.proxy + " -k " + kr + " %h %p"}
	}
	cases := []lgCase{
		{"proxy copy, 1 key", lgPortInetd, proxyOpts(e.clientKR, false), e.inetd},
		{"proxy copy, 2 keys (server has the 2nd)", lgPortInetd, proxyOpts(twoKR, false), e.inetd},
		{"proxy --fdpass, 1 key", lgPortInetd, proxyOpts(e.clientKR, true), e.inetd},
		{"proxy --fdpass, 2 keys (server has the 2nd)", lgPortInetd, proxyOpts(twoKR, true), e.inetd},
	}
	host := e.link.AddrA4.String()
	for _, c := range cases {
		e.warm(e.cli, host, c)
	}
	fns := make([]func() float64, len(cases))
	for i, c := range cases {
		fns[i] = func() float64 { return e.login(e.cli, host, c) }
	}
	samples := Alternate(b, rounds, fns...)
	e.check()
	for i, c := range cases {
		r := Result{Section: rotSection, Link: "veth", Case: c.name, Unit: "ms", Samples: samples[i]}
		if i%2 == 1 {
			r.Against = cases[i-1].name
		}
		Record(b, r)
	}
	SectionNote(rotSection, fmt.Sprintf("The logins of the login latency table (sftp subsystem, ed25519 key, sshd-md5-socket in inetd mode) over the veth, %d rounds, cases interleaved. The 2-key cases list a key the server does not have first and the server's key second, as a client does between being given the new key and the server's switch: the proxy dials with both at once, a socket each; the server drops the first one's SYN and answers the second.", rounds))
}
