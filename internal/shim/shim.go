//go:build linux

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
	"strings"
	"syscall"

	"github.com/coreos/go-systemd/v22/activation"
	"golang.org/x/sys/unix"

	"github.com/sshmd5/sshmd5/internal/fdstore"
	"github.com/sshmd5/sshmd5/internal/inspect"
	"github.com/sshmd5/sshmd5/internal/keyring"
	"github.com/sshmd5/sshmd5/internal/listenaddr"
	"github.com/sshmd5/sshmd5/internal/plan"
	"github.com/sshmd5/sshmd5/internal/stealth"
	"github.com/sshmd5/sshmd5/internal/tcpsig"
	"github.com/sshmd5/sshmd5/internal/tcpsig/md5"
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
	MaxConns int      // inetd mode: concurrent children, at least 1 (the command's default: DefaultMaxConns)
	// inetd mode: limits on children not yet authenticated; a zero
	// MaxStartups is DefaultMaxStartups, PerSourceMaxStartups is at least
	// 1 (the command's default: DefaultPerSourceMaxStartups).
	MaxStartups          Startups
	PerSourceMaxStartups int
	Stealth              string   // stealth.Filtered, Closed or Auto; "" = stealth.DefaultMode
	Command              []string // what to run; nil = the mode's sshd default
	Stderr               *os.File // log and children's stderr; nil = os.Stderr
	// Reload delivers SIGHUP. The command subscribes before anything
	// else, so that a HUP during startup (config management, a reload
	// right after a start, pkill -HUP sshd) is not the default action,
	// death, but one reload once serving. Buffer it one deep.
	Reload <-chan os.Signal
	// NoKnocks turns off the log of who knocks without the key (inetd
	// mode; internal/knock).
	NoKnocks bool
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
	name      string         // address, for messages
	file      *os.File       // systemd's socket, kept so that its fd stays open
	sock      tcpsig.Socket  // the socket's fd and families, for keying
	backend   tcpsig.Backend // how it is keyed (the plan's choice)
	ln        net.Listener   // inetd mode, and -l in either mode
	listen    string         // the address to open it on again
	storeName string         // its name in systemd's fd store; "" = not stored
	stored    bool           // came from systemd's fd store
	// own: this project opened it keyed before listen(), so nothing
	// unsigned can be queued on it (a .socket unit's socket can).
	own bool
	// shadow stands in for the kernel's report when the socket carries
	// more keys than the backend can report (md5.MaxReadableKeys).
	shadow tcpsig.Shadow
}

// rekey makes the listener carry exactly keys. It compares against the
// kernel's own report of the socket's keys; past what sock_diag can report
// it compares against what this process installed, which is exact as long
// as nothing else sets keys on the socket (only root could). A socket whose
// keys can be read neither way is refused: a stale key left by an earlier
// run, for a prefix since removed, would go on letting its holder in.
func (l *listener) rekey(keys []tcpsig.Key) (tcpsig.Diff, error) {
	d, err := l.shadow.Reconcile(l.backend, l.sock, keys)
	if errors.Is(err, tcpsig.ErrTooManyToRead) {
		return tcpsig.Diff{}, fmt.Errorf("%w; this socket came from a .socket unit and still carries the keys of an earlier run, which cannot be read back to remove stale ones: stop its .socket unit and the service together (systemctl stop NAME.socket NAME.service) and start them again, so that systemd makes a fresh socket, or let the shim open its socket itself with -l, as the units in contrib/systemd do", err)
	}
	if err != nil {
		return d, plan.Word(err)
	}
	return d, nil
}

// errForeign means a socket carries keys of the other backend: the
// keyring moved its family between TCP-MD5 and TCP-AO since the socket was
// keyed, and the kernel keeps the two apart on one socket (an MD5 key
// blocks ao_required).
var errForeign = errors.New("the socket carries keys of the other signature backend")

// foreign is errForeign (wrapped, naming both) when the listener's socket
// carries keys of a backend other than its own.
func (l *listener) foreign() error {
	other := plan.MD5
	if l.backend == plan.MD5 {
		other = plan.AO
	}
	keys, err := other.Keys(l.sock)
	// A kernel without TCP-AO, or a socket that never had a TCP-AO key,
	// says so with an error: nothing foreign.
	if err != nil && !errors.Is(err, tcpsig.ErrTooManyToRead) {
		return nil
	}
	for _, k := range keys {
		clear(k.Secret)
	}
	if err == nil && len(keys) == 0 {
		return nil
	}
	return fmt.Errorf("%w: it has %s keys from an earlier run and the keyring now signs its peers with %s", errForeign, other.Name(), l.backend.Name())
}

