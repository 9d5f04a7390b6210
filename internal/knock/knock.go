//go:build linux

// Package knock reports who knocks on the shim's keyed ports without the
// key: peers whose segments the kernel dropped for a wrong TCP-MD5 (or
// TCP-AO) signature or for none. The kernel's counters say how many; its
// tracepoints (tcp:tcp_hash_md5_mismatch, tcp:tcp_hash_md5_required, ...)
// also say who. This package reads them from a tracefs instance of its own,
// filtered in the kernel to the shim's network namespace and ports, and
// writes few, stable log lines: one per source and minute at most, a
// bounded number per minute in all (man/sshd-md5-socket.8.md, KNOCKS).
//
// Without tracefs it falls back to the counters, and says so once.
// Nothing here can affect serving: every failure is a log line.
package knock

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log"
	"net/netip"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sshmd5/sshmd5/internal/tcpsig/md5"
)

// Defaults of Config.
const (
	DefaultInterval   = time.Minute
	DefaultMaxLines   = 20
	DefaultMaxSources = 4096
)

// Config says what to watch and how much to say.
type Config struct {
	// Listeners are the local addresses of the keyed listening sockets.
	// An unspecified address (0.0.0.0, ::) takes every local address of
	// its family (:: both). Their ports go into the kernel's filter.
	Listeners []netip.AddrPort
	// Cookie is the network namespace cookie of the listeners
	// (SO_NETNS_COOKIE, see NetnsCookie).
	Cookie uint64
	Log    *log.Logger
	// Tracefs is where tracefs is mounted; "" = DefaultTracefs.
	Tracefs string
	// Interval, MaxLines, MaxSources: 0 = the defaults above.
	Interval   time.Duration
	MaxLines   int // per-source lines per interval, in all
	MaxSources int // sources kept in memory
}

// NetnsCookie returns the cookie of the network namespace fd's socket is in,
// the one the tracepoints report as net=.
func NetnsCookie(fd int) (uint64, error) {
	c, err := unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_NETNS_COOKIE)
	if err != nil {
		return 0, fmt.Errorf("SO_NETNS_COOKIE: %w", err)
	}
	return c, nil
}

// Watch reports knocks until ctx is done, then logs what is still counted,
// removes its tracefs instance and returns.
func Watch(ctx context.Context, cfg Config) {
	if cfg.Tracefs == "" {
		cfg.Tracefs = DefaultTracefs
	}
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.MaxLines <= 0 {
		cfg.MaxLines = DefaultMaxLines
	}
	if cfg.MaxSources <= 0 {
		cfg.MaxSources = DefaultMaxSources
	}
	var ports []uint16
	for _, l := range cfg.Listeners {
		ports = append(ports, l.Port())
	}
	if len(ports) == 0 {
		return
	}
	in, err := openInstance(cfg.Tracefs, os.Getpid(), cfg.Cookie, ports)
	if err != nil {
		cfg.Log.Printf("knock: %v; counting knocks with the kernel's counters instead, without peer addresses", err)
		watchCounters(ctx, cfg)
		return
	}
	err = watchTrace(ctx, cfg, in)
	if rerr := in.remove(); rerr != nil {
		cfg.Log.Printf("knock: %v", rerr)
	}
	if err != nil {
		cfg.Log.Printf("knock: %v; counting knocks with the kernel's counters instead, without peer addresses", err)
		watchCounters(ctx, cfg)
	}
}

// watchTrace reads the instance's trace_pipe and aggregates. It returns an
// error only when the pipe fails before ctx is done.
func watchTrace(ctx context.Context, cfg Config, in *instance) error {
	fd, err := unix.Open(in.dir+"/trace_pipe", unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("opening %s/trace_pipe: %w", in.dir, err)
	}
	// Closed on return, before Watch removes the instance: an open
	// trace_pipe makes rmdir fail with EBUSY.
	defer unix.Close(fd)
	cfg.Log.Printf("knock: logging wrong-key and unsigned segments to %s from %s (tracefs instance %s)",
		listenerNames(cfg.Listeners), in.names(), in.dir)

	var mu sync.Mutex
	per := "per " + cfg.Interval.String()
	if cfg.Interval == time.Minute {
		per = "a minute"
	}
	agg := newAggregator(cfg.MaxLines, cfg.MaxSources, per, func(s string) { cfg.Log.Print(s) })
	match := matcher(cfg)
	readErr := make(chan error, 1)
	stop := make(chan struct{})
	go func() {
		readErr <- readPipe(fd, stop, func(ev Event, lost uint64) {
			mu.Lock()
			defer mu.Unlock()
			switch {
			case lost > 0:
				agg.addLost(lost)
			case match(ev):
				agg.add(ev)
			}
		})
	}()
	tick := time.NewTicker(cfg.Interval)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			mu.Lock()
			agg.tick()
			mu.Unlock()
		case err := <-readErr:
			mu.Lock()
			agg.tick()
			mu.Unlock()
			return err
		case <-ctx.Done():
			close(stop)
			<-readErr
			agg.tick()
			return nil
		}
	}
}

