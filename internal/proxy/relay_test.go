//go:build linux

package proxy

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sshmd5/sshmd5/internal/tcpsig/md5"
	"github.com/sshmd5/sshmd5/internal/testnet"
)

// pipePair returns a pipe as ssh gives it to a ProxyCommand (blocking, so
// Go's poller cannot wait on it) or as os.Pipe makes it (non-blocking,
// in the poller).
func pipePair(t *testing.T, blocking bool) (r, w *os.File) {
	t.Helper()
	if !blocking {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close(); w.Close() })
		return r, w
	}
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	r, w = os.NewFile(uintptr(p[0]), "pipe-r"), os.NewFile(uintptr(p[1]), "pipe-w")
	t.Cleanup(func() { r.Close(); w.Close() })
	return r, w
}

// pipeMode names a pipePair kind, for subtest names.
func pipeMode(blocking bool) string {
	if blocking {
		return "blocking"
	}
	return "nonblocking"
}

// relayServer accepts one connection on ln, reads it to EOF, hashing what
// it got, then sends down bytes of data and closes; the hash goes to got.
func relayServer(ln net.Listener, down []byte, got chan<- string) {
	c, err := ln.Accept()
	if err != nil {
		got <- "accept: " + err.Error()
		return
	}
	defer c.Close()
	h := sha256.New()
	if _, err := io.Copy(h, c); err != nil {
		got <- "read: " + err.Error()
		return
	}
	got <- fmt.Sprintf("%x", h.Sum(nil))
	c.Write(down)
}

// TestCopySplices pins that Copy moves both directions between ssh's
// pipes and the socket with splice(2), not through user space: every byte
// is counted by the splice paths, for blocking pipes (what ssh passes) and
// for non-blocking ones.
func TestCopySplices(t *testing.T) {
	for _, blocking := range []bool{true, false} {
		t.Run(pipeMode(blocking), func(t *testing.T) {
			ns, ln := keyedListener(t, md5.Secret(testSecret))
			up, down := make([]byte, 4<<20+123), make([]byte, 3<<20+45)
			rand.Read(up)
			rand.Read(down)
			got := make(chan string, 1)
			go relayServer(ln, down, got)
			conn := dialTestKey(t, ns, ln)
			inR, inW := pipePair(t, blocking)
			outR, outW := pipePair(t, blocking)
			up0, down0 := spliceStats.up.Load(), spliceStats.down.Load()
			go func() {
				inW.Write(up)
				inW.Close()
			}()
			var out bytes.Buffer
			readDone := make(chan error, 1)
			go func() {
				_, err := io.Copy(&out, outR)
				readDone <- err
			}()
			done := make(chan error, 1)
			go func() { done <- Copy(conn, inR, outW) }()
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("Copy: %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Fatal("Copy did not return within 30s")
			}
			outW.Close()
			if err := <-readDone; err != nil {
				t.Fatalf("reading stdout: %v", err)
			}
			if h := <-got; h != fmt.Sprintf("%x", sha256.Sum256(up)) {
				t.Errorf("server got %s, want the sha256 of what we sent", h)
			}
			if !bytes.Equal(out.Bytes(), down) {
				t.Errorf("stdout got %d bytes, not the %d the server sent", out.Len(), len(down))
			}
			if n := spliceStats.up.Load() - up0; n != int64(len(up)) {
				t.Errorf("stdin->socket: %d of %d bytes spliced", n, len(up))
			}
			if n := spliceStats.down.Load() - down0; n != int64(len(down)) {
				t.Errorf("socket->stdout: %d of %d bytes spliced", n, len(down))
			}
		})
	}
}

// TestCopyFullPipeNoSpin: while ssh does not read (stdout full) the relay
// must sleep, not retry splice on EAGAIN in a loop (which io.Copy's
// splice does with a blocking pipe, burning a CPU). The same for an
// empty stdin.
func TestCopyFullPipeNoSpin(t *testing.T) {
	for _, blocking := range []bool{true, false} {
		t.Run(pipeMode(blocking), func(t *testing.T) {
			ns, ln := keyedListener(t, md5.Secret(testSecret))
			down := make([]byte, 8<<20)
			serveOne(ln, func(c net.Conn) {
				c.Write(down) // far more than the pipe and socket buffers hold
			})
			conn := dialTestKey(t, ns, ln)
			inR, inW := pipePair(t, blocking) // stays open and empty: ssh has nothing to say
			outR, outW := pipePair(t, blocking)
			done := make(chan error, 1)
			go func() { done <- Copy(conn, inR, outW) }()
			// Wait until the pipe is full and the relay has settled.
			time.Sleep(200 * time.Millisecond)
			calls := spliceStats.calls.Load()
			time.Sleep(300 * time.Millisecond)
			if n := spliceStats.calls.Load() - calls; n > 20 {
				t.Errorf("%d splice calls while stdout was full and stdin empty: the relay spins", n)
			}
			n, err := io.CopyN(io.Discard, outR, int64(len(down)))
			if err != nil {
				t.Errorf("read %d bytes from stdout (%v), want %d", n, err, len(down))
			}
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Copy: %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Fatal("Copy did not return within 30s of the server closing")
			}
			inW.Close()
		})
	}
}

