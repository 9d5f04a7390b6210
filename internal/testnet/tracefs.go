//go:build linux

package testnet

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// Tracefs mounts a tracefs of its own for the test and returns its path;
// it is unmounted at cleanup. Every tracefs mount shows the same kernel
// tracing state (events, instances), so this is the real thing, reachable
// from programs run with NS.Cmd: "ip netns exec" mounts a fresh /sys in
// their mount namespace, without /sys/kernel/tracing, but the mount made
// here is copied in.
//
// The test fails unless the kernel has the TCP-MD5 tracepoints
// (tcp:tcp_hash_md5_mismatch and tcp:tcp_hash_md5_required, Linux 6.7+).
func Tracefs(t testing.TB) string {
	t.Helper()
	RequireRoot(t)
	dir := filepath.Join(t.TempDir(), "tracefs")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tracefs", "nodev", dir).CombinedOutput(); err != nil {
		t.Fatalf("testnet: mount -t tracefs nodev %s: %v: %s (the kernel needs CONFIG_FTRACE)", dir, err, out)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Errorf("testnet: umount %s: %v", dir, err)
		}
	})
	for _, ev := range []string{"tcp_hash_md5_mismatch", "tcp_hash_md5_required"} {
		if _, err := os.Stat(filepath.Join(dir, "events", "tcp", ev, "format")); err != nil {
			t.Fatalf("testnet: this kernel has no tcp:%s tracepoint (%v): the knock log needs Linux 6.7+ with CONFIG_TCP_MD5SIG", ev, err)
		}
	}
	return dir
}