// server holds the state of one run.
type server struct {
	cfg   Config
	log   *log.Logger
	lns   []*listener
	keys  []md5.Key
	peers []keyring.Peer
	plan  *plan.Plan // what keys and peers came from
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
	// The only place the limits are checked: the command parses them
	// and passes them on as given, so an explicit 0 is refused here.
	if cfg.MaxConns < 1 {
		return UsageError{fmt.Sprintf("--max-conns %d: must be at least 1", cfg.MaxConns)}
	}
	if cfg.MaxStartups == (Startups{}) {
		cfg.MaxStartups = DefaultMaxStartups
	}
	if cfg.PerSourceMaxStartups < 1 {
		return UsageError{fmt.Sprintf("--per-source-max-startups %d: must be at least 1", cfg.PerSourceMaxStartups)}
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
	if _, err := listenaddr.Parse(cfg.Listen); err != nil {
		return UsageError{err.Error()}
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
//
// The keyring is loaded before any socket is opened: a keyring that does
// not load means no listener at all, so the port is closed, never open.
// Sockets this process opens get their keys before listen(), and are put
// in systemd's file descriptor store, so that a restart or a crash finds
// them again, keyed, with the key holders who connected meanwhile queued.
func Run(ctx context.Context, cfg Config) error {
	if err := cfg.Check(); err != nil {
		return err
	}
	s := &server{cfg: cfg, log: NewLogger(cfg.Stderr)}
	defer s.closeAll()
	err := s.start(ctx)
	var tbl *stealth.Table
	if err == nil {
		// Before anything is served, after the keys are on.
		tbl, err = s.applyStealth()
	}
	if err != nil {
		var ue UsageError
		if !errors.As(err, &ue) {
			s.failed(err)
		}
		return err
	}
	defer s.removeStealth(tbl)
	s.started()
	if cfg.Mode == ModeListener {
		return s.execListener()
	}
	return s.serveInetd(ctx)
}

// start loads the keyring and opens, adopts and keys every listener.
func (s *server) start(ctx context.Context) error {
	cfg := s.cfg
	// Take systemd's sockets first, before anything can fail: they must not
	// leak into children, and Files sets close-on-exec on them.
	stored, passed := splitFiles(activation.Files(true))
	closeFiles := func(fs []*os.File) {
		for _, f := range fs {
			f.Close()
		}
	}
	if len(passed) == 0 && len(cfg.Listen) == 0 {
		closeFiles(stored)
		return UsageError{"no sockets: systemd passed none (LISTEN_FDS) and no -l ADDR was given"}
	}
	if err := checkCommand(cfg.Command); err != nil {
		closeFiles(append(stored, passed...))
		return err
	}
	pl, err := loadKeys(cfg.Keyring)
	if err != nil {
		// Our copies of stored sockets close with this process; systemd
		// keeps its own, still keyed with the keys of the last good run.
		closeFiles(append(stored, passed...))
		return err
	}
	s.keys, s.peers, s.plan = pl.Keys, pl.Ring.Peers, pl
	logWarnings(s.log, "", pl.Ring)
	if len(passed) > 0 {
		// A .socket unit's sockets: bound by systemd, unkeyed until now.
		if len(cfg.Listen) > 0 {
			s.log.Printf("using the %d socket(s) systemd passed; ignoring -l", len(passed))
		}
		closeFiles(stored)
		if err := s.adopt(passed, false); err != nil {
			return err
		}
	} else if err := s.listenOrReuse(ctx, stored); err != nil {
		return err
	}
	// Read back and make exact: keys left on a socket by an earlier run
	// with another keyring must go, and a key set that cannot be read back
	// cannot be trusted to be there.
	total := 0
	for _, l := range s.lns {
		// Reconcile refuses an uncovered socket too; the plan says so
		// first, in the words check uses.
		lp := pl.For(l.sock)
		if lp.Err != nil {
			return fmt.Errorf("keying %s: %w", l.name, lp.Err)
		}
		if l.backend == nil {
			l.backend = lp.Backend
		}
	}
	for i, l := range s.lns {
		var d tcpsig.Diff
		err := l.foreign()
		if err == nil {
			d, err = l.rekey(s.keys)
		}
		if errors.Is(err, errForeign) && !l.stored {
			return fmt.Errorf("keying %s: %w; this socket came from a .socket unit: stop the unit and the service together (systemctl stop NAME.socket NAME.service) and start them again, or let the shim open its socket itself with -l, as the units in contrib/systemd do", l.name, err)
		}
		if (errors.Is(err, tcpsig.ErrTooManyToRead) || errors.Is(err, errForeign)) && l.stored {
			// Past the read-back limit the stale keys of the last run
			// cannot be found; a new socket has exactly ours. The port is
			// closed (not open) for the moment in between.
			s.log.Printf("%s: %v; replacing the stored socket with a new one (the port is closed for a moment)", l.name, err)
			nl, rerr := s.replace(ctx, l)
			if rerr != nil {
				return fmt.Errorf("keying %s: %w", l.name, rerr)
			}
			s.lns[i], l, d, err = nl, nl, tcpsig.Diff{}, nil
		}
		if err != nil {
			return fmt.Errorf("keying %s: %w", l.name, err)
		}
		n, _ := l.sock.Cover(s.keys)
		total += len(n)
		if !d.Empty() {
			s.log.Printf("%s: keys reconciled (%s)", l.name, d)
		}
	}
	// Only now, keyed, do new sockets go to systemd's store.
	for _, l := range s.lns {
		if l.storeName == "" || l.stored {
			continue
		}
		if err := fdstore.Store(l.storeName, l.sock.FD); err != nil {
			s.log.Printf("%s: could not put the socket in systemd's file descriptor store: %v; a restart will close the port for a moment", l.name, err)
		}
	}
	s.log.Printf("keyed %d listener(s) with %d key(s) from %s (%d [peers] entries)", len(s.lns), total, cfg.Keyring, len(s.peers))
	return nil
}

// splitFiles tells the sockets this project put in systemd's store from
// those a .socket unit passed.
func splitFiles(files []*os.File) (stored, passed []*os.File) {
	for _, f := range files {
		if strings.HasPrefix(f.Name(), fdstore.Prefix) {
			stored = append(stored, f)
		} else {
			passed = append(passed, f)
		}
	}
	return stored, passed
}

// listenOrReuse gives every -l address a keyed listener: the stored one
// bound to that address if systemd kept it, else a new one. Stored sockets
// that no -l names any more (the unit's addresses changed) are dropped
// from the store and closed.
func (s *server) listenOrReuse(ctx context.Context, stored []*os.File) error {
	reuse := map[string]*os.File{}
	for _, f := range stored {
		reuse[f.Name()] = f
	}
	addrs, _ := listenaddr.Parse(s.cfg.Listen) // Check has refused bad ones
	for _, la := range addrs {
		network, addr := la.Network, la.String()
		name := fdstore.Name(network + "-" + addr)
		if f, ok := reuse[name]; ok {
			delete(reuse, name)
			if err := s.adopt([]*os.File{f}, true); err != nil {
				return err
			}
			l := s.lns[len(s.lns)-1]
			l.storeName = name
			s.log.Printf("%s: listening socket kept by systemd across the restart", l.name)
			continue
		}
		// ListenControl would refuse it too, inside the kernel path; the
		// plan refuses first, in check's words.
		lp := s.plan.For(la.Socket)
		if lp.Err != nil {
			return fmt.Errorf("listening on %s: keyring %s: %w", addr, s.cfg.Keyring, lp.Err)
		}
		l, err := s.listen(ctx, network, addr, lp.Backend)
		if err != nil {
			return err
		}
		l.storeName = name
		s.lns = append(s.lns, l)
	}
	for name, f := range reuse {
		s.log.Printf("dropping the stored socket %s: no -l names it any more", strings.TrimPrefix(name, fdstore.Prefix))
		if err := fdstore.Remove(name); err != nil {
			s.log.Printf("%v", err)
		}
		f.Close()
	}
	return nil
}

// replace closes a stored listener and opens a new one on its address.
func (s *server) replace(ctx context.Context, l *listener) (*listener, error) {
	if err := fdstore.Remove(l.storeName); err != nil {
		s.log.Printf("%v", err)
	}
	l.close()
	la, err := listenaddr.One(l.listen)
	if err != nil {
		return nil, err
	}
	nl, err := s.listen(ctx, la.Network, la.String(), s.plan.For(la.Socket).Backend)
	if err != nil {
		return nil, err
	}
	nl.storeName = l.storeName
	return nl, nil
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

// logWarnings logs the problems of the keyring's [hosts], which the shim
// does not use: they must not stop it, nor go unnoticed.
func logWarnings(l *log.Logger, prefix string, kr *keyring.Keyring) {
	for _, w := range kr.Warnings {
		l.Printf("%swarning: %v (ignored: sshd-md5-socket uses only [peers])", prefix, w)
	}
}

// loadKeys reads the keyring and plans it: the plan check prints, so the
// shim refuses exactly what check refuses, with the same words. Interface
// names resolve here, so a reload picks up a VRF created since.
func loadKeys(path string) (*plan.Plan, error) {
	p, err := plan.Load(path)
	if err != nil {
		return nil, err // keyring errors name the file and the fix
	}
	if err := p.Err(); err != nil {
		return nil, err
	}
	return p, nil
}

// listen opens one listener with its keys set before bind and listen, so
// that no peer can ever complete a handshake unsigned.
func (s *server) listen(ctx context.Context, network, addr string, b tcpsig.Backend) (*listener, error) {
	lc := net.ListenConfig{Control: tcpsig.ListenControl(b, s.keys)}
	// MPTCP sockets cannot carry TCP-MD5 or TCP-AO keys.
	lc.SetMultipathTCP(false)
	ln, err := lc.Listen(ctx, network, addr)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			ap, _ := netip.ParseAddrPort(addr)
			if owners := inspect.PortOwners(ap.Port()); len(owners) > 0 {
				return nil, fmt.Errorf("listening on %s: address already in use: %s listens on port %d; stop it or pick another -l", addr, strings.Join(owners, ", "), ap.Port())
			}
			return nil, fmt.Errorf("listening on %s: address already in use: another process listens on port %d (run as root to see which: ss -tlnp); stop it or pick another -l", addr, ap.Port())
		}
		if errors.Is(err, syscall.EACCES) {
			return nil, fmt.Errorf("listening on %s: permission denied: ports below 1024 need root or CAP_NET_BIND_SERVICE (systemd: AmbientCapabilities=CAP_NET_BIND_SERVICE), or pick a port above 1023", addr)
		}
		var ue tcpsig.UncoveredError
		if errors.As(err, &ue) {
			return nil, fmt.Errorf("listening on %s: keyring %s: %w", addr, s.cfg.Keyring, plan.Word(ue))
		}
		return nil, fmt.Errorf("listening on %s: %w", addr, err)
	}
	// The listener's own fd, not a dup from File(): File's Fd would
	// switch the shared socket to blocking under the netpoller.
	sock, err := tcpsig.FromConn(mustRaw(ln.(*net.TCPListener).SyscallConn()))
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("listening on %s: %w", addr, err)
	}
	// ListenControl put exactly these on the new socket.
	l := &listener{name: ln.Addr().String(), listen: addr, sock: sock, backend: b, ln: ln, own: true}
	l.shadow.Assume(sock, s.keys)
	return l, nil
}

// adopt takes sockets systemd passed. Those of a .socket unit exist
// without keys until Reconcile runs, and whatever connected meanwhile is
// drained later. Stored ones were keyed before they ever listened.
func (s *server) adopt(files []*os.File, stored bool) error {
	for _, f := range files {
		fd := int(f.Fd())
		acc, err := syscall.GetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_ACCEPTCONN)
		if err != nil || acc != 1 {
			return fmt.Errorf("systemd socket %s (fd %d) is not a listening TCP socket; use ListenStream= with Accept=no", f.Name(), fd)
		}
		sock, err := tcpsig.Inspect(fd)
		if err != nil {
			return fmt.Errorf("systemd socket %s: %w", f.Name(), err)
		}
		name := f.Name()
		if sa, err := unix.Getsockname(fd); err == nil {
			if ap := tcpsig.AddrPortOf(sa); ap.IsValid() {
				name = ap.String()
			}
		}
		l := &listener{name: name, listen: name, file: f, sock: sock, stored: stored, own: stored}
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
		l.close()
	}
}

func (l *listener) close() {
	if l.ln != nil {
		l.ln.Close()
	}
	if l.file != nil {
		l.file.Close()
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
	sock, err := tcpsig.Inspect(fd)
	if err != nil {
		return false, err
	}
	keys, err := md5.Socket{Socket: sock}.Keys()
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
	ap := tcpsig.AddrPortOf(sa)
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
