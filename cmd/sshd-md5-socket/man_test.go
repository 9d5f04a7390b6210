package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/sshmd5/sshmd5/internal/manpage"
)

// root is the repository root, from this package's directory.
const root = "../.."

// TestManPage holds man/sshd-md5-socket.8.md to the usage text: every
// option and subcommand it names is documented, and the exit statuses
// agree.
func TestManPage(t *testing.T) {
	const page = "man/sshd-md5-socket.8.md"
	src, err := os.ReadFile(filepath.Join(root, page))
	if err != nil {
		t.Fatal(err)
	}
	usages := []manpage.Usage{{Name: "sshd-md5-socket", Text: usage}}
	for _, p := range manpage.Problems(page, "sshd-md5-socket", src, usages) {
		t.Error(p)
	}
	if t.Failed() {
		t.Logf("edit %s, then run %q in the repository root", page, manpage.Regenerate)
	}
}

// TestManPageCurrent fails when man/sshd-md5-socket.8 is not what the
// generator makes of its source now.
func TestManPageCurrent(t *testing.T) {
	if err := manpage.Check(root, manpage.Pages[1]); err != nil {
		t.Error(err)
	}
}
