//go:build linux

package testnet

import (
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/sshmd5/sshmd5/internal/tcpsig"
	"github.com/sshmd5/sshmd5/internal/tcpsig/ao"
	"github.com/sshmd5/sshmd5/internal/tcpsig/md5"
)

// AOCounters are the TcpExt TCPAO* counters of one namespace: the
// kernel's own account of the TCP-AO segments it took and dropped.
type AOCounters = ao.Counters

// AOCounters reads the namespace's TCPAO* counters as seen from inside
// it. A kernel without TCP-AO has none, which fails the test.
func (ns *NS) AOCounters(t testing.TB) AOCounters {
	t.Helper()
	var c AOCounters
	err := ns.Do(func() error {
		// thread-self: see MD5Counters.
		var err error
		c, err = ao.ReadCountersAt("/proc/thread-self/net/netstat")
		return err
	})
	if err != nil {
		t.Fatalf("testnet: TCP-AO counters of %s: %v", ns.Name, err)
	}
	return c
}

// DialKey connects to dst (host:port) from the namespace, signed with k:
// TCP-AO when k.AO is set, else TCP-MD5; nil dials unsigned. k's prefix
// is ignored (the key is set for the address dialled).
func (ns *NS) DialKey(dst string, k *tcpsig.Key, timeout time.Duration) (*net.TCPConn, error) {
	d := net.Dialer{Timeout: timeout}
	d.SetMultipathTCP(false) // neither TCP-MD5 nor TCP-AO works on MPTCP
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
