//go:build linux

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

	"github.com/sshmd5/sshmd5/internal/cliflag"
	"github.com/sshmd5/sshmd5/internal/inspect"
	"github.com/sshmd5/sshmd5/internal/listenaddr"
	"github.com/sshmd5/sshmd5/internal/nodump"
	"github.com/sshmd5/sshmd5/internal/shim"
	"github.com/sshmd5/sshmd5/internal/stealth"
	"github.com/sshmd5/sshmd5/internal/version"
)

const usage = `usage: sshd-md5-socket [-k KEYRING] [-l ADDR]... [--mode inetd|listener]
                       [--max-conns N] [--max-startups START:RATE:FULL]
                       [--per-source-max-startups N] [--knocks=false]
                       [--stealth filtered|closed|auto] [-- COMMAND ARGS...]
       sshd-md5-socket check [-k KEYRING] [-l ADDR]... [--stealth MODE]
       sshd-md5-socket status [--json] [-k KEYRING] | sshd-md5-socket --version

Put the TCP-MD5 (RFC 2385) or TCP-AO (RFC 5925) keys of KEYRING's [peers]
on sshd's listening sockets before listen(): only peers signing connect. A
keyring that does not load, or leaves a peer family uncovered, opens
nothing. check and status have their own -h; see sshd-md5-socket(8).

  -k KEYRING     default /etc/ssh/md5-keyring.toml (systemd: credential)
  -l ADDR        repeatable: [::]:22 or :22 (IPv4 and IPv6), 0.0.0.0:22
  --mode inetd   (default) run COMMAND (sshd -i) per connection; SIGHUP
                 rereads the keyring, a bad one keeps the old keys
  --mode listener  exec COMMAND (sshd -D) with the sockets; never SIGHUP it
  --max-conns N  inetd: at most N connections (default 100)
  --max-startups, --per-source-max-startups  inetd: not yet authenticated
                 ones, as sshd's MaxStartups (10:30:60), per IP or /64 (8)
  --knocks=false inetd: do not log who knocks with a wrong key or none
  --stealth MODE filtered (default: no answer), closed (a closed port's), auto
  --version      print the version    -h  show this help
Exit status: 0 after SIGTERM, 1 on errors, 2 on usage errors.
`

const checkUsage = `usage: sshd-md5-socket check [-k KEYRING] [-l ADDR]... [--stealth MODE]

Print what KEYRING would install on each -l ADDR (default [::]:22): its
prefixes, their families and key sources, never a key; every reason the
shim would refuse to serve it; the stealth mode in force and what
--stealth MODE would do; and the host's limits (net.core.optmem_max,
net.ipv6.bindv6only). Warns while ssh.service or ssh.socket is not masked.
Opens no socket.

  -k KEYRING   the keyring, default as for sshd-md5-socket
  -l ADDR      a listen address, as for sshd-md5-socket; repeatable
  --stealth MODE  the mode to check, as for sshd-md5-socket
  -h           show this help

Exit status: 0 if the shim would start, 1 if it would refuse (or the
keyring does not load), 2 on a usage error.
`

const statusUsage = `usage: sshd-md5-socket status [--json] [-k KEYRING]

Print the kernel's TCP-MD5 drop counters; for each listening socket that
a process named sshd-md5-socket or sshd holds in this network namespace,
the prefixes of its keys as the kernel reports them (never a key); and why
the last start under systemd failed. Reading another process's sockets
needs root. Warns while ssh.service or ssh.socket is not masked.

  --json       print the result as JSON
  -k KEYRING   name TCP-AO keys from it, default as for sshd-md5-socket
  -h           show this help

Exit status: 0 if every listener is keyed for every peer family it takes;
1 if one takes unsigned peers, its keys cannot be read, or there is no
listener; 2 on a usage error.
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
	showVersion := fs.Bool("version", false, "")
	cliflag.Once(fs, "l")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stderr, usage)
			return 0
		}
		return usageError(stderr, "", "%s", cliflag.Message(fs, err))
	}
	if *showVersion {
		fmt.Fprint(os.Stdout, version.String("sshd-md5-socket"))
		return 0
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
		return usageError(stderr, "", "%v", err)
	default:
		fmt.Fprintf(stderr, "sshd-md5-socket: %v\n", err)
		return 1
	}
}

// usageError reports a usage error of subcommand sub ("" for none) on one
// line that points to its -h, and returns 2: the usage text itself would
// bury the message.
func usageError(stderr io.Writer, sub, format string, a ...any) int {
	cmd := "sshd-md5-socket"
	if sub != "" {
		cmd += " " + sub
	}
	fmt.Fprintf(stderr, "%s: %s; see %s -h\n", cmd, fmt.Sprintf(format, a...), cmd)
	return 2
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
		fs.StringVar(&kr, "k", "", "")
	}
	cliflag.Once(fs, "l")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			if cmd == "check" {
				fmt.Fprint(stderr, checkUsage)
			} else {
				fmt.Fprint(stderr, statusUsage)
			}
			return 0
		}
		return usageError(stderr, cmd, "%s", cliflag.Message(fs, err))
	}
	if fs.NArg() > 0 {
		return usageError(stderr, cmd, "unexpected argument %q", fs.Arg(0))
	}
	var err error
	if cmd == "check" {
		if _, lerr := listenaddr.Parse(listen); lerr != nil {
			return usageError(stderr, cmd, "%v", lerr)
		}
		sm, serr := stealth.ParseMode(mode)
		if serr != nil {
			return usageError(stderr, cmd, "%v", serr)
		}
		err = inspect.Check(stdout, kr, listen)
		if serr := inspect.CheckStealth(stdout, sm, listen); serr != nil {
			err = errors.Join(err, serr)
		}
	} else {
		err = inspect.Status(stdout, asJSON, kr)
	}
	if err != nil {
		fmt.Fprintf(stderr, "sshd-md5-socket %s: %v\n", cmd, err)
		return 1
	}
	return 0
}
