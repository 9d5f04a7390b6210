//go:build linux

package testnet

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sshmd5/sshmd5/internal/tcpsig"
	"github.com/sshmd5/sshmd5/internal/tcpsig/ao"
	"github.com/sshmd5/sshmd5/internal/tcpsig/md5"
)

// AOCounters are the TcpExt TCPAO* counters of one namespace: the
// kernel's own account of the TCP-AO segments it took and dropped.
type AOCounters struct {
	Good         uint64 // TCPAOGood: MAC verified
	Bad          uint64 // TCPAOBad: MAC wrong (a wrong secret)
	KeyNotFound  uint64 // TCPAOKeyNotFound: a KeyID no key of ours receives
	Required     uint64 // TCPAORequired: no TCP-AO option where one is required
	DroppedIcmps uint64 // TCPAODroppedIcmps
}

// Sub returns the increase from old to c.
func (c AOCounters) Sub(old AOCounters) AOCounters {
	return AOCounters{c.Good - old.Good, c.Bad - old.Bad, c.KeyNotFound - old.KeyNotFound,
		c.Required - old.Required, c.DroppedIcmps - old.DroppedIcmps}
}

func (c AOCounters) String() string {
	return fmt.Sprintf("TCPAOGood %d, TCPAOBad %d, TCPAOKeyNotFound %d, TCPAORequired %d, TCPAODroppedIcmps %d",
		c.Good, c.Bad, c.KeyNotFound, c.Required, c.DroppedIcmps)
}

// AOCounters reads the namespace's TCPAO* counters as seen from inside
// it. A kernel without CONFIG_TCP_AO has none, which fails the test.
func (ns *NS) AOCounters(t testing.TB) AOCounters {
	t.Helper()
	var ext map[string]uint64
	err := ns.Do(func() error {
		var err error
		// thread-self: see MD5Counters.
		ext, err = readTcpExt("/proc/thread-self/net/netstat")
		return err
	})
	if err != nil {
		t.Fatalf("testnet: TCP-AO counters of %s: %v", ns.Name, err)
	}
	var c AOCounters
	for name, p := range map[string]*uint64{
		"TCPAOGood": &c.Good, "TCPAOBad": &c.Bad, "TCPAOKeyNotFound": &c.KeyNotFound,
		"TCPAORequired": &c.Required, "TCPAODroppedIcmps": &c.DroppedIcmps,
	} {
		v, ok := ext[name]
		if !ok {
			t.Fatalf("testnet: %s has no TcpExt %s: a kernel without CONFIG_TCP_AO?", ns.Name, name)
		}
		*p = v
	}
	return c
}

// readTcpExt reads every TcpExt counter of a netstat file: a line of
// names, then a line of values.
func readTcpExt(path string) (map[string]uint64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var names []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 || fields[0] != "TcpExt:" {
			continue
		}
		if names == nil {
			names = fields[1:]
			continue
		}
		if len(fields)-1 != len(names) {
			return nil, fmt.Errorf("%s: %d TcpExt names but %d values", path, len(names), len(fields)-1)
		}
		out := make(map[string]uint64, len(names))
		for i, v := range fields[1:] {
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("%s: %s: %w", path, names[i], err)
			}
			out[names[i]] = n
		}
		return out, nil
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return nil, fmt.Errorf("%s: no TcpExt counters", path)
}

// DialKey connects to dst (host:port) from the namespace, signed with k:
// TCP-AO when k.AO is set, else TCP-MD5; nil dials unsigned. k's prefix
// is ignored (the key is set for the address dialled).
func (ns *NS) DialKey(dst string, k *tcpsig.Key, timeout time.Duration) (*net.TCPConn, error) {
	d := net.Dialer{Timeout: timeout}
	switch {
	case k == nil:
	case k.AO != nil:
		d.Control = ao.Backend.DialControl(*k)
	default:
		d.Control = md5.Backend.DialControl(*k)
	}
	var c net.Conn
	err := ns.Do(func() error {
		var err error
		c, err = d.Dial("tcp", dst)
		return err
	})
	if err != nil {
		return nil, err
	}
	return c.(*net.TCPConn), nil
}

// UnansweredKey is Unanswered for a key of either backend (nil:
// unsigned): nil when the SYN got no answer within timeout.
func (ns *NS) UnansweredKey(dst string, k *tcpsig.Key, timeout time.Duration) error {
	what := "unsigned"
	switch {
	case k == nil:
	case k.AO != nil:
		what = fmt.Sprintf("signed with TCP-AO key send_id %d, recv_id %d", k.AO.SendID, k.AO.RecvID)
	default:
		what = "signed with TCP-MD5"
	}
	c, err := ns.DialKey(dst, k, timeout)
	var ne net.Error
	switch {
	case err == nil:
		c.Close()
		return fmt.Errorf("dial %s (%s) was answered and connected; want no answer", dst, what)
	case errors.As(err, &ne) && ne.Timeout():
		return nil
	default:
		return fmt.Errorf("dial %s (%s): %v; want no answer (a timeout), not an error", dst, what, err)
	}
}
