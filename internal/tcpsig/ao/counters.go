//go:build linux

package ao

import (
	"fmt"

	"github.com/sshmd5/sshmd5/internal/tcpsig"
)

// Counters are the kernel's TCP-AO counters of the calling process's
// network namespace (TcpExt in /proc/net/netstat).
type Counters struct {
	Good         uint64 // segments whose MAC verified
	Bad          uint64 // segments whose MAC did not verify (wrong secret)
	KeyNotFound  uint64 // signed with a KeyID (or for a peer) we have no key for
	Required     uint64 // unsigned segments where TCP-AO was required (ao_required or a matching key)
	DroppedICMPs uint64 // ICMP errors ignored on TCP-AO connections (RFC 5925 7.8)
}

// Sub returns the increase from old to c.
func (c Counters) Sub(old Counters) Counters {
	return Counters{c.Good - old.Good, c.Bad - old.Bad, c.KeyNotFound - old.KeyNotFound, c.Required - old.Required, c.DroppedICMPs - old.DroppedICMPs}
}

// ReadCounters reads TcpExt TCPAO* from /proc/net/netstat.
func ReadCounters() (Counters, error) { return ReadCountersAt("/proc/net/netstat") }

// ReadCountersAt reads them from another netstat file, such as
// /proc/thread-self/net/netstat for a thread switched to another network
// namespace.
func ReadCountersAt(path string) (Counters, error) {
	m, err := tcpsig.ReadTcpExt(path)
	if err != nil {
		return Counters{}, err
	}
	var c Counters
	for name, p := range map[string]*uint64{
		"TCPAOGood":         &c.Good,
		"TCPAOBad":          &c.Bad,
		"TCPAOKeyNotFound":  &c.KeyNotFound,
		"TCPAORequired":     &c.Required,
		"TCPAODroppedIcmps": &c.DroppedICMPs,
	} {
		v, ok := m[name]
		if !ok {
			return Counters{}, fmt.Errorf("%s: no TcpExt %s counter (a kernel older than Linux 6.7?)", path, name)
		}
		*p = v
	}
	return c, nil
}
