//go:build linux

// Package systemd_test boots a real Debian systemd in a container with the
// units of contrib/systemd installed and checks, from a second network
// namespace, what a TCP-MD5 client and an unsigned client get.
//
// The Debian root is built with debootstrap from the Debian mirror
// configured in this machine's apt sources, once per machine: it is kept
// in SYSTEMD_ROOTFS_CACHE (default /var/cache/sshmd5) under a name hashed
// from the suite, the package list and the mirror. Or point SMD_ROOTFS at
// a complete root built the same way:
//
//	debootstrap --variant=minbase \
//	    --include=systemd,systemd-sysv,dbus,openssh-server,iproute2 \
//	    bookworm /var/tmp/smd-rootfs-dev http://deb.debian.org/debian
//	SMD_ROOTFS=/var/tmp/smd-rootfs-dev go test ./test/systemd/
//
// The root is never written to: each test boots an overlay of it whose
// upper layer lives in the test's temp dir.
//
// Requirements (the test fails, not skips, without them): root,
// debootstrap, systemd-nspawn (systemd-container), nsenter, ip, ssh,
// ssh-keygen, systemctl, overlayfs; for TestPackage and
// TestMigrationWalkthrough also git and gzip (packaging/build-deb builds
// the .deb, once per run, fetching nfpm through the Go module proxy).
package systemd_test

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sshmd5/sshmd5/internal/tcpsig/md5"
	"github.com/sshmd5/sshmd5/internal/testnet"
)

func TestMain(m *testing.M) {
	code := m.Run()
	rootfsMu.Lock()
	if rootfsBuilt != "" {
		os.RemoveAll(rootfsBuilt)
	}
	rootfsMu.Unlock()
	removeDebDir() // package_test.go
	os.Exit(code)
}

var (
	rootfsMu    sync.Mutex
	rootfsPath  string // complete root, built or from SMD_ROOTFS
	rootfsBuilt string // a half-built root of this run, removed by TestMain
	rootfsErr   string
)

const rootfsPrefix = "smd-rootfs-"

// rootfs returns a complete Debian bookworm root with systemd and
// openssh-server: $SMD_ROOTFS if set, else one built for this run.
func rootfs(t *testing.T) string {
	t.Helper()
	rootfsMu.Lock()
	defer rootfsMu.Unlock()
	if rootfsPath == "" && rootfsErr == "" {
		rootfsPath, rootfsErr = makeRootfs(t)
	}
	if rootfsErr != "" {
		t.Fatal(rootfsErr)
	}
	return rootfsPath
}

func checkRootfs(root string) error {
	for _, f := range []string{"usr/lib/systemd/systemd", "usr/sbin/sshd", "usr/bin/systemctl", "usr/bin/ip", "etc/os-release"} {
		if _, err := os.Stat(filepath.Join(root, f)); err != nil {
			return fmt.Errorf("root %s is incomplete: %v", root, err)
		}
	}
	return nil
}

// The root is built once per machine and kept in a cache outside the
// checkout, named by a hash of what it is built from: a fresh machine
// builds it (debootstrap, 75 to 170 s), later runs reuse it.
const (
	rootfsSuite    = "bookworm"
	rootfsVariant  = "minbase"
	rootfsIncludes = "systemd,systemd-sysv,dbus,openssh-server,iproute2"
)

