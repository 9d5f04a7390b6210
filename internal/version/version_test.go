package version

import (
	"runtime/debug"
	"strings"
	"testing"
)

func TestFormat(t *testing.T) {
	vcs := &debug.BuildInfo{
		Main: debug.Module{Path: "github.com/sshmd5/sshmd5", Version: "v0.0.0-20261201103207-b5d55ea665e9+dirty"},
		Settings: []debug.BuildSetting{
			{Key: "vcs", Value: "git"},
			{Key: "vcs.revision", Value: "b5d55ea665e9de1ac7ab6cbc6de38b3d39416447"},
			{Key: "vcs.modified", Value: "true"},
		},
	}
	clean := &debug.BuildInfo{Main: vcs.Main, Settings: []debug.BuildSetting{vcs.Settings[1], {Key: "vcs.modified", Value: "false"}}}
	devel := &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}
	for _, c := range []struct {
		v    string
		bi   *debug.BuildInfo
		want string
	}{
		{"", vcs, "p v0.0.0-20261201103207-b5d55ea665e9+dirty (revision b5d55ea665e9de1ac7ab6cbc6de38b3d39416447, modified, go1.99 linux/amd64)\n"},
		{"1.2.3+git4.b5d55ea", clean, "p 1.2.3+git4.b5d55ea (revision b5d55ea665e9de1ac7ab6cbc6de38b3d39416447, go1.99 linux/amd64)\n"},
		{"1.2.3", devel, "p 1.2.3 (go1.99 linux/amd64)\n"},
		{"", devel, "p (devel) (go1.99 linux/amd64)\n"},
		{"", nil, "p (unknown) (go1.99 linux/amd64)\n"},
	} {
		if got := format("p", c.v, c.bi, "go1.99 linux/amd64"); got != c.want {
			t.Errorf("format(%q) = %q, want %q", c.v, got, c.want)
		}
	}
	if s := String("x"); !strings.HasPrefix(s, "x ") || !strings.Contains(s, "go1.") {
		t.Errorf("String = %q", s)
	}
}