// TestCopyLongUploadNoStall: a long upload that the server never answers
// (scp or sftp put of a big file) must not stall. ssh writes stdin in
// uneven bursts, so the pipe runs empty between them while the socket's
// send buffer fills and drains; a relay that mistakes one condition for
// the other waits for a wake-up that never comes. Over a veth, TCP-MD5
// segments leave one at a time, paced, which is where Linux refuses
// spliced sends on a writable socket. A deadline far beyond the copy's
// time catches a stall.
func TestCopyLongUploadNoStall(t *testing.T) {
	for _, link := range []struct {
		name string
		size int64
	}{{"loopback", 1 << 30}, {"veth", 256 << 20}} {
		for _, blocking := range []bool{true, false} {
			name := link.name + "/" + pipeMode(blocking)
			t.Run(name, func(t *testing.T) {
				size := link.size
				if testing.Short() {
					size = 32 << 20
				}
				srv := testnet.NewNS(t, "relay-srv")
				cli, addr := srv, netip.MustParseAddr("127.0.0.1")
				if link.name == "veth" {
					cli = testnet.NewNS(t, "relay-cli")
					addr = testnet.Connect(t, srv, cli).AddrA4
				}
				ln := keyedListenerAt(t, srv, addr, md5.Secret(testSecret))
				got := make(chan int64, 1)
				go func() {
					c, err := ln.Accept()
					if err != nil {
						got <- -1
						return
					}
					defer c.Close()
					n, _ := io.Copy(io.Discard, c)
					got <- n
				}()
				conn := dialTestKey(t, cli, ln)
				inR, inW := pipePair(t, blocking)
				_, outW := pipePair(t, blocking)
				go func() {
					buf := make([]byte, 256<<10)
					var seed [1]byte
					for sent := int64(0); sent < size; {
						rand.Read(seed[:])
						n := min(int64(1+int(seed[0])*1000), size-sent)
						if _, err := inW.Write(buf[:n]); err != nil {
							return
						}
						sent += n
					}
					inW.Close()
				}()
				done := make(chan error, 1)
				go func() { done <- Copy(conn, inR, outW) }()
				limit := 3 * time.Minute
				select {
				case err := <-done:
					if err != nil {
						t.Fatalf("Copy: %v", err)
					}
				case <-time.After(limit):
					conn.Close()
					t.Fatalf("the upload stalled: Copy still running after %v", limit)
				}
				if n := <-got; n != size {
					t.Errorf("the server got %d bytes, want %d", n, size)
				}
			})
		}
	}
}

// TestCopyStdoutClosedIsQuiet: ssh closes the proxy's stdout when its
// session ends, sometimes while the server still sends (a last channel
// message). The relay must end without an error, which ssh would print
// on the user's terminal after every logout.
func TestCopyStdoutClosedIsQuiet(t *testing.T) {
	for _, blocking := range []bool{true, false} {
		t.Run(pipeMode(blocking), func(t *testing.T) {
			ns, ln := keyedListener(t, md5.Secret(testSecret))
			serveOne(ln, func(c net.Conn) {
				buf := make([]byte, 64<<10)
				for {
					if _, err := c.Write(buf); err != nil {
						return
					}
				}
			})
			conn := dialTestKey(t, ns, ln)
			inR, _ := pipePair(t, blocking)
			outR, outW := pipePair(t, blocking)
			done := make(chan error, 1)
			go func() { done <- Copy(conn, inR, outW) }()
			if _, err := io.CopyN(io.Discard, outR, 1<<20); err != nil {
				t.Fatalf("reading stdout: %v", err)
			}
			outR.Close() // ssh is gone
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Copy after ssh closed stdout: %v, want nil", err)
				}
			case <-time.After(30 * time.Second):
				t.Fatal("Copy did not return within 30s of stdout closing")
			}
		})
	}
}

// TestCopyGrowsPipes: the relay asks for 1 MiB pipes, so that one splice
// moves up to that much instead of 64 KiB.
func TestCopyGrowsPipes(t *testing.T) {
	ns, ln := keyedListener(t, md5.Secret(testSecret))
	serveOne(ln, func(c net.Conn) { io.Copy(io.Discard, c) })
	conn := dialTestKey(t, ns, ln)
	inR, inW := pipePair(t, true)
	_, outW := pipePair(t, true)
	inW.Write([]byte("x"))
	inW.Close()
	if err := Copy(conn, inR, outW); err != nil {
		t.Fatalf("Copy: %v", err)
	}
	for _, f := range []*os.File{inR, outW} {
		n, err := unix.FcntlInt(f.Fd(), unix.F_GETPIPE_SZ, 0)
		if err != nil {
			t.Fatal(err)
		}
		if n != spliceMax {
			t.Errorf("%s: pipe size %d, want %d", f.Name(), n, spliceMax)
		}
	}
}

// TestCopyEOFWithFullPipe: the server sends exactly what stdout's pipe
// holds and closes. The relay moves it all into the pipe, so the socket
// has no bytes left but its FIN, and the next splice fails with EAGAIN for
// the full pipe. Waiting for the socket to become readable then would wait
// forever (its readiness was reported, and consumed, with the FIN); the
// relay must wait for room in the pipe and then see the EOF.
func TestCopyEOFWithFullPipe(t *testing.T) {
	for _, blocking := range []bool{true, false} {
		t.Run(pipeMode(blocking), func(t *testing.T) {
			ns, ln := keyedListener(t, md5.Secret(testSecret))
			down := make([]byte, spliceMax) // what pipeFD asks the pipe to hold
			serveOne(ln, func(c net.Conn) {
				c.Write(down)
			})
			conn := dialTestKey(t, ns, ln)
			inR, inW := pipePair(t, blocking)
			defer inW.Close()
			outR, outW := pipePair(t, blocking)
			done := make(chan error, 1)
			go func() { done <- Copy(conn, inR, outW) }()
			// Let the data and the FIN arrive and the pipe fill before
			// anything reads it.
			time.Sleep(500 * time.Millisecond)
			if n, err := io.CopyN(io.Discard, outR, int64(len(down))); err != nil {
				t.Fatalf("read %d bytes from stdout (%v), want %d", n, err, len(down))
			}
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Copy: %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("Copy did not return within 10s of the server closing: it waits for the socket, not for room in the pipe")
			}
		})
	}
}
