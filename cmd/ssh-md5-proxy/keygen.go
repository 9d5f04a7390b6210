//go:build linux

package main

import (
	"errors"
	"flag"
	"io"

	"github.com/sshmd5/sshmd5/internal/cliflag"
	"github.com/sshmd5/sshmd5/internal/proxy"
)

const keygenUsage = `Usage: ssh-md5-proxy keygen -o FILE [-n ALIAS]

Write a new random TCP-MD5 key (256 bits as 43 base64url characters) to
FILE with mode 0600, refusing to overwrite an existing file, and print the
keyring entries that use it: [hosts.ALIAS] for the client, [peers] catch-alls
for the server, which reads its copy from /etc/ssh/md5/. The key itself is
never printed.

    -o FILE    The key file to create (required: keys are not printed);
               its folder must exist.
    -n ALIAS   The client's [hosts] entry name (ssh's Host alias).
               Default: FILE's name less its extension (myserver for
               -o md5/myserver.key).
    -h         Print this help.

Exit status: 0 on success, 2 on a usage error, 255 on any other error.
`

func runKeygen(args []string, stdout, stderr io.Writer) int {
	flags := flag.NewFlagSet("ssh-md5-proxy keygen", flag.ContinueOnError)
	flags.SetOutput(io.Discard)
	var out, alias string
	flags.StringVar(&out, "o", "", "")
	flags.StringVar(&alias, "n", "", "")
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
	aliasSet := false
	flags.Visit(func(f *flag.Flag) { aliasSet = aliasSet || f.Name == "n" })
	if !aliasSet {
		alias = proxy.DefaultAlias(out)
	}
	if alias == "" {
		return usageErr("-n ALIAS must not be empty")
	}
	snip, err := proxy.Keygen(out, alias)
	if err != nil {
		errorf(stderr, "%v", err)
		return 255
	}
	io.WriteString(stdout, snip)
	return 0
}
