//go:build linux

package tcpsig

import (
	"fmt"
	"net"
	"os"
	"strings"
)

// The kernel's answers to a key it will not take mean the same for every
// backend; these word the two that need the system's state.

// ExplainOptmem is the fix for ENOMEM/ENOBUFS on a key: the socket's keys
// are charged to net.core.optmem_max.
func ExplainOptmem(err error) error {
	return fmt.Errorf("%w: the socket's keys exceed net.core.optmem_max (%s bytes); raise it, e.g. sysctl -w net.core.optmem_max=%d", err, optmemMax(), 4*optmemMaxInt())
}

// ExplainNotVRF is EINVAL on a key bound to interface ifindex.
func ExplainNotVRF(err error, ifindex int) error {
	return fmt.Errorf("%w: %s is not an L3 master device (VRF), the only kind a key can be bound to", err, IfaceName(ifindex))
}

// IfaceName names interface ifindex for messages: "interface lo (index
// 1)", or by its index alone once it is gone.
func IfaceName(ifindex int) string {
	if ifi, err := net.InterfaceByIndex(ifindex); err == nil {
		return fmt.Sprintf("interface %s (index %d)", ifi.Name, ifindex)
	}
	return fmt.Sprintf("interface index %d", ifindex)
}

func optmemMax() string {
	b, err := os.ReadFile("/proc/sys/net/core/optmem_max")
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(b))
}

func optmemMaxInt() int {
	var n int
	fmt.Sscan(optmemMax(), &n)
	if n <= 0 {
		n = 131072
	}
	return n
}
