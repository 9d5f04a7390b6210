//go:build linux

package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io"

	"github.com/sshmd5/sshmd5/internal/cliflag"
	"github.com/sshmd5/sshmd5/internal/proxy"
)

const probeUsage = `Usage: ssh-md5-proxy probe [-k KEYRING] [-n ALIAS] [-t TIMEOUT] [-u TIMEOUT]
                           [--json] HOST [PORT]

Check a TCP-MD5 or TCP-AO SSH server: connect signed with the keyring's key
for HOST (time to connect, SSH banner, host key fingerprint, the key that
worked; it stops before any authentication), then connect to the same
address unsigned, which must get no answer, or be refused as by a closed
port (sshd-md5-socket in closed stealth mode). Nothing is sent beyond the
SSH key exchange.

    -k KEYRING    Keyring file, as for a connection.
    -n ALIAS      Look the key up by this alias before HOST.
    -t TIMEOUT    Bound on the signed connect and handshake. Default: 10s.
    -u TIMEOUT    How long the unsigned connect waits for no answer.
                  Default: 3s.
    --json        Print the result as JSON.
    -h            Print this help.
    PORT          Default: 22.

Exit status: 0 if both checks hold, 1 if one fails, 2 on a usage error,
255 on a keyring error or a key this kernel cannot sign with.
`

func runProbe(args []string, stdout, stderr io.Writer) int {
	flags := flag.NewFlagSet("ssh-md5-proxy probe", flag.ContinueOnError)
	flags.SetOutput(io.Discard)
	var (
		keyringPath, alias, timeoutStr, unsignedStr string
		asJSON                                      bool
	)
	flags.StringVar(&keyringPath, "k", "", "")
	flags.StringVar(&alias, "n", "", "")
	flags.StringVar(&timeoutStr, "t", "10s", "")
	flags.StringVar(&unsignedStr, "u", "3s", "")
	flags.BoolVar(&asJSON, "json", false, "")
	cliflag.Once(flags)
	usageErr := usageError(stderr, "probe")
	if err := flags.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			io.WriteString(stderr, probeUsage)
			return 0
		}
		return usageErr("%s", cliflag.Message(flags, err))
	}
	if flags.NArg() < 1 || flags.NArg() > 2 {
		return usageErr("want HOST [PORT], got %d argument(s)", flags.NArg())
	}
	host, port := flags.Arg(0), "22"
	if flags.NArg() == 2 {
		port = flags.Arg(1)
	}
	if host == "" || port == "" {
		return usageErr("HOST and PORT must not be empty")
	}
	// As for a connection: [fd00::1] is the address fd00::1.
	host, err := normHost(host)
	if err != nil {
		return usageErr("%v", err)
	}
	timeout, err := parseTimeout(timeoutStr)
	if err != nil {
		return usageErr("-t %s: %v", timeoutStr, err)
	}
	unsigned, err := parseTimeout(unsignedStr)
	if err != nil {
		return usageErr("-u %s: %v", unsignedStr, err)
	}
	kr, code := loadKeyring(keyringPath, stderr)
	if kr == nil {
		return code
	}
	h, ok := kr.Lookup(alias, host)
	if !ok {
		noKey(stderr, "probe: ", alias, host, kr)
		return 255
	}
	o := proxy.Options{
		Host:    host,
		Port:    port,
		Timeout: timeout,
		Keys:    h.DialKeys(),
		KeyName: "hosts." + tomlKey(h.Name),
	}
	// A key this system cannot sign with (TCP-AO on a kernel without
	// it) is not a finding about the server: nothing is sent.
	if err := proxy.Check(o); err != nil {
		errorf(stderr, "probe: %v", err)
		return 255
	}
	r := proxy.Probe(context.Background(), o, unsigned)
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.Encode(r)
	} else {
		io.WriteString(stdout, r.Text())
	}
	if !r.OK {
		return 1
	}
	return 0
}
