//go:build linux

package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/sshmd5/sshmd5/internal/cliflag"
	"github.com/sshmd5/sshmd5/internal/keyring"
	"github.com/sshmd5/sshmd5/internal/proxy"
	"github.com/sshmd5/sshmd5/internal/tcpsig"
)

const keygenUsage = `Usage: ssh-md5-proxy keygen -o FILE [-n ALIAS]
       ssh-md5-proxy keygen --ao -o FILE [-n ALIAS] --name NAME
                            --send-id N --recv-id N [--algorithm ALG]

Write a new random key (256 bits as 43 base64url characters) to FILE with
mode 0600, refusing to overwrite an existing file, and print the keyring
entries that use it and its fingerprint, never the key: [hosts.ALIAS] for
the client, [peers] catch-alls for the server, which reads its copy from
/etc/ssh/md5/ (TCP-MD5) or /etc/ssh/ao/ (TCP-AO, one key per user).

    -o FILE       The key file to create (required); its folder must exist.
    -n ALIAS      The client's [hosts] entry name (ssh's Host alias).
                  Default: FILE's name less its extension (myserver for
                  -o md5/myserver.key).
    --ao          Make a TCP-AO key (RFC 5925) for one user, NAME.
    --name NAME   Whose key it is, as the server logs it (--ao: required).
    --send-id N   The KeyIDs, 0 to 255, the client sends and expects; the
    --recv-id N   server's item has them mirrored (--ao: required).
    --algorithm ALG  hmac(sha256) (the default), hmac(sha1) or cmac(aes128).
    -h            Print this help.

Exit status: 0 on success, 2 on a usage error, 255 on any other error.
`

// keyID is a --send-id or --recv-id value.
type keyID struct {
	v   uint8
	set bool
}

func (k *keyID) String() string { return strconv.Itoa(int(k.v)) }

func (k *keyID) Set(s string) error {
	n, err := strconv.ParseUint(s, 10, 8)
	if err != nil {
		return errors.New("a KeyID is a number from 0 to 255")
	}
	k.v, k.set = uint8(n), true
	return nil
}

func runKeygen(args []string, stdout, stderr io.Writer) int {
	flags := flag.NewFlagSet("ssh-md5-proxy keygen", flag.ContinueOnError)
	flags.SetOutput(io.Discard)
	var out, alias, name, alg string
	var ao bool
	var sendID, recvID keyID
	flags.StringVar(&out, "o", "", "")
	flags.StringVar(&alias, "n", "", "")
	flags.BoolVar(&ao, "ao", false, "")
	flags.StringVar(&name, "name", "", "")
	flags.Var(&sendID, "send-id", "")
	flags.Var(&recvID, "recv-id", "")
	flags.StringVar(&alg, "algorithm", "", "")
	cliflag.Once(flags)
	usageErr := usageError(stderr, "keygen")
	if err := flags.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			io.WriteString(stderr, keygenUsage)
			return 0
		}
		return usageErr("%s", cliflag.Message(flags, err))
	}
	if flags.NArg() != 0 {
		return usageErr("unexpected argument %q; name the key file with -o FILE", flags.Arg(0))
	}
	if out == "" {
		return usageErr("pass -o FILE: the key is written to a file (mode 0600), never to the terminal")
	}
	set := map[string]bool{}
	flags.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if !set["n"] {
		alias = proxy.DefaultAlias(out)
	}
	if alias == "" {
		return usageErr("-n ALIAS must not be empty")
	}
	if !ao {
		for _, f := range []string{"name", "send-id", "recv-id", "algorithm"} {
			if set[f] {
				return usageErr("%s is for a TCP-AO key; add --ao, or drop it for a TCP-MD5 key", cliflag.Dash(f))
			}
		}
		snip, err := proxy.Keygen(out, alias)
		if err != nil {
			errorf(stderr, "%v", err)
			return 255
		}
		io.WriteString(stdout, snip)
		return 0
	}
	switch {
	case !set["name"]:
		return usageErr("--ao needs --name NAME: whose key it is, e.g. --name alice")
	case keyring.CheckAOName(name) != nil:
		// Not quoted, as the keyring does not: it might be anything.
		return usageErr("--name: not a short token; give 1 to 64 letters, digits, '.', '_', '@' or '-', e.g. --name alice")
	case !sendID.set || !recvID.set:
		return usageErr("--ao needs --send-id N and --recv-id N: KeyIDs that no other key of the server's [peers] entry uses, e.g. --send-id 1 --recv-id 101")
	case set["algorithm"] && !slices.Contains(tcpsig.AOAlgorithms, alg):
		return usageErr("--algorithm %q: not one the kernel offers; use %s", alg, strings.Join(tcpsig.AOAlgorithms, ", "))
	}
	snip, err := proxy.KeygenAO(out, alias, tcpsig.AO{Name: name, SendID: sendID.v, RecvID: recvID.v, Algorithm: alg})
	if err != nil {
		errorf(stderr, "%v", err)
		return 255
	}
	fmt.Fprint(stdout, snip)
	return 0
}
