//go:build linux

package md5

import (
	"fmt"

	"github.com/sshmd5/sshmd5/internal/tcpsig"
)

// Counters are the kernel's TCP-MD5 drop counters of the calling process's
// network namespace.
type Counters struct {
	NotFound   uint64 // unsigned segment where a key was expected
	Failure    uint64 // signed with the wrong key
	Unexpected uint64 // signed segment where no key was expected
}

// Sub returns the increase from old to c.
func (c Counters) Sub(old Counters) Counters {
	return Counters{c.NotFound - old.NotFound, c.Failure - old.Failure, c.Unexpected - old.Unexpected}
}

// ReadCounters reads TcpExt TCPMD5* from /proc/net/netstat.
func ReadCounters() (Counters, error) {
	return ReadCountersAt("/proc/net/netstat")
}

// ReadCountersAt reads them from a netstat file of another place, such as
// /proc/thread-self/net/netstat for a thread switched to another network
// namespace.
func ReadCountersAt(path string) (Counters, error) {
	m, err := tcpsig.ReadTcpExt(path)
	if err != nil {
		return Counters{}, err
	}
	var c Counters
	for name, p := range map[string]*uint64{
		"TCPMD5NotFound":   &c.NotFound,
		"TCPMD5Failure":    &c.Failure,
		"TCPMD5Unexpected": &c.Unexpected,
	} {
		v, ok := m[name]
		if !ok {
			return Counters{}, fmt.Errorf("%s: no TcpExt TCPMD5* counters (a kernel without CONFIG_TCP_MD5SIG?)", path)
		}
		*p = v
	}
	return c, nil
}
