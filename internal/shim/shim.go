// Package shim is sshd-md5-socket: it puts the TCP-MD5 keys of a keyring on
// sshd's listening sockets before any peer can reach sshd through them, and
// then either serves each signed connection with its own `sshd -i` (inetd
// mode) or hands the keyed sockets to `sshd -D` by exec (listener mode).
//
// Fail closed is the rule throughout: a listener that would take a peer the
// keyring should cover without its key is never opened or served, and a
// connection that carries no key (queued before the keys were set) is closed,
// never handed to sshd.
package shim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"syscall"

	"github.com/coreos/go-systemd/v22/activation"
	"golang.org/x/sys/unix"

	"github.com/sshmd5/sshmd5/internal/keyring"
	"github.com/sshmd5/sshmd5/internal/md5"
	"github.com/sshmd5/sshmd5/internal/stealth"
)

// Modes.
const (
	ModeInetd    = "inetd"
	ModeListener = "listener"
)

// DefaultMaxConns bounds concurrent `sshd -i` children unless told
// otherwise: each costs a process and memory, and an unbounded number is
// a resource exhaustion waiting for a signed-but-hostile peer.
const DefaultMaxConns = 100

// Config is what the command line asks for.
type Config struct {
	Keyring  string   // path of the TOML keyring; "" = keyring.DefaultServerPath()
	Listen   []string // addresses to listen on when systemd passes no sockets
	Mode     string   // ModeInetd (default) or ModeListener
	MaxConns int      // inetd mode: concurrent children; 0 = DefaultMaxConns
	Stealth  string   // stealth.Filtered, Closed or Auto; "" = stealth.DefaultMode
	Command  []string // what to run; nil = the mode's sshd default
	Stderr   *os.File // log and children's stderr; nil = os.Stderr
}

// UsageError is a command-line mistake; the command exits 2 on it.
type UsageError struct{ Msg string }

func (e UsageError) Error() string { return e.Msg }

// DefaultCommand is what each mode runs without `-- COMMAND`.
func DefaultCommand(mode string) []string {
	if mode == ModeListener {
		return []string{"/usr/sbin/sshd", "-D"}
	}
	return []string{"/usr/sbin/sshd", "-i"}
}

// listener is one keyed listening socket.
type listener struct {
	name string       // address, for messages
	file *os.File     // systemd's socket, kept so that its fd stays open
	sock md5.Socket   // the socket's fd and families, for keying
	ln   net.Listener // inetd mode, and -l in either mode
	// installed is what this process last put on sock. It stands in for
	// the kernel's report when the socket carries more keys than
	// sock_diag can report (md5.MaxReadableKeys); nil means unknown.
	installed []md5.Key
}

// rekey makes the listener carry exactly keys. It compares against the
// kernel's own report of the socket's keys; past what sock_diag can report
// it compares against what this process installed, which is exact as long
// as nothing else sets keys on the socket (only root could). A socket whose
// keys can be read neither way is refused: a stale key left by an earlier
// run, for a prefix since removed, would go on letting its holder in.
func (l *listener) rekey(keys []md5.Key) (md5.Diff, error) {
	have, err := l.sock.Keys()
	if errors.Is(err, md5.ErrTooManyToRead) {
		if l.installed == nil {
			return md5.Diff{}, fmt.Errorf("%w; this socket came from systemd and still carries the keys of an earlier run, which cannot be read back to remove stale ones: stop the socket unit and the service together (systemctl stop sshd-md5.socket sshd-md5.service) and start them again, so that systemd makes a fresh socket", err)
		}
		have, err = l.installed, nil
	}
	if err != nil {
		return md5.Diff{}, err
	}
	d, err := l.sock.ReconcileFrom(have, keys)
	if err != nil {
		return d, err
	}
	l.installed, _ = l.sock.Cover(keys)
	return d, nil
}

// server holds the state of one run.
type server struct {
	cfg   Config
	log   *log.Logger
	lns   []*listener
	keys  []md5.Key
	peers []keyring.Peer
}

// Check validates cfg and fills in defaults, without touching the network.
func (cfg *Config) Check() error {
	switch cfg.Mode {
	case "":
		cfg.Mode = ModeInetd
	case ModeInetd, ModeListener:
	default:
		return UsageError{fmt.Sprintf("unknown --mode %q: use inetd or listener", cfg.Mode)}
	}
	if _, err := stealth.ParseMode(cfg.Stealth); err != nil {
		return UsageError{err.Error()}
	}
	if cfg.MaxConns == 0 {
		cfg.MaxConns = DefaultMaxConns
	}
	if cfg.MaxConns < 0 {
		return UsageError{fmt.Sprintf("--max-conns %d: must be at least 1", cfg.MaxConns)}
	}
	if len(cfg.Command) == 0 {
		cfg.Command = DefaultCommand(cfg.Mode)
	}
	if cfg.Keyring == "" {
		cfg.Keyring = keyring.DefaultServerPath()
	}
	if cfg.Stderr == nil {
		cfg.Stderr = os.Stderr
	}
	for _, a := range cfg.Listen {
		if _, _, err := parseListen(a); err != nil {
			return UsageError{err.Error()}
		}
	}
	return nil
}

