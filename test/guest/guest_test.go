//go:build linux

// Package guest holds the tests that need the project's test kernel
// (scripts/testkernel: TCP-AO, VRF), which the machines' own kernels lack.
// TestMain runs them inside a qemu guest booted with that kernel; when the
// guest cannot run, the package fails with the reason.
package guest

import (
	"errors"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/sshmd5/sshmd5/internal/testnet"
)

func TestMain(m *testing.M) {
	testnet.GuestMain(m, "cmd/sshd-md5-socket", "cmd/ssh-md5-proxy")
}

// tcpAOAddKey is TCP_AO_ADD_KEY (include/uapi/linux/tcp.h); x/sys/unix
// does not have it yet.
const tcpAOAddKey = 38

// TestKernelHasTCPAO checks that the guest's kernel knows TCP-AO: an empty
// struct tcp_ao_add (288 bytes) is refused as invalid, not as an unknown
// option, which is what a kernel without CONFIG_TCP_AO says.
func TestKernelHasTCPAO(t *testing.T) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	err = unix.SetsockoptString(fd, unix.IPPROTO_TCP, tcpAOAddKey, string(make([]byte, 288)))
	if errors.Is(err, unix.ENOPROTOOPT) {
		t.Fatalf("setsockopt TCP_AO_ADD_KEY: %v: this kernel has no CONFIG_TCP_AO", err)
	}
	t.Logf("setsockopt TCP_AO_ADD_KEY with an empty key: %v (not ENOPROTOOPT: TCP-AO is there)", err)
}

// TestKernelHasVRF checks CONFIG_NET_VRF: a VRF device can be made.
func TestKernelHasVRF(t *testing.T) {
	ns := testnet.NewNS(t, "vrf")
	ns.Run(t, "ip", "link", "add", "vrf-x", "type", "vrf", "table", "10")
	ns.Run(t, "ip", "link", "set", "vrf-x", "up")
	t.Logf("%s", ns.Run(t, "ip", "-d", "link", "show", "vrf-x"))
}
