//go:build linux

package ao

import (
	"errors"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// kernelHasAO asks the kernel directly, without this package: an empty
// struct tcp_ao_add is refused as invalid by a kernel with TCP-AO and as an
// unknown option (ENOPROTOOPT) by one without.
func kernelHasAO(t *testing.T) bool {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	err = unix.SetsockoptString(fd, unix.IPPROTO_TCP, optAddKey, string(make([]byte, sizeofAdd)))
	return !errors.Is(err, unix.ENOPROTOOPT)
}

// TestSupported: on the project's machines (CONFIG_TCP_AO not set) the
// error names the kernel option and the alternative; the guest tests
// (test/guest) check the nil case on a kernel that has it.
func TestSupported(t *testing.T) {
	err := Supported()
	if kernelHasAO(t) {
		if err != nil {
			t.Fatalf("Supported() = %v on a kernel that takes TCP_AO_ADD_KEY", err)
		}
		t.Log("this kernel has TCP-AO; Supported() = nil")
		return
	}
	if !errors.Is(err, ErrNoKernel) {
		t.Fatalf("Supported() = %v, want an error wrapping ErrNoKernel", err)
	}
	for _, s := range []string{"CONFIG_TCP_AO", "Linux 6.7+", "Ubuntu 24.04", "TCP-MD5 entry (key/key_file)"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("Supported() = %q, want it to name %q", err, s)
		}
	}
	t.Logf("Supported() = %v", err)
}

func TestReadCounters(t *testing.T) {
	p := t.TempDir() + "/netstat"
	os.WriteFile(p, []byte("TcpExt: SyncookiesSent TCPAORequired TCPAOBad TCPAOKeyNotFound TCPAOGood TCPAODroppedIcmps\nTcpExt: 1 2 3 4 5 6\nIpExt: A\nIpExt: 1\n"), 0o600)
	c, err := ReadCountersAt(p)
	if err != nil || c != (Counters{Required: 2, Bad: 3, KeyNotFound: 4, Good: 5, DroppedICMPs: 6}) {
		t.Fatalf("got %+v, %v", c, err)
	}
	if d := (Counters{Good: 7, Required: 3}).Sub(Counters{Good: 5, Required: 1}); d != (Counters{Good: 2, Required: 2}) {
		t.Errorf("Sub = %+v", d)
	}
	os.WriteFile(p, []byte("TcpExt: SyncookiesSent\nTcpExt: 1\n"), 0o600)
	if _, err := ReadCountersAt(p); err == nil || !strings.Contains(err.Error(), "TCPAO") {
		t.Errorf("netstat without TCPAO*: %v", err)
	}
	if _, err := ReadCounters(); err != nil {
		t.Fatal(err)
	}
}
