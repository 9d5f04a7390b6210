//go:build linux

package md5

import (
	"net/netip"
	"reflect"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/sshmd5/sshmd5/internal/tcpsig"
)

// The kernel side (a VRF key read back as interface 0, then reconciled)
// needs CONFIG_NET_VRF and runs in the test guest: test/guest. This is the
// labeling alone, on a socket that carries no keys.
func TestWithInterfaces(t *testing.T) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	s := Socket{tcpsig.Socket{FD: fd, Family: unix.AF_INET, Takes4: true}}
	p := netip.MustParsePrefix("10.0.0.1/32")
	q := netip.MustParsePrefix("10.0.0.0/8")
	a, b := Secret("a"), Secret("b")

	if got := s.withInterfaces([]Key{{Prefix: p, Secret: a}}); got[0].Ifindex != 0 {
		t.Errorf("nothing recorded, yet labeled: %v", got)
	}
	s.noteInterfaceKey(Key{Prefix: p, Ifindex: 5, Secret: a}, a)
	have := []Key{{Prefix: p, Secret: a}, {Prefix: p, Secret: a}, {Prefix: p, Secret: b}, {Prefix: q, Secret: a}}
	want := []Key{{Prefix: p, Ifindex: 5, Secret: a}, {Prefix: p, Secret: a}, {Prefix: p, Secret: b}, {Prefix: q, Secret: a}}
	if got := s.withInterfaces(have); !reflect.DeepEqual(got, want) {
		t.Errorf("labeled\n%v\nwant\n%v", got, want)
	}
	if have[0].Ifindex != 0 {
		t.Error("withInterfaces changed its argument")
	}
	// A caller that knows the interfaces (the shim past MaxReadableKeys)
	// gets its list back as it was.
	if got := s.withInterfaces(want); !reflect.DeepEqual(got, want) {
		t.Errorf("exact list relabeled: %v", got)
	}
	s.noteInterfaceKey(Key{Prefix: p, Ifindex: 5}, nil)
	if got := s.withInterfaces(have); got[0].Ifindex != 0 {
		t.Errorf("deleted, yet labeled: %v", got)
	}
}
