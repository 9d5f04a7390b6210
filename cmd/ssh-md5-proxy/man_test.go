package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/sshmd5/sshmd5/internal/manpage"
)

// root is the repository root, from this package's directory.
const root = "../.."

// TestManPage holds man/ssh-md5-proxy.1.md to the usage texts: every
// option and subcommand they name is documented, and the exit statuses
// agree.
func TestManPage(t *testing.T) {
	const page = "man/ssh-md5-proxy.1.md"
	src, err := os.ReadFile(filepath.Join(root, page))
	if err != nil {
		t.Fatal(err)
	}
	usages := []manpage.Usage{
		{Name: "ssh-md5-proxy", Text: usage},
		{Name: "ssh-md5-proxy keygen", Text: keygenUsage, Sub: "keygen"},
		{Name: "ssh-md5-proxy probe", Text: probeUsage, Sub: "probe"},
	}
	for _, p := range manpage.Problems(page, "ssh-md5-proxy", src, usages) {
		t.Error(p)
	}
	if t.Failed() {
		t.Logf("edit %s, then run %q in the repository root", page, manpage.Regenerate)
	}
}

// TestManPageCurrent fails when man/ssh-md5-proxy.1 is not what the
// generator makes of its source now.
func TestManPageCurrent(t *testing.T) {
	if err := manpage.Check(root, manpage.Pages[0]); err != nil {
		t.Error(err)
	}
}
