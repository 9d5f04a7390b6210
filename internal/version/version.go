// Package version says which build of sshmd5 is running, for --version:
// the version the build was stamped with, else what the Go toolchain
// recorded of the module and its git checkout.
package version

import (
	"runtime"
	"runtime/debug"
	"strings"
)

// Version is set at build time by make and packaging/build-deb, both
// from scripts/version:
//
//	go build -ldflags "-X github.com/sshmd5/sshmd5/internal/version.Version=1.2.3"
//
// Empty, the main module's version from the build info is used (a
// pseudo-version for "go install ...@v1.2.3", "(devel)" in a checkout).
var Version string

// String is the --version line of program prog: its version, then the
// git revision and whether the tree had uncommitted changes, when the Go
// toolchain recorded them (go build in a git checkout, unless
// -buildvcs=false), and the Go version.
func String(prog string) string {
	bi, _ := debug.ReadBuildInfo()
	return format(prog, Version, bi, runtime.Version()+" "+runtime.GOOS+"/"+runtime.GOARCH)
}

func format(prog, v string, bi *debug.BuildInfo, goVersion string) string {
	if v == "" && bi != nil {
		v = bi.Main.Version
	}
	if v == "" {
		v = "(unknown)"
	}
	var extra []string
	if bi != nil {
		var rev, modified string
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				modified = s.Value
			}
		}
		if rev != "" {
			extra = append(extra, "revision "+rev)
			if modified == "true" {
				extra = append(extra, "modified")
			}
		}
	}
	extra = append(extra, goVersion)
	return prog + " " + v + " (" + strings.Join(extra, ", ") + ")\n"
}
