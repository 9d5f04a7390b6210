//go:build linux

package main

import (
	"testing"

	"github.com/sshmd5/sshmd5/internal/manpage"
)

// TestManPage holds man/sshd-md5-socket.8.md to the usage texts (every
// option and subcommand it names is documented, the exit statuses agree)
// and man/sshd-md5-socket.8 to its source.
func TestManPage(t *testing.T) {
	usages := []manpage.Usage{
		{Name: "sshd-md5-socket", Text: usage},
		{Name: "sshd-md5-socket check", Text: checkUsage, Sub: "check"},
		{Name: "sshd-md5-socket status", Text: statusUsage, Sub: "status"},
	}
	for _, p := range manpage.Review("../..", manpage.Pages[1], "sshd-md5-socket", usages) {
		t.Error(p)
	}
}
