//go:build ignore

// gen.go generates the man pages from their go-md2man markdown sources.
// Run it from the repository root after editing a source, and commit both:
//
//	go run man/gen.go
//
// (or "make man"). The tests in cmd/ssh-md5-proxy and cmd/sshd-md5-socket
// fail while a generated page is out of date.
package main

import (
	"fmt"
	"os"

	"github.com/sshmd5/sshmd5/internal/manpage"
)

func main() {
	for _, p := range manpage.Pages {
		src, err := os.ReadFile(p.Source)
		if err != nil {
			fmt.Fprintf(os.Stderr, "man/gen.go: %v (run it from the repository root)\n", err)
			os.Exit(1)
		}
		if err := os.WriteFile(p.Output, manpage.Render(src), 0o644); err != nil {
			fmt.Fprintf(os.Stderr, "man/gen.go: %v\n", err)
			os.Exit(1)
		}
	}
}