// NewLogger returns the logger the command writes with: plain lines with
// the program name, and no timestamps under systemd, whose journal adds
// its own.
func NewLogger(w io.Writer) *log.Logger {
	flags := log.LstdFlags
	if os.Getenv("JOURNAL_STREAM") != "" {
		flags = 0
	}
	return log.New(w, "sshd-md5-socket: ", flags)
}

// Run keys the listeners and serves until ctx is done (inetd mode) or execs
// the command (listener mode; Run returns only on error).
func Run(ctx context.Context, cfg Config) error {
	if err := cfg.Check(); err != nil {
		return err
	}
	s := &server{cfg: cfg, log: NewLogger(cfg.Stderr)}
	// Take systemd's sockets first, before anything can fail: they must not
	// leak into children, and Files sets close-on-exec on them.
	files := activation.Files(true)
	if len(files) == 0 && len(cfg.Listen) == 0 {
		return UsageError{"no sockets: systemd passed none (LISTEN_FDS) and no -l ADDR was given"}
	}
	if err := checkCommand(cfg.Command); err != nil {
		return err
	}
	kr, keys, err := loadKeys(cfg.Keyring)
	if err != nil {
		return err
	}
	s.keys, s.peers = keys, kr.Peers
	defer s.closeAll()
	if len(files) > 0 {
		if len(cfg.Listen) > 0 {
			s.log.Printf("using the %d socket(s) systemd passed; ignoring -l", len(files))
		}
		if err := s.adopt(files); err != nil {
			return err
		}
	} else if err := s.listen(ctx); err != nil {
		return err
	}
	// Read back and make exact: keys left on a systemd-held socket by an
	// earlier run with another keyring must go, and a key set that cannot
	// be read back cannot be trusted to be there.
	total := 0
	for _, l := range s.lns {
		d, err := l.rekey(s.keys)
		if err != nil {
			return fmt.Errorf("keying %s: %w", l.name, err)
		}
		n, _ := l.sock.Cover(s.keys)
		total += len(n)
		if !d.Empty() {
			s.log.Printf("%s: keys reconciled (%s)", l.name, d)
		}
	}
	s.log.Printf("keyed %d listener(s) with %d key(s) from %s (%d [peers] entries)", len(s.lns), total, cfg.Keyring, len(s.peers))
	tbl, err := s.applyStealth()
	if err != nil {
		return err
	}
	defer s.removeStealth(tbl)
	if cfg.Mode == ModeListener {
		return s.execListener()
	}
	return s.serveInetd(ctx)
}

// checkCommand makes a missing sshd a startup error rather than a failure
// per connection.
func checkCommand(argv []string) error {
	p := argv[0]
	if _, err := exec.LookPath(p); err != nil {
		// exec.Error and fs.PathError repeat the name: `exec: "x":
		// stat x: no such file or directory`.
		var ee *exec.Error
		if errors.As(err, &ee) {
			err = ee.Err
		}
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		if baseName(p) == "sshd" && errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%s: no such file; install openssh-server, or name the sshd to run after --, e.g. -- /usr/local/sbin/sshd -i", p)
		}
		return fmt.Errorf("command %s: %v; name an executable after --, e.g. -- /usr/sbin/sshd -i", p, err)
	}
	return nil
}

func baseName(p string) string {
	for i := len(p) - 1; i >= 0; i-- {
		if p[i] == '/' {
			return p[i+1:]
		}
	}
	return p
}

// loadKeys reads the keyring and turns its [peers] into kernel keys.
// Interface names resolve here, so a reload picks up a VRF created since.
func loadKeys(path string) (*keyring.Keyring, []md5.Key, error) {
	kr, err := keyring.Load(path)
	if err != nil {
		return nil, nil, err // keyring errors name the file and the fix
	}
	if len(kr.Peers) == 0 {
		return nil, nil, fmt.Errorf("keyring %s has no [peers]: nothing to sign incoming connections with; add [peers.\"0.0.0.0/0\"] and [peers.\"::/0\"]", path)
	}
	keys := make([]md5.Key, 0, len(kr.Peers))
	for _, p := range kr.Peers {
		ifx, err := p.Ifindex(path)
		if err != nil {
			return nil, nil, err
		}
		keys = append(keys, p.Key(ifx))
	}
	return kr, keys, nil
}

// parseListen turns -l ADDR into the network Go must use: "tcp" on [::]
// opens one dual-stack socket (keyed for both families), a specific
// address opens a socket of that family only. Go's "tcp" on 0.0.0.0 would
// silently open a dual-stack socket too, hence "tcp4".
func parseListen(a string) (network, addr string, err error) {
	ap, err := netip.ParseAddrPort(a)
	if err != nil {
		return "", "", fmt.Errorf("-l %q: want IP:PORT or [IPv6]:PORT, e.g. 0.0.0.0:22 or [::]:22 (%v)", a, err)
	}
	ip := ap.Addr().Unmap()
	if ip.Zone() != "" {
		return "", "", fmt.Errorf("-l %q: zoned addresses are not supported", a)
	}
	if ap.Port() == 0 {
		return "", "", fmt.Errorf("-l %q: port 0 would pick a random port", a)
	}
	ap = netip.AddrPortFrom(ip, ap.Port())
	switch {
	case ip.Is4():
		return "tcp4", ap.String(), nil
	case ip.IsUnspecified():
		return "tcp", ap.String(), nil
	default:
		return "tcp6", ap.String(), nil
	}
}