// readPipe reads trace_pipe until stop is closed, polling so that stop is
// seen within pollEvery. Under a flood it reads at most one page every
// floodPause: the kernel's buffer overflows instead, which costs nothing
// and is counted (the LOST lines), and the shim stays at a few percent of
// a CPU however fast the flood.
func readPipe(fd int, stop <-chan struct{}, fn func(Event, uint64)) error {
	const (
		pollEvery  = 200 * time.Millisecond
		floodPause = 10 * time.Millisecond
	)
	buf := make([]byte, 16<<10)
	var partial []byte
	for {
		select {
		case <-stop:
			return nil
		default:
		}
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		if _, err := unix.Poll(pfd, int(pollEvery/time.Millisecond)); err != nil && !errors.Is(err, unix.EINTR) {
			return fmt.Errorf("reading the trace: poll: %w", err)
		}
		n, err := unix.Read(fd, buf)
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) || (err == nil && n == 0) {
			// Nothing after all: never spin on a pipe that polls
			// ready and reads empty.
			time.Sleep(floodPause)
			continue
		}
		if err != nil {
			return fmt.Errorf("reading the trace: %w", err)
		}
		data := buf[:n]
		for len(data) > 0 {
			i := bytes.IndexByte(data, '\n')
			if i < 0 {
				if len(partial)+len(data) <= maxLine {
					partial = append(partial, data...)
				} else {
					partial = partial[:0] // hostile or garbled: drop
				}
				break
			}
			line := data[:i]
			if len(partial) > 0 {
				line = append(partial, line...)
				partial = partial[:0]
			}
			data = data[i+1:]
			if ev, lost, ok := parseLine(line); ok {
				fn(ev, lost)
			}
		}
		if n > len(buf)/8 {
			time.Sleep(floodPause)
		}
	}
}

// matcher keeps the events of our namespace to one of our listeners' local
// addresses. The kernel's filter has done namespace and port already; the
// address is checked here because a filter on it is not portable.
func matcher(cfg Config) func(Event) bool {
	return func(ev Event) bool {
		if ev.Cookie != cfg.Cookie {
			return false
		}
		for _, l := range cfg.Listeners {
			if l.Port() != ev.Dst.Port() {
				continue
			}
			la := l.Addr().Unmap()
			switch {
			case la == ev.Dst.Addr():
				return true
			case la.IsUnspecified() && la.Is6(): // [::]: both families
				return true
			case la.IsUnspecified() && la.Is4() == ev.Dst.Addr().Is4():
				return true
			}
		}
		return false
	}
}

func listenerNames(ls []netip.AddrPort) string {
	var b []byte
	for i, l := range ls {
		if i > 0 {
			b = append(b, ", "...)
		}
		b = append(b, l.String()...)
	}
	return string(b)
}

// watchCounters is the fallback: the namespace's TcpExt TCPMD5* counters,
// once per interval when they moved. They cover every port of the
// namespace, not only ours, and say nothing of who.
func watchCounters(ctx context.Context, cfg Config) {
	last, err := md5.ReadCounters()
	if err != nil {
		cfg.Log.Printf("knock: the kernel's counters cannot be read either (%v): no knocks will be reported", err)
		return
	}
	report := func() {
		c, err := md5.ReadCounters()
		if err != nil {
			return
		}
		d := c.Sub(last)
		last = c
		if d.NotFound+d.Failure+d.Unexpected == 0 {
			return
		}
		cfg.Log.Printf("knock: counters: %d unsigned and %d wrong-key segment(s) since the last report, all ports of this network namespace (no peer addresses)",
			d.NotFound, d.Failure+d.Unexpected)
	}
	tick := time.NewTicker(cfg.Interval)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			report()
		case <-ctx.Done():
			report()
			return
		}
	}
}
