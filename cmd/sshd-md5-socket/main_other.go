//go:build !linux

package main

import (
	"os"

	"github.com/sshmd5/sshmd5/internal/nolinux"
)

// TCP-MD5 is a Linux kernel feature: elsewhere the command builds, so that
// a cross build of the module works, and says where to run it instead.
func main() { os.Exit(nolinux.Main("sshd-md5-socket", os.Args[1:], os.Stdout, os.Stderr)) }