func makeRootfs(t *testing.T) (string, string) {
	if r := os.Getenv("SMD_ROOTFS"); r != "" {
		if err := checkRootfs(r); err != nil {
			return "", "SMD_ROOTFS: " + err.Error()
		}
		t.Logf("using the root in SMD_ROOTFS=%s", r)
		return r, ""
	}
	if _, err := exec.LookPath("debootstrap"); err != nil {
		return "", "debootstrap not found (Debian package debootstrap): " + err.Error()
	}
	mirror, err := debianMirror()
	if err != nil {
		return "", err.Error()
	}
	base := os.Getenv("SYSTEMD_ROOTFS_CACHE")
	if base == "" {
		base = "/var/cache/sshmd5"
	}
	if err := os.MkdirAll(base, 0o755); err != nil {
		return "", err.Error()
	}
	sum := sha256.Sum256([]byte(strings.Join([]string{rootfsSuite, rootfsVariant, rootfsIncludes, mirror}, "\n")))
	root := filepath.Join(base, rootfsPrefix+hex.EncodeToString(sum[:8]))
	if checkRootfs(root) == nil {
		t.Logf("using the cached root %s", root)
		return root, ""
	}
	// Remove half-built roots of earlier runs that died.
	old, _ := filepath.Glob(filepath.Join(base, rootfsPrefix+"*.tmp*"))
	for _, d := range old {
		pid, err := strconv.Atoi(d[strings.LastIndex(d, ".tmp")+4:])
		if err != nil {
			continue
		}
		if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); os.IsNotExist(err) {
			os.RemoveAll(d)
		}
	}
	os.RemoveAll(root)
	tmp := root + ".tmp" + strconv.Itoa(os.Getpid())
	rootfsBuilt = tmp // removed at the end of the run unless complete
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "debootstrap", "--variant="+rootfsVariant,
		"--include="+rootfsIncludes, rootfsSuite, tmp, mirror)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Sprintf("debootstrap %s from %s: %v\n%s", rootfsSuite, mirror, err, tail(out, 40))
	}
	if err := checkRootfs(tmp); err != nil {
		return "", err.Error()
	}
	if err := os.Rename(tmp, root); err != nil {
		if checkRootfs(root) != nil {
			return "", err.Error()
		}
		// Another test binary finished the same root first.
		os.RemoveAll(tmp)
	}
	rootfsBuilt = ""
	t.Logf("debootstrap from %s: %v; cached in %s", mirror, time.Since(start).Round(time.Second), root)
	return root, ""
}

