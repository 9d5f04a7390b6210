//go:build linux

package testnet

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Prober is an unsigned client that keeps knocking on some addresses, the
// way a scanner would, while a test does other things: it dials each
// target in turn, unsigned, and counts what answered. A capture on its
// interface counts the SYN-ACKs independently of what the dials saw.
type Prober struct {
	ns      *NS
	targets []netip.AddrPort
	capture *Capture
	stop    chan struct{}
	done    sync.WaitGroup

	Attempts atomic.Int64 // dials made
	Answered atomic.Int64 // dials that completed a handshake: the port is open to unsigned peers
	Refused  atomic.Int64 // dials answered with a RST: the port is closed
}

// Probe limits: one dial every probeEvery, each given probeTimeout, and at
// most probeMax dials in all, so that a prober left running stops itself.
const (
	probeEvery   = 50 * time.Millisecond
	probeTimeout = 250 * time.Millisecond
	probeMax     = 40000
)

// StartProber captures port on iface in ns and starts dialling targets
// unsigned from ns until Stop.
func (ns *NS) StartProber(t testing.TB, iface string, port int, targets ...netip.AddrPort) *Prober {
	t.Helper()
	p := &Prober{ns: ns, targets: targets, stop: make(chan struct{})}
	p.capture = ns.StartCapture(t, iface, port)
	p.done.Add(1)
	go p.run()
	t.Cleanup(func() {
		select {
		case <-p.stop:
		default:
			close(p.stop)
			p.done.Wait()
		}
	})
	return p
}

func (p *Prober) run() {
	defer p.done.Done()
	tick := time.NewTicker(probeEvery)
	defer tick.Stop()
	for i := 0; i < probeMax; i++ {
		select {
		case <-p.stop:
			return
		case <-tick.C:
		}
		dst := p.targets[i%len(p.targets)]
		p.Attempts.Add(1)
		d := net.Dialer{Timeout: probeTimeout}
		err := p.ns.Do(func() error {
			c, err := d.Dial("tcp", dst.String())
			if err == nil {
				c.Close()
			}
			return err
		})
		switch {
		case err == nil:
			p.Answered.Add(1)
		case errors.Is(err, syscall.ECONNREFUSED):
			p.Refused.Add(1)
		}
	}
}

// Stop ends the probing and returns the capture's counts (the SYN-ACKs
// sent to the prober among them).
func (p *Prober) Stop(t testing.TB) CaptureStats {
	t.Helper()
	close(p.stop)
	p.done.Wait()
	return p.capture.Stop(t, nil)
}
