// Package nolinux is the whole of each command on a system without
// TCP-MD5: it says so and where to run the command instead. It builds
// everywhere, so that its test runs on Linux too.
package nolinux

import (
	"fmt"
	"io"

	"github.com/sshmd5/sshmd5/internal/tcpsig"
	"github.com/sshmd5/sshmd5/internal/version"
)

// Main runs command prog with args: --version answers, anything else
// gets tcpsig.ErrNeedsLinux and exit status 1.
func Main(prog string, args []string, stdout, stderr io.Writer) int {
	if len(args) == 1 && args[0] == "--version" {
		io.WriteString(stdout, version.String(prog))
		return 0
	}
	fmt.Fprintf(stderr, "%s: %v\n", prog, tcpsig.ErrNeedsLinux)
	return 1
}
