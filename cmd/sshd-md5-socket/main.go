// Command sshd-md5-socket puts RFC 2385 TCP-MD5 keys on sshd's listening
// sockets and serves only connections that carry them. See -h.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/sshmd5/sshmd5/internal/inspect"
	"github.com/sshmd5/sshmd5/internal/listenaddr"
	"github.com/sshmd5/sshmd5/internal/nodump"
	"github.com/sshmd5/sshmd5/internal/shim"
	"github.com/sshmd5/sshmd5/internal/stealth"
)

const usage = `usage: sshd-md5-socket [-k KEYRING] [-l ADDR]... [--mode inetd|listener]
                       [--max-conns N] [--max-startups START:RATE:FULL]
                       [--per-source-max-startups N] [--knocks=false]
                       [--stealth filtered|closed|auto] [-- COMMAND ARGS...]
       sshd-md5-socket check [-k KEYRING] [-l ADDR]... [--stealth MODE]
       sshd-md5-socket status [--json]

Put the TCP-MD5 (RFC 2385) keys of KEYRING's [peers] on sshd's listening
sockets, so that only peers signing with their key can connect.

-l opens each address with the keys on before listen(); a keyring that
does not load opens nothing. Under systemd the keyed sockets go to its fd
store and come back, keyed, after a restart or a crash. Sockets of a
.socket unit (LISTEN_FDS) are keyed at start; what queued before is closed.
Each listener gets one key per [peers] prefix, and is refused if any peer
family it takes (IPv4, IPv6, both for [::]) has no catch-all key.

  -k KEYRING     keyring (default $CREDENTIALS_DIRECTORY/md5-keyring.toml
                 under systemd, else /etc/ssh/md5-keyring.toml)
  -l ADDR        listen on ADDR, e.g. -l [::]:22 (IPv4 and IPv6) or
                 -l 0.0.0.0:22; repeatable
  --mode inetd   (default) accept here and run COMMAND per connection with
                 it as stdin/stdout (default COMMAND: /usr/sbin/sshd -i).
                 Works with any OpenSSH; each connection's key is checked;
                 SIGHUP rereads the keyring and rekeys the sockets, a bad
                 keyring keeps the old keys; SIGTERM stops accepting and
                 leaves sessions running.
  --mode listener  key, then exec COMMAND (default /usr/sbin/sshd -D) with
                 the sockets as LISTEN_FDS; needs an sshd that takes systemd
                 sockets (Debian 12+, Ubuntu 22.10+). Never SIGHUP that
                 sshd: it drops the keyed sockets and binds unkeyed ones.
                 Restart instead.
  --max-conns N  inetd mode: at most N concurrent connections (default 100);
                 more are closed and logged
  --max-startups START:RATE:FULL
                 inetd mode, as sshd's MaxStartups: past START connections
                 not yet authenticated, close a new one with probability
                 RATE% rising to 100% at FULL (default 10:30:60; N alone
                 means N:100:N). Authenticated sessions do not count
  --per-source-max-startups N
                 inetd mode: at most N connections not yet authenticated
                 per IPv4 address or IPv6 /64 (default 8)
  --knocks=false inetd mode: do not log the peers whose segments the kernel
                 drops for a wrong key or none (see KNOCKS in the man page)
  --stealth MODE how unsigned segments are answered: filtered (default):
                 not at all, so scans say "filtered"; closed: exactly as
                 this host answers a closed port (nftables table inet
                 sshd_md5_socket, at most 1000 answers/s, one port for all
                 listeners); auto: closed if nftables can be used
  -h             show this help

check: print what KEYRING would install per -l ADDR (default [::]:22),
the stealth mode in force, and why the shim would refuse; status: drop counters and the key prefixes of
each running listener here (--json), and why the last start failed. Both
warn while ssh.service or ssh.socket is not masked. Neither prints keys.
Exit 1: check would refuse; status found a listener that takes unsigned
peers, keys it cannot read, or no listener.

Exit status: 0 after SIGTERM, 1 on errors, 2 on usage errors.
`

// hup subscribes to SIGHUP before main runs: by default a SIGHUP kills a
// Go program, and one can come at any moment of startup.
var hup = make(chan os.Signal, 1)