// listen opens the -l listeners with their keys set before bind and
// listen, so that no peer can ever complete a handshake unsigned.
func (s *server) listen(ctx context.Context) error {
	for _, a := range s.cfg.Listen {
		network, addr, _ := parseListen(a)
		lc := net.ListenConfig{Control: md5.ListenControl(s.keys)}
		// MPTCP sockets cannot carry TCP-MD5 keys.
		lc.SetMultipathTCP(false)
		ln, err := lc.Listen(ctx, network, addr)
		if err != nil {
			if errors.Is(err, syscall.EADDRINUSE) {
				return fmt.Errorf("listening on %s: address already in use: another sshd or sshd-md5-socket holds it; stop it or pick another -l", addr)
			}
			var ue md5.UncoveredError
			if errors.As(err, &ue) {
				return fmt.Errorf("listening on %s: keyring %s: %w", addr, s.cfg.Keyring, ue)
			}
			return fmt.Errorf("listening on %s: %w", addr, err)
		}
		// The listener's own fd, not a dup from File(): File's Fd would
		// switch the shared socket to blocking under the netpoller.
		sock, err := md5.FromConn(mustRaw(ln.(*net.TCPListener).SyscallConn()))
		if err != nil {
			ln.Close()
			return fmt.Errorf("listening on %s: %w", addr, err)
		}
		// ListenControl put exactly these on the new socket.
		installed, _ := sock.Cover(s.keys)
		s.lns = append(s.lns, &listener{name: ln.Addr().String(), sock: sock, ln: ln, installed: installed})
	}
	return nil
}

// adopt takes the sockets systemd passed. They exist without keys until
// Reconcile runs; whatever connected meanwhile is drained later.
func (s *server) adopt(files []*os.File) error {
	for _, f := range files {
		fd := int(f.Fd())
		acc, err := syscall.GetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_ACCEPTCONN)
		if err != nil || acc != 1 {
			return fmt.Errorf("systemd socket %s (fd %d) is not a listening TCP socket; use ListenStream= with Accept=no", f.Name(), fd)
		}
		sock, err := md5.Inspect(fd)
		if err != nil {
			return fmt.Errorf("systemd socket %s: %w", f.Name(), err)
		}
		name := f.Name()
		if sa, err := unix.Getsockname(fd); err == nil {
			if ap := md5.AddrPortOf(sa); ap.IsValid() {
				name = ap.String()
			}
		}
		l := &listener{name: name, file: f, sock: sock}
		if s.cfg.Mode == ModeInetd {
			// FileListener dups; keep f so the fd number stays stable for
			// key changes on reload.
			ln, err := net.FileListener(f)
			if err != nil {
				return fmt.Errorf("systemd socket %s: %w", name, err)
			}
			l.ln = ln
		}
		s.lns = append(s.lns, l)
	}
	return nil
}

func (s *server) closeAll() {
	for _, l := range s.lns {
		if l.ln != nil {
			l.ln.Close()
		}
		if l.file != nil {
			l.file.Close()
		}
	}
}

// matched names the [peers] entry a peer address falls under, for the log.
// Peers are sorted most specific first.
func (s *server) matched(addr netip.Addr) string {
	addr = addr.Unmap()
	for _, p := range s.peers {
		if p.Prefix.Contains(addr) {
			if p.Interface != "" {
				return p.Prefix.String() + "%" + p.Interface
			}
			return p.Prefix.String()
		}
	}
	return "none"
}

// connKeyed reports whether an accepted connection carries a TCP-MD5 key.
// A connection that completed its handshake before the listener had keys
// got no key copy and was never signed.
func connKeyed(fd int) (bool, error) {
	sock, err := md5.Inspect(fd)
	if err != nil {
		return false, err
	}
	keys, err := sock.Keys()
	if err != nil {
		return false, err
	}
	return len(keys) > 0, nil
}

// peerOf returns a connection's peer address for log lines.
func peerOf(fd int) (netip.AddrPort, string) {
	sa, err := unix.Getpeername(fd)
	if err != nil {
		return netip.AddrPort{}, "unknown peer"
	}
	ap := md5.AddrPortOf(sa)
	ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	return ap, ap.String()
}

// rawFD returns the descriptor behind a syscall.RawConn; it stays valid as
// long as the owner is open.
func rawFD(rc syscall.RawConn) int {
	fd := -1
	_ = rc.Control(func(u uintptr) { fd = int(u) })
	return fd
}

func mustRaw(rc syscall.RawConn, err error) syscall.RawConn {
	if err != nil {
		panic(err) // TCPListener.SyscallConn fails only when closed
	}
	return rc
}
