//go:build linux

// Package ao is TCP-AO (RFC 5925, Linux 6.7+ with CONFIG_TCP_AO) as a
// tcpsig.Backend: the kernel's TCP_AO_ADD_KEY, TCP_AO_DEL_KEY,
// TCP_AO_GET_KEYS and TCP_AO_INFO socket options, whose structs x/sys/unix
// does not have yet and which are written out here, pinned by a layout
// test.
//
// A listener holds many keys for one prefix, one per user, told apart by
// RecvID; it is sealed with ao_required, so a segment without TCP-AO is
// dropped whatever the peer's address and no catch-all key is needed.
package ao

import (
	"errors"
	"syscall"

	"github.com/sshmd5/sshmd5/internal/tcpsig"
)

// Backend is TCP-AO as a tcpsig.Backend; it is a tcpsig.Sealer too.
var Backend interface {
	tcpsig.Backend
	tcpsig.Sealer
} = backend{}

// ErrNoKernel means the running kernel has no TCP-AO. Supported wraps it
// with the remedy.
var ErrNoKernel = errors.New("this kernel has no TCP-AO (CONFIG_TCP_AO, Linux 6.7 or later)")

var errTODO = errors.New("ao: not implemented yet")

// Supported is nil when the running kernel has TCP-AO, else an error
// wrapping ErrNoKernel that names the remedy: a TCP-MD5 entry instead, or
// a kernel built with CONFIG_TCP_AO (Ubuntu 24.04's has it).
func Supported() error { return errTODO }

// Current names the key that signs an established connection (an
// accepted or a connected socket): the SendID and RecvID of its current
// key, the one the peer's SYN chose.
func Current(fd int) (sendID, recvID uint8, err error) { return 0, 0, errTODO }

type backend struct{}

func (backend) Name() string                                    { return "TCP-AO" }
func (backend) Keys(s tcpsig.Socket) ([]tcpsig.Key, error)      { return nil, errTODO }
func (backend) Set(s tcpsig.Socket, k tcpsig.Key) error         { return errTODO }
func (backend) Delete(s tcpsig.Socket, k tcpsig.Key) error      { return errTODO }
func (backend) Uncovered(s tcpsig.Socket, k []tcpsig.Key) error { return errTODO }
func (backend) Seal(s tcpsig.Socket) error                      { return errTODO }
func (backend) DialControl(k tcpsig.Key) func(network, address string, c syscall.RawConn) error {
	return func(string, string, syscall.RawConn) error { return errTODO }
}