func init() { signal.Notify(hup, syscall.SIGHUP) }

func main() { nodump.Set(); os.Exit(Main()) } // no core with keys in it

// Main is the command, returning its exit status (testscript calls it).
func Main() int {
	return run(os.Args[1:], os.Stderr)
}

type listFlag []string

func (l *listFlag) String() string     { return fmt.Sprint(*l) }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func run(args []string, stderr *os.File) int {
	if len(args) > 0 && (args[0] == "check" || args[0] == "status") {
		signal.Reset(syscall.SIGHUP)
		return runInspect(args[0], args[1:], os.Stdout, stderr)
	}
	var cfg shim.Config
	fs := flag.NewFlagSet("sshd-md5-socket", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&cfg.Keyring, "k", "", "")
	fs.Var((*listFlag)(&cfg.Listen), "l", "")
	fs.StringVar(&cfg.Mode, "mode", shim.ModeInetd, "")
	fs.IntVar(&cfg.MaxConns, "max-conns", shim.DefaultMaxConns, "")
	fs.Func("max-startups", "", func(v string) (err error) {
		cfg.MaxStartups, err = shim.ParseStartups(v)
		return err
	})
	fs.IntVar(&cfg.PerSourceMaxStartups, "per-source-max-startups", shim.DefaultPerSourceMaxStartups, "")
	knocks := fs.Bool("knocks", true, "")
	fs.StringVar(&cfg.Stealth, "stealth", string(stealth.DefaultMode), "")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stderr, usage)
			return 0
		}
		fmt.Fprintf(stderr, "sshd-md5-socket: %v\n%s", err, usage)
		return 2
	}
	if cfg.MaxConns < 1 {
		fmt.Fprintf(stderr, "sshd-md5-socket: --max-conns %d: must be at least 1\n%s", cfg.MaxConns, usage)
		return 2
	}
	if cfg.PerSourceMaxStartups < 1 {
		fmt.Fprintf(stderr, "sshd-md5-socket: --per-source-max-startups %d: must be at least 1\n%s", cfg.PerSourceMaxStartups, usage)
		return 2
	}
	cfg.NoKnocks = !*knocks
	cfg.Command = fs.Args()
	cfg.Stderr = stderr
	cfg.Reload = hup

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	err := shim.Run(ctx, cfg)
	var ue shim.UsageError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "sshd-md5-socket: %v\n%s", err, usage)
		return 2
	default:
		fmt.Fprintf(stderr, "sshd-md5-socket: %v\n", err)
		return 1
	}
}

// runInspect runs the check and status subcommands.
func runInspect(cmd string, args []string, stdout io.Writer, stderr *os.File) int {
	fs := flag.NewFlagSet("sshd-md5-socket "+cmd, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var (
		kr     string
		listen []string
		asJSON bool
		mode   string
	)
	if cmd == "check" {
		fs.StringVar(&kr, "k", "", "")
		fs.Var((*listFlag)(&listen), "l", "")
		fs.StringVar(&mode, "stealth", string(stealth.DefaultMode), "")
	} else {
		fs.BoolVar(&asJSON, "json", false, "")
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stderr, usage)
			return 0
		}
		fmt.Fprintf(stderr, "sshd-md5-socket %s: %v\n%s", cmd, err, usage)
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "sshd-md5-socket %s: unexpected argument %q\n%s", cmd, fs.Arg(0), usage)
		return 2
	}
	var err error
	if cmd == "check" {
		if _, lerr := listenaddr.Parse(listen); lerr != nil {
			fmt.Fprintf(stderr, "sshd-md5-socket check: %v\n%s", lerr, usage)
			return 2
		}
		sm, serr := stealth.ParseMode(mode)
		if serr != nil {
			fmt.Fprintf(stderr, "sshd-md5-socket check: %v\n%s", serr, usage)
			return 2
		}
		err = inspect.Check(stdout, kr, listen)
		if serr := inspect.CheckStealth(stdout, sm, listen); serr != nil {
			err = errors.Join(err, serr)
		}
	} else {
		err = inspect.Status(stdout, asJSON)
	}
	if err != nil {
		fmt.Fprintf(stderr, "sshd-md5-socket %s: %v\n", cmd, err)
		return 1
	}
	return 0
}
