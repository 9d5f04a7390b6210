//go:build linux

package md5

import (
	"errors"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/sshmd5/sshmd5/internal/tcpsig"
)

// Diff is what Reconcile changed on a socket. Its keys carry no secrets.
type Diff = tcpsig.Diff

// Reconcile makes the socket carry exactly the keys in want that apply to
// it. It reads the present keys back from the kernel (keys put on a socket
// systemd holds survive restarts of the service), refuses a want that
// leaves a peer family uncovered, adds and replaces before it deletes so
// that no peer is ever left without a key, and on a kernel error puts the
// keys back as they were. Interface (VRF) keys, which the kernel reports
// without their interface, are matched to the ones this process set
// (see withInterfaces).
func (s Socket) Reconcile(want []Key) (Diff, error) {
	have, err := s.Keys()
	if err != nil {
		return Diff{}, err
	}
	return s.ReconcileFrom(have, want)
}

// ReconcileFrom is Reconcile for a caller that knows what the socket
// carries, for key sets too large for sock_diag to report.
func (s Socket) ReconcileFrom(have, want []Key) (Diff, error) {
	return tcpsig.Reconcile(Backend, s.Socket, have, want)
}

// Backend is TCP-MD5 as a tcpsig.Backend.
var Backend tcpsig.Backend = backend{}

type backend struct{}

func (backend) Name() string                             { return "TCP-MD5" }
func (backend) Keys(s tcpsig.Socket) ([]Key, error)      { return Socket{s}.Keys() }
func (backend) Set(s tcpsig.Socket, k Key) error         { return Socket{s}.Set(k) }
func (backend) Uncovered(s tcpsig.Socket, k []Key) error { return s.Uncovered(k) }
func (backend) Delete(s tcpsig.Socket, k Key) error      { return Socket{s}.Delete(k.Prefix, k.Ifindex) }
func (backend) DialControl(k Key) func(network, address string, c syscall.RawConn) error {
	return DialControl(k.Secret)
}

// Label: sock_diag reports interface keys without their interface (see
// withInterfaces).
func (backend) Label(s tcpsig.Socket, have []Key) []Key { return Socket{s}.withInterfaces(have) }

// Misreported: a reported key that cannot be deleted as interface 0 is one
// of want's interface keys, set by an earlier process (a socket systemd
// holds), when the socket carries no more keys for its prefix than want.
func (backend) Misreported(s tcpsig.Socket, stale Key, err error, want []Key) bool {
	return errors.Is(err, unix.ENOENT) && Socket{s}.reportedOnce(stale.Prefix, want)
}
