//go:build linux

package shim

import (
	"context"
	"net/netip"
	"os"

	"golang.org/x/sys/unix"

	"github.com/sshmd5/sshmd5/internal/knock"
	"github.com/sshmd5/sshmd5/internal/tcpsig"
)

// watchKnocks starts logging who knocks on the listeners without their
// key (internal/knock) and returns the function that stops it, which
// returns once its tracefs instance is removed.
func (s *server) watchKnocks(ctx context.Context) (stop func()) {
	if s.cfg.NoKnocks || len(s.lns) == 0 {
		return func() {}
	}
	cfg := knock.Config{Log: s.log, Tracefs: os.Getenv(knock.TracefsEnv)}
	for _, l := range s.lns {
		if sa, err := unix.Getsockname(l.sock.FD); err == nil {
			if ap := tcpsig.AddrPortOf(sa); ap.IsValid() {
				cfg.Listeners = append(cfg.Listeners, netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()))
			}
		}
	}
	// Systemd's sockets may come from another namespace than ours
	// (NetworkNamespacePath= on the .socket unit): ask the socket.
	c, err := knock.NetnsCookie(s.lns[0].sock.FD)
	if err != nil {
		s.log.Printf("knock: %v; not logging knocks", err)
		return func() {}
	}
	cfg.Cookie = c
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		knock.Watch(ctx, cfg)
	}()
	return func() { cancel(); <-done }
}
