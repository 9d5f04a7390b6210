//go:build !linux

package main

import (
	"fmt"
	"io"
	"os"

	"github.com/sshmd5/sshmd5/internal/tcpsig"
	"github.com/sshmd5/sshmd5/internal/version"
)

// TCP-MD5 is a Linux kernel feature: elsewhere the command builds, so that
// a cross build of the module works, and says where to run it instead.
func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 1 && args[0] == "--version" {
		io.WriteString(stdout, version.String("sshd-md5-socket"))
		return 0
	}
	fmt.Fprintln(stderr, "sshd-md5-socket: "+tcpsig.ErrNeedsLinux.Error())
	return 1
}
