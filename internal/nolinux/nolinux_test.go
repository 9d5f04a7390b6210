package nolinux

import (
	"bytes"
	"strings"
	"testing"
)

func TestSaysLinux(t *testing.T) {
	for _, args := range [][]string{nil, {"-h"}, {"host", "22"}, {"check"}, {"--version", "x"}} {
		var out, errb bytes.Buffer
		if code := Main("ssh-md5-proxy", args, &out, &errb); code != 1 {
			t.Errorf("%q: exit %d, want 1", args, code)
		}
		want := "ssh-md5-proxy: TCP-MD5 needs Linux; from macOS/Windows go through a Linux host: ProxyCommand ssh LINUXHOST ssh-md5-proxy %h %p (see README FAQ)\n"
		if errb.String() != want || out.Len() != 0 {
			t.Errorf("%q: stdout %q, stderr %q; want stderr %q", args, out.String(), errb.String(), want)
		}
	}
	var out, errb bytes.Buffer
	if code := Main("sshd-md5-socket", []string{"--version"}, &out, &errb); code != 0 || !strings.HasPrefix(out.String(), "sshd-md5-socket ") || errb.Len() != 0 {
		t.Errorf("--version: exit %d, stdout %q, stderr %q", code, out.String(), errb.String())
	}
}