func tail(b []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// debianMirror returns the URI of the first enabled apt source on this
// machine that serves Debian's bookworm suite with the main component, in
// either the one-line (.list) or the deb822 (.sources) format.
func debianMirror() (string, error) {
	files := []string{"/etc/apt/sources.list"}
	for _, pat := range []string{"/etc/apt/sources.list.d/*.list", "/etc/apt/sources.list.d/*.sources"} {
		m, _ := filepath.Glob(pat)
		files = append(files, m...)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		var uri string
		if strings.HasSuffix(f, ".sources") {
			uri = mirrorDeb822(string(data))
		} else {
			uri = mirrorOneLine(string(data))
		}
		if uri != "" {
			return uri, nil
		}
	}
	return "", fmt.Errorf("no apt source for Debian bookworm main in %s: debootstrap needs the mirror configured there", strings.Join(files, ", "))
}

func mirrorOneLine(data string) string {
	for _, line := range strings.Split(data, "\n") {
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		// Drop "[ options ]".
		if i := strings.IndexByte(line, '['); i >= 0 {
			if j := strings.IndexByte(line[i:], ']'); j >= 0 {
				line = line[:i] + line[i+j+1:]
			}
		}
		f := strings.Fields(line)
		if len(f) >= 4 && f[0] == "deb" && f[2] == "bookworm" && slices.Contains(f[3:], "main") && isHTTP(f[1]) {
			return f[1]
		}
	}
	return ""
}

func mirrorDeb822(data string) string {
	for _, stanza := range regexp.MustCompile(`\n\s*\n`).Split(data, -1) {
		fields := map[string]string{}
		var last string
		for _, line := range strings.Split(stanza, "\n") {
			if strings.HasPrefix(line, "#") || strings.TrimSpace(line) == "" {
				continue
			}
			if line[0] == ' ' || line[0] == '\t' { // continuation
				fields[last] += " " + strings.TrimSpace(line)
				continue
			}
			k, v, ok := strings.Cut(line, ":")
			if !ok {
				continue
			}
			last = strings.ToLower(strings.TrimSpace(k))
			fields[last] = strings.TrimSpace(v)
		}
		if strings.EqualFold(fields["enabled"], "no") ||
			!slices.Contains(strings.Fields(fields["types"]), "deb") ||
			!slices.Contains(strings.Fields(fields["suites"]), "bookworm") ||
			!slices.Contains(strings.Fields(fields["components"]), "main") {
			continue
		}
		for _, u := range strings.Fields(fields["uris"]) {
			if isHTTP(u) {
				return u
			}
		}
	}
	return ""
}

func isHTTP(u string) bool {
	return strings.HasPrefix(u, "http://") || strings.HasPrefix(u, "https://")
}

func TestMirrorParsing(t *testing.T) {
	deb822 := "Types: deb\n# comment\nURIs: http://deb.debian.org/debian\nSuites: bookworm bookworm-updates\nComponents: main\n\n" +
		"Types: deb\nURIs: http://security.debian.org/debian-security\nSuites: bookworm-security\nComponents: main\n"
	if got := mirrorDeb822(deb822); got != "http://deb.debian.org/debian" {
		t.Errorf("deb822: got %q", got)
	}
	if got := mirrorDeb822("Enabled: no\nTypes: deb\nURIs: http://x/debian\nSuites: bookworm\nComponents: main\n"); got != "" {
		t.Errorf("disabled deb822 stanza: got %q", got)
	}
	one := "# deb http://old/debian bookworm main\ndeb-src http://src/debian bookworm main\n" +
		"deb http://sec/debian-security bookworm-security main\ndeb [arch=amd64 signed-by=/k.gpg] http://m/debian bookworm main contrib\n"
	if got := mirrorOneLine(one); got != "http://m/debian" {
		t.Errorf("one-line: got %q", got)
	}
}

// container is a booted systemd-nspawn container.
type container struct {
	t      *testing.T
	root   string // the overlay the container boots
	cmd    *exec.Cmd
	leader int // pid of the container's init, as seen from the host
	done   chan struct{}
}

// exec runs a command inside the container (all its namespaces) and
// returns its combined output.
func (c *container) exec(timeout time.Duration, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "nsenter", append([]string{"-t", strconv.Itoa(c.leader), "-a", "--"}, args...)...)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8", "SYSTEMD_PAGER=", "SYSTEMD_COLORS=0"}
	cmd.Dir = "/"
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// must runs a command in the container and fails the test if it fails.
func (c *container) must(t *testing.T, args ...string) string {
	t.Helper()
	out, err := c.exec(30*time.Second, args...)
	if err != nil {
		t.Fatalf("in container: %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// overlay mounts an overlay of lower with its upper layer in a temp dir and
// returns the merged directory; unmounted at cleanup.
func overlay(t *testing.T, lower string) string {
	t.Helper()
	d := t.TempDir()
	upper, work, merged := filepath.Join(d, "upper"), filepath.Join(d, "work"), filepath.Join(d, "root")
	for _, p := range []string{upper, work, merged} {
		if err := os.Mkdir(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	opts := "lowerdir=" + lower + ",upperdir=" + upper + ",workdir=" + work
	if err := syscall.Mount("overlay", merged, "overlay", 0, opts); err != nil {
		t.Fatalf("mount overlay of %s: %v (the test needs overlayfs)", lower, err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(merged, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", merged, err)
		}
	})
	return merged
}

func writeFile(t *testing.T, name, data string, perm os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(name), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(name, []byte(data), perm); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(name, perm); err != nil { // WriteFile's perm is masked by umask
		t.Fatal(err)
	}
}

func copyFile(t *testing.T, src, dst string, perm os.FileMode) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, dst, string(b), perm)
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// newSecret returns a random printable TCP-MD5 secret.
func newSecret(t *testing.T) string {
	t.Helper()
	return string(testnet.NewSecret())
}

// boot starts systemd-nspawn on root inside the network namespace ns and
// waits until the container's systemd has finished booting.
func boot(t *testing.T, root string, ns *testnet.NS) *container {
	t.Helper()
	console := &testnet.LockedBuffer{}
	cmd := exec.Command("systemd-nspawn", "-D", root, "-b",
		"--register=no", "--keep-unit", "--console=read-only",
		"--network-namespace-path=/run/netns/"+ns.Name,
		// nspawn grants CAP_NET_ADMIN only with a private network it made
		// itself; the shim needs it to read a socket's keys back through
		// sock_diag. The netns is the container's own, so this is what
		// root in a real machine has.
		"--capability=CAP_NET_ADMIN",
		// nspawn's seccomp filter (systemd 252) does not list pidfd_getfd,
		// which sshd-md5-socket status uses to read a listener's keys: it
		// gives EPERM to every process in the container (nsenter from
		// outside is not filtered). A real machine has no such filter.
		"--system-call-filter=pidfd_getfd",
		"--machine=smd-"+strings.TrimPrefix(ns.Name, "smd"))
	cmd.Stdout, cmd.Stderr = console, console
	cmd.Env = append(os.Environ(), "SYSTEMD_LOG_COLOR=0")
	if err := cmd.Start(); err != nil {
		t.Fatalf("start systemd-nspawn: %v", err)
	}
	c := &container{t: t, root: root, cmd: cmd, done: make(chan struct{})}
	go func() { cmd.Wait(); close(c.done) }()
	t.Cleanup(func() {
		c.shutdown()
		if t.Failed() {
			t.Logf("container console:\n%s", console.String())
		}
	})

	deadline := time.Now().Add(60 * time.Second)
	for c.leader == 0 {
		select {
		case <-c.done:
			t.Fatalf("systemd-nspawn exited during boot: %v", cmd.ProcessState)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("container init not found after 60s")
		}
		c.leader = containerInit(cmd.Process.Pid)
	}
	// is-system-running --wait fails while the container's systemd is
	// not yet reachable; retry until it answers.
	var state string
	for {
		out, _ := c.exec(time.Until(deadline)+time.Second, "systemctl", "is-system-running", "--wait")
		state = strings.TrimSpace(out)
		if state == "running" || state == "degraded" || time.Now().After(deadline) {
			break
		}
		select {
		case <-c.done:
			t.Fatalf("systemd-nspawn exited during boot: %v", cmd.ProcessState)
		case <-time.After(100 * time.Millisecond):
		}
	}
	switch state {
	case "running":
	case "degraded":
		out, _ := c.exec(10*time.Second, "systemctl", "--failed", "--no-legend")
		t.Logf("container booted degraded; failed units:\n%s", out)
	default:
		t.Fatalf("container did not finish booting within 60s: is-system-running says %q", state)
	}
	return c
}

// containerInit finds the container's PID 1 among the descendants of
// nspawn: the first process in a pid namespace other than ours.
func containerInit(nspawn int) int {
	self, err := os.Readlink("/proc/self/ns/pid")
	if err != nil {
		return 0
	}
	queue := []int{nspawn}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		kids, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", p, p))
		for _, k := range strings.Fields(string(kids)) {
			pid, _ := strconv.Atoi(k)
			ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", pid))
			if err == nil && ns != self {
				return pid
			}
			queue = append(queue, pid)
		}
	}
	return 0
}

// shutdown powers the container off and waits for nspawn to exit; after
// 20s it kills the container.
func (c *container) shutdown() {
	select {
	case <-c.done:
		return
	default:
	}
	start := time.Now()
	if c.leader != 0 {
		// The answer may never come: systemd tears the system down.
		go c.exec(20*time.Second, "systemctl", "poweroff", "--no-block")
	}
	select {
	case <-c.done:
		c.t.Logf("container powered off in %v", time.Since(start).Round(10*time.Millisecond))
		return
	case <-time.After(20 * time.Second):
	}
	c.t.Errorf("container did not power off within 20s; killing it")
	if c.leader != 0 {
		syscall.Kill(c.leader, syscall.SIGKILL) // init of a pid namespace: takes all of it
	}
	c.cmd.Process.Kill()
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		c.t.Errorf("systemd-nspawn (pid %d) still running after SIGKILL", c.cmd.Process.Pid)
	}
}

func requireTools(t *testing.T) {
	t.Helper()
	testnet.RequireRoot(t)
	for _, p := range []struct{ bin, pkg string }{
		{"debootstrap", "debootstrap"}, {"systemd-nspawn", "systemd-container"},
		{"systemctl", "systemd"}, {"nsenter", "util-linux"}, {"ip", "iproute2"},
		{"ssh", "openssh-client"}, {"ssh-keygen", "openssh-client"},
	} {
		if p.bin == "debootstrap" && os.Getenv("SMD_ROOTFS") != "" {
			continue
		}
		if _, err := exec.LookPath(p.bin); err != nil {
			t.Fatalf("%s not found (Debian package %s): %v", p.bin, p.pkg, err)
		}
	}
}

// unitsDir is contrib/systemd, relative to this package's directory.
const unitsDir = "../../contrib/systemd"

// client is the TCP-MD5 ssh client side of the test.
type client struct {
	t          *testing.T
	ns         *testnet.NS
	dir        string
	clientKey  string
	knownHosts string
	keyFile    string // the secret, as a key file
	proxy      string // ProxyCommand
}

func (c *client) sshArgs() []string {
	return []string{
		"-F", "/dev/null",
		"-i", c.clientKey,
		"-o", "IdentitiesOnly=yes",
		"-o", "IdentityAgent=none",
		"-o", "BatchMode=yes",
		"-o", "StrictHostKeyChecking=yes",
		"-o", "UserKnownHostsFile=" + c.knownHosts,
		"-o", "GlobalKnownHostsFile=/dev/null",
		"-o", "UpdateHostKeys=no",
		"-o", "ConnectTimeout=10",
		"-o", "LogLevel=ERROR",
		"-o", "ProxyCommand=" + c.proxy,
	}
}

// sshCmd returns ssh running in the client namespace, logging in as root
// at addr and running command.
func (c *client) sshCmd(ctx context.Context, addr netip.Addr, command string) *exec.Cmd {
	args := append([]string{"netns", "exec", c.ns.Name, "ssh"}, c.sshArgs()...)
	args = append(args, "root@"+addr.String(), command)
	cmd := exec.CommandContext(ctx, "ip", args...)
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// login runs "echo ok" over a signed ssh login and fails the test unless
// it prints ok.
func (c *client) login(t *testing.T, addr netip.Addr) {
	t.Helper()
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := c.sshCmd(ctx, addr, "echo ok").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "ok" {
		t.Fatalf("signed ssh login to %s: %v\n%s", addr, err, out)
	}
	t.Logf("signed ssh login to %s: ok in %v", addr, time.Since(start).Round(time.Millisecond))
}

// dial connects from the client namespace to addr:port, signed with secret
// unless it is nil, and reports what happened: nil (connected, the first
// bytes received are returned), a timeout, or another error.
func (c *client) dial(addr netip.Addr, port int, secret md5.Secret, timeout time.Duration) (string, error) {
	d := net.Dialer{Timeout: timeout}
	if secret != nil {
		d.Control = md5.DialControl(secret)
	}
	var conn net.Conn
	err := c.ns.Do(func() error {
		var err error
		conn, err = d.Dial("tcp", netip.AddrPortFrom(addr, uint16(port)).String())
		return err
	})
	if err != nil {
		return "", err
	}
	defer conn.Close()
	conn.SetReadDeadline(time.Now().Add(timeout))
	line, _ := bufio.NewReader(conn).ReadString('\n')
	return strings.TrimSpace(line), nil
}

// newRootClient makes sshd in root log verbosely without DNS lookups and
// returns a client with a new ed25519 key that root's authorized_keys
// accepts, trusting root's host key (openssh-server's postinst made it).
// Its keyFile is named, not written.
func newRootClient(t *testing.T, root string) *client {
	t.Helper()
	writeFile(t, filepath.Join(root, "etc/ssh/sshd_config.d/test.conf"), "UseDNS no\nLogLevel VERBOSE\n", 0o644)
	hostPub, err := os.ReadFile(filepath.Join(root, "etc/ssh/ssh_host_ed25519_key.pub"))
	if err != nil {
		t.Fatalf("no ed25519 host key in the root (openssh-server's postinst makes them): %v", err)
	}
	cl := &client{t: t, dir: t.TempDir()}
	cl.clientKey = filepath.Join(cl.dir, "id_ed25519")
	run(t, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "test/systemd", "-f", cl.clientKey)
	pub, err := os.ReadFile(cl.clientKey + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(root, "root/.ssh"), 0o700); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(root, "root/.ssh/authorized_keys"), string(pub), 0o600)
	cl.knownHosts = filepath.Join(cl.dir, "known_hosts")
	writeFile(t, cl.knownHosts, "* "+string(hostPub), 0o600)
	cl.keyFile = filepath.Join(cl.dir, "default.key")
	return cl
}

// mustBeIgnored checks that a connection to addr:22 signed with secret (nil:
// unsigned) gets no answer at all: a timeout, not a refusal.
func (c *client) mustBeIgnored(t *testing.T, addr netip.Addr, secret md5.Secret, what string) {
	t.Helper()
	c.mustBeIgnoredPort(t, addr, 22, secret, what)
}

// mustBeIgnoredPort is mustBeIgnored for another port.
func (c *client) mustBeIgnoredPort(t *testing.T, addr netip.Addr, port int, secret md5.Secret, what string) {
	t.Helper()
	dst := netip.AddrPortFrom(addr, uint16(port))
	if err := c.ns.Unanswered(dst.String(), secret, 3*time.Second); err != nil {
		t.Errorf("%s: %v", what, err)
		return
	}
	t.Logf("%s connection to %s: no answer within 3s, as it should be", what, dst)
}

// setupProxy makes the client sign with the project's ssh-md5-proxy and a
// client keyring naming the server's addresses.
func (c *client) setupProxy(addrs ...netip.Addr) {
	c.t.Helper()
	c.setupProxyBinary(testnet.BuildBinary(c.t, "cmd/ssh-md5-proxy"), addrs...)
}

// setupProxyBinary is setupProxy with the ssh-md5-proxy at bin (the one
// from the Debian package, say).
func (c *client) setupProxyBinary(bin string, addrs ...netip.Addr) {
	t := c.t
	t.Helper()
	var kr testnet.Keyring
	for _, a := range addrs {
		kr.Hosts = append(kr.Hosts, testnet.Host(a.String(), c.keyFile))
	}
	keyring := filepath.Join(c.dir, "md5-keyring.toml")
	kr.Write(t, keyring)
	c.proxy = bin + " -k " + keyring + " %h %p"
}

// TestBootInetdAndListener boots Debian's systemd with sshd-md5.socket and
// sshd-md5.service enabled as contrib/systemd/README.md says, checks signed
// and unsigned clients, reload and restart, then switches to the
// listener-mode units.
func TestBootInetdAndListener(t *testing.T) {
	requireTools(t)
	t0 := time.Now()
	phase := func(name string, since time.Time) {
		t.Logf("timing: %s %v", name, time.Since(since).Round(time.Millisecond))
	}

	// Build before the slow debootstrap: a compile error should show fast.
	shim := testnet.BuildBinary(t, "cmd/sshd-md5-socket")
	phase("build shim", t0)

	t1 := time.Now()
	lower := rootfs(t)
	phase("rootfs", t1)

	t1 = time.Now()
	root := overlay(t, lower)
	units, err := filepath.Glob(filepath.Join(unitsDir, "*.s*"))
	if err != nil || len(units) == 0 {
		t.Fatalf("no units in %s: %v", unitsDir, err)
	}
	var unitNames []string
	for _, u := range units {
		if strings.HasSuffix(u, ".socket") || strings.HasSuffix(u, ".service") {
			copyFile(t, u, filepath.Join(root, "etc/systemd/system", filepath.Base(u)), 0o644)
			unitNames = append(unitNames, filepath.Base(u))
		}
	}
	copyFile(t, shim, filepath.Join(root, "usr/sbin/sshd-md5-socket"), 0o755)

	secret := newSecret(t)
	writeFile(t, filepath.Join(root, "etc/ssh/md5/default.key"), secret+"\n", 0o600)
	writeFile(t, filepath.Join(root, "etc/ssh/md5-keyring.toml"),
		"# written by test/systemd\n"+
			"[peers.\"0.0.0.0/0\"]\nkey_file = \"/etc/ssh/md5/default.key\"\n"+
			"[peers.\"::/0\"]\nkey_file = \"/etc/ssh/md5/default.key\"\n", 0o600)
	os.Chmod(filepath.Join(root, "etc/ssh/md5"), 0o700)
	cl := newRootClient(t, root)
	writeFile(t, cl.keyFile, secret+"\n", 0o600)

	// As README.md says: Debian's units off, ours enabled. systemctl
	// --root only edits symlinks, it talks to no running systemd.
	run(t, "systemctl", "--root="+root, "disable", "ssh.service", "ssh.socket")
	run(t, "systemctl", "--root="+root, "mask", "ssh.service", "ssh.socket")
	run(t, "systemctl", "--root="+root, "enable", "sshd-md5.service")
	for _, l := range []string{"multi-user.target.wants/sshd-md5.service"} {
		if _, err := os.Lstat(filepath.Join(root, "etc/systemd/system", l)); err != nil {
			t.Fatalf("systemctl enable sshd-md5.service did not create %s: %v", l, err)
		}
	}
	phase("prepare root", t1)

	t1 = time.Now()
	ct := testnet.NewNS(t, "ct")
	cl.ns = testnet.NewNS(t, "cli")
	link := testnet.Connect(t, ct, cl.ns)
	v4, v6 := link.AddrA4, link.AddrA6
	cl.setupProxy(v4, v6)
	phase("network", t1)

	t1 = time.Now()
	c := boot(t, root, ct)
	phase("boot to running", t1)
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := c.exec(10*time.Second, "journalctl", "-b", "--no-pager", "-o", "short-monotonic",
				"-u", "sshd-md5*", "-u", "ssh*")
			t.Logf("container journal (sshd-md5*, ssh*):\n%s", out)
		}
	})

	if st, _ := c.exec(10*time.Second, "systemctl", "is-active", "sshd-md5.service"); st != "active\n" {
		t.Fatalf("after boot, sshd-md5.service is %q, want active; the service must start at boot", st)
	}

	t.Run("verify", func(t *testing.T) {
		// --man=no: minbase has no man, and Documentation=man: would
		// fail for Debian's own units too.
		args := []string{"systemd-analyze", "verify", "--man=no"}
		for _, u := range unitNames {
			args = append(args, "/etc/systemd/system/"+u)
		}
		out, err := c.exec(60*time.Second, args...)
		if err != nil || strings.TrimSpace(out) != "" {
			t.Errorf("systemd-analyze verify %s: %v\n%s", strings.Join(unitNames, " "), err, out)
		}
	})

	pid := func(t *testing.T, unit string) string {
		return strings.TrimSpace(c.must(t, "systemctl", "show", "-P", "MainPID", unit))
	}

	t1 = time.Now()
	cl.login(t, v4)
	cl.login(t, v6)
	phase("signed logins", t1)

	t1 = time.Now()
	before := ct.MD5Counters(t)
	var wg sync.WaitGroup
	for _, a := range []netip.Addr{v4, v6} {
		wg.Add(1)
		go func() { defer wg.Done(); cl.mustBeIgnored(t, a, nil, "unsigned") }()
	}
	wg.Wait()
	if d := ct.MD5Counters(t).Sub(before); d.NotFound == 0 {
		t.Errorf("TCPMD5NotFound did not grow in the container's netns (%+v): the unsigned SYNs were not dropped for want of a signature", d)
	}
	phase("unsigned checks", t1)

	t.Run("reload", func(t *testing.T) {
		// Rotate the key: a reload must make the new key the only one.
		t1 := time.Now()
		oldPID := pid(t, "sshd-md5.service")
		newKey := newSecret(t)
		writeFile(t, filepath.Join(root, "etc/ssh/md5/default.key"), newKey+"\n", 0o600)
		c.must(t, "systemctl", "reload", "sshd-md5.service")
		if p := pid(t, "sshd-md5.service"); p != oldPID {
			t.Errorf("reload replaced the main process (%s -> %s); it should re-key in place", oldPID, p)
		}
		writeFile(t, cl.keyFile, newKey+"\n", 0o600)
		cl.login(t, v4)
		cl.mustBeIgnored(t, v4, md5.Secret(secret), "signed with the old key")
		secret = newKey
		phase("reload + checks", t1)
	})

	t.Run("restart keeps sessions", func(t *testing.T) {
		t1 := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		out := &testnet.LockedBuffer{}
		sess := cl.sshCmd(ctx, v4, "echo started; sleep 3; echo survived")
		sess.Stdout, sess.Stderr = out, out
		if err := sess.Start(); err != nil {
			t.Fatal(err)
		}
		// Restart once the session runs.
		for deadline := time.Now().Add(20 * time.Second); !strings.Contains(out.String(), "started"); time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("session did not start within 20s: %s", out.String())
			}
		}
		oldPID := pid(t, "sshd-md5.service")
		c.must(t, "systemctl", "restart", "sshd-md5.service")
		if p := pid(t, "sshd-md5.service"); p == oldPID || p == "0" {
			t.Errorf("restart: main pid %s -> %s", oldPID, p)
		}
		err := sess.Wait()
		if err != nil || !strings.Contains(out.String(), "survived") {
			t.Errorf("session across systemctl restart: %v\n%s", err, out.String())
		}
		cl.login(t, v4)
		cl.mustBeIgnored(t, v4, nil, "unsigned (after restart)")
		phase("restart + checks", t1)
	})

	t.Run("listener mode", func(t *testing.T) {
		t1 := time.Now()
		// Conflicts= takes the inetd units down.
		c.must(t, "systemctl", "start", "sshd-md5-listener.service")
		if st, _ := c.exec(10*time.Second, "systemctl", "is-active", "sshd-md5.service", "sshd-md5-listener.service"); st != "inactive\nactive\n" {
			t.Fatalf("after starting sshd-md5-listener.service: is-active says %q", st)
		}
		// Listener mode execs sshd in place: the main process is sshd.
		mainPID := pid(t, "sshd-md5-listener.service")
		if exe, _ := c.exec(10*time.Second, "readlink", "/proc/"+mainPID+"/exe"); strings.TrimSpace(exe) != "/usr/sbin/sshd" {
			t.Errorf("listener mode: main process %s runs %q, want /usr/sbin/sshd", mainPID, strings.TrimSpace(exe))
		}
		cl.login(t, v4)
		cl.login(t, v6)
		cl.mustBeIgnored(t, v4, nil, "unsigned (listener mode)")
		// No ExecReload=: a SIGHUP would make sshd rebind unkeyed.
		if out, err := c.exec(30*time.Second, "systemctl", "reload", "sshd-md5-listener.service"); err == nil {
			t.Errorf("systemctl reload sshd-md5-listener.service succeeded; it must refuse (sshd rebinds without keys on SIGHUP)")
		} else {
			t.Logf("systemctl reload sshd-md5-listener.service refused, as it should: %s", strings.TrimSpace(out))
		}
		c.must(t, "systemctl", "restart", "sshd-md5-listener.service")
		cl.login(t, v4)
		cl.mustBeIgnored(t, v6, nil, "unsigned (listener mode, after restart)")

		// The hazard, contained: on SIGHUP sshd closes the keyed socket
		// and binds port 22 itself, unkeyed; systemd's fd store still
		// holds the keyed socket, so that bind fails, sshd exits, and
		// Restart= brings the shim back on the stored socket.
		before := pid(t, "sshd-md5-listener.service")
		c.must(t, "systemctl", "kill", "-s", "HUP", "--kill-who=main", "sshd-md5-listener.service")
		for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			if p := pid(t, "sshd-md5-listener.service"); p != before && p != "0" {
				break
			}
			if time.Now().After(deadline) {
				out, _ := c.exec(10*time.Second, "journalctl", "-b", "--no-pager", "-o", "cat", "-u", "sshd-md5-listener.service")
				t.Fatalf("after a SIGHUP to sshd, the listener-mode service was not restarted within 20s:\n%s", out)
			}
		}
		cl.mustBeIgnored(t, v4, nil, "unsigned (listener mode, after SIGHUP to sshd)")
		cl.login(t, v4)
		if out, _ := c.exec(10*time.Second, "journalctl", "-b", "--no-pager", "-o", "cat", "-u", "sshd-md5-listener.service"); !strings.Contains(out, "Address already in use") {
			t.Errorf("after a SIGHUP to sshd: the journal does not show sshd's rebind failing:\n%s", out)
		}
		phase("listener mode", t1)
	})
	t.Logf("timing: total before shutdown %v", time.Since(t0).Round(time.Millisecond))
}
