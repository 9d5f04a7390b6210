//go:build linux

package main

import (
	"testing"

	"github.com/sshmd5/sshmd5/internal/manpage"
)

// TestManPage holds man/ssh-md5-proxy.1.md to the usage texts (every
// option and subcommand they name is documented, the exit statuses
// agree) and man/ssh-md5-proxy.1 to its source.
func TestManPage(t *testing.T) {
	usages := []manpage.Usage{
		{Name: "ssh-md5-proxy", Text: usage},
		{Name: "ssh-md5-proxy keygen", Text: keygenUsage, Sub: "keygen"},
		{Name: "ssh-md5-proxy probe", Text: probeUsage, Sub: "probe"},
	}
	for _, p := range manpage.Review("../..", manpage.Pages[0], "ssh-md5-proxy", usages) {
		t.Error(p)
	}
}
