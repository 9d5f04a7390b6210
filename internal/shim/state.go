//go:build linux

package shim

import (
	"os"
	"path/filepath"
	"strings"

	"github.com/coreos/go-systemd/v22/daemon"
)

// StateFile is where a start that failed leaves its reason, in the
// service's runtime directory (RuntimeDirectory=sshd-md5...), so that
// `sshd-md5-socket status` can say why the port is closed. It holds an
// error message, which never carries key material.
const StateFile = "startup-error"

// stateDir is this service's runtime directory: the entry of
// $RUNTIME_DIRECTORY named sshd-md5*, or "" outside such a unit.
func stateDir() string {
	for _, d := range strings.Split(os.Getenv("RUNTIME_DIRECTORY"), ":") {
		if strings.HasPrefix(filepath.Base(d), "sshd-md5") {
			return d
		}
	}
	return ""
}

// failed records why the shim did not start: for `systemctl status`
// (STATUS=) and for `sshd-md5-socket status` (StateFile). The journal
// gets the same text from the command's last line on stderr.
func (s *server) failed(err error) {
	msg := strings.ReplaceAll(err.Error(), "\n", "; ")
	if _, nerr := daemon.SdNotify(false, "STATUS=not serving, port closed: "+msg); nerr != nil {
		s.log.Printf("sd_notify: %v", nerr)
	}
	if d := stateDir(); d != "" {
		tmp := filepath.Join(d, StateFile+".tmp")
		if werr := os.WriteFile(tmp, []byte(msg+"\n"), 0o644); werr == nil {
			os.Rename(tmp, filepath.Join(d, StateFile))
		}
	}
}

// started clears what failed recorded.
func (s *server) started() {
	if d := stateDir(); d != "" {
		os.Remove(filepath.Join(d, StateFile))
	}
}
