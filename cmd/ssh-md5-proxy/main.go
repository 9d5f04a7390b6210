//go:build linux

// Command ssh-md5-proxy is an OpenSSH ProxyCommand that connects with
// TCP-MD5 (RFC 2385) or TCP-AO (RFC 5925) signatures, taking the keys from
// a keyring file.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/sshmd5/sshmd5/internal/cliflag"
	"github.com/sshmd5/sshmd5/internal/keyring"
	"github.com/sshmd5/sshmd5/internal/nodump"
	"github.com/sshmd5/sshmd5/internal/proxy"
	"github.com/sshmd5/sshmd5/internal/version"
)

const usage = `Usage: ssh-md5-proxy [-k KEYRING] [-n ALIAS] [-t TIMEOUT] [-4|-6] [--fdpass]
                     HOST PORT
       ssh-md5-proxy --has-key [-k KEYRING] [-n ALIAS] HOST
       ssh-md5-proxy keygen -o FILE [-n ALIAS]
       ssh-md5-proxy probe [-k KEYRING] [-n ALIAS] [-t TIMEOUT] ... HOST [PORT]
       ssh-md5-proxy --version

Connect to HOST port PORT signing every segment with TCP-MD5 (RFC 2385)
or TCP-AO (RFC 5925), as the keyring says, as an OpenSSH ProxyCommand.
It never connects unsigned. keygen writes a new key, probe checks a
server: see "keygen -h", "probe -h", and the man page ssh-md5-proxy(1).

    -k KEYRING  Default: $SSH_MD5_KEYRING, else ~/.ssh/md5-keyring.toml.
    -n ALIAS    Look the key up by this alias (ssh's %n) before HOST.
    -t TIMEOUT  Resolve and connect within TIMEOUT ("10s", "1m" or seconds).
    -4, -6      Use only IPv4 or only IPv6 addresses.
    --fdpass    Pass the connected socket to ssh (with ProxyUseFdpass yes).
    --has-key   Exit 0 if there is a key for ALIAS and HOST, 1 if not, and 0
                on any error, so that ssh runs the proxy, which fails closed.
    --version   Print the version.     -h  Print this help.

Exit status: 0 on success, 2 on a usage error, 255 on any other error
(--has-key: 0 key found or any error, 1 no key).
`

func main() {
	nodump.Set() // before any key is read: a core would hold it
	os.Exit(Main())
}

// Main runs the command and returns its exit status.
func Main() int {
	return run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
}

func errorf(stderr io.Writer, format string, args ...any) {
	fmt.Fprintf(stderr, "ssh-md5-proxy: "+format+"\n", args...)
}

// usageError returns the usage error reporter of subcommand sub ("" for
// none): one line that points to the subcommand's -h, exit status 2. The
// usage text itself would bury the message.
func usageError(stderr io.Writer, sub string) func(format string, a ...any) int {
	cmd := "ssh-md5-proxy"
	if sub != "" {
		cmd += " " + sub
	}
	return func(format string, a ...any) int {
		fmt.Fprintf(stderr, "%s: %s; see %s -h\n", cmd, fmt.Sprintf(format, a...), cmd)
		return 2
	}
}

// run is Main with its inputs explicit.
func run(args []string, stdin, stdout *os.File, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "keygen":
			return runKeygen(args[1:], stdout, stderr)
		case "probe":
			return runProbe(args[1:], stdout, stderr)
		}
	}
	flags := flag.NewFlagSet("ssh-md5-proxy", flag.ContinueOnError)
	flags.SetOutput(io.Discard) // we print our own usage, once
	var (
		keyringPath, alias, timeoutStr string
		only4, only6, fdpass, hasKey   bool
		showVersion                    bool
	)
	flags.StringVar(&keyringPath, "k", "", "")
	flags.StringVar(&alias, "n", "", "")
	flags.StringVar(&timeoutStr, "t", "10s", "")
	flags.BoolVar(&only4, "4", false, "")
	flags.BoolVar(&only6, "6", false, "")
	flags.BoolVar(&fdpass, "fdpass", false, "")
	flags.BoolVar(&hasKey, "has-key", false, "")
	flags.BoolVar(&showVersion, "version", false, "")
	cliflag.Once(flags)
	usageErr := usageError(stderr, "")
	if err := flags.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			io.WriteString(stderr, usage)
			return 0
		}
		if slices.Contains(args, "--has-key") || slices.Contains(args, "-has-key") {
			usageErr("%s", cliflag.Message(flags, err))
			return hasKeyMatch(stderr, "a usage error")
		}
		return usageErr("%s", cliflag.Message(flags, err))
	}
	if showVersion {
		io.WriteString(stdout, version.String("ssh-md5-proxy"))
		return 0
	}
	if hasKey {
		return runHasKey(flags.Args(), keyringPath, alias, stderr)
	}
	if flags.NArg() != 2 {
		return usageErr("want HOST and PORT, got %d argument(s)", flags.NArg())
	}
	host, port := flags.Arg(0), flags.Arg(1)
	if host == "" || port == "" {
		return usageErr("HOST and PORT must not be empty")
	}
	host, err := normHost(host)
	if err != nil {
		return usageErr("%v", err)
	}
	if err := checkPort(port); err != nil {
		return usageErr("%v", err)
	}
	if only4 && only6 {
		return usageErr("-4 and -6 exclude each other")
	}
	timeout, err := parseTimeout(timeoutStr)
	if err != nil {
		return usageErr("-t %s: %v", timeoutStr, err)
	}
	network := "tcp"
	if only4 {
		network = "tcp4"
	} else if only6 {
		network = "tcp6"
	}

	// Before dialling: a connection we could not hand over would be wasted.
	if fdpass {
		if err := proxy.CheckFDPass(stdout); err != nil {
			errorf(stderr, "%v", err)
			return 255
		}
	}

	kr, code := loadKeyring(keyringPath, stderr)
	if kr == nil {
		return code
	}
	h, ok := kr.Lookup(alias, host)
	if !ok {
		noKey(stderr, "", alias, host, kr)
		return 255
	}

	// ssh sends SIGHUP when it is done with us; that is a normal end.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		<-hup
		os.Exit(0)
	}()

	conn, err := proxy.Dial(context.Background(), proxy.Options{
		Host:    host,
		Port:    port,
		Network: network,
		Timeout: timeout,
		Keys:    h.DialKeys(),
		KeyName: "hosts." + tomlKey(h.Name),
	})
	if err != nil {
		errorf(stderr, "%v", err)
		return 255
	}
	if fdpass {
		err = proxy.SendFD(stdout, conn)
		conn.Close() // ssh has its own descriptor now
	} else {
		err = proxy.Copy(conn, stdin, stdout)
	}
	if err != nil {
		errorf(stderr, "%s port %s: %v", host, port, err)
		return 255
	}
	return 0
}

// runHasKey is --has-key [-n ALIAS] HOST, for ssh's Match exec. It must
// find what the proxy would find for the same alias and host. Anything
// but a sound keyring without an entry exits 0: ssh then runs the proxy,
// which reports the problem and fails closed. A non-zero status would
// make ssh dial by itself, unsigned.
func runHasKey(args []string, keyringPath, alias string, stderr io.Writer) int {
	match := func(format string, a ...any) int {
		errorf(stderr, "--has-key: "+format, a...)
		return hasKeyMatch(stderr, "")
	}
	if len(args) != 1 || args[0] == "" {
		return match("want one HOST (ssh's %%h, with -n %%n for the alias), got %d argument(s); see -h", len(args))
	}
	host, err := normHost(args[0])
	if err != nil {
		return match("%v", err)
	}
	// Match exec runs --has-key for every host the user connects to:
	// with no keyring at the default place, no host has a key, and that
	// is no reason to print on every ssh. A keyring named with -k or
	// $SSH_MD5_KEYRING must exist.
	if keyringPath == "" && os.Getenv("SSH_MD5_KEYRING") == "" {
		if p, err := keyring.DefaultClientPath(); err == nil {
			if _, err := os.Lstat(p); errors.Is(err, fs.ErrNotExist) {
				return 1
			}
			keyringPath = p
		}
	}
	kr, _ := loadKeyring(keyringPath, stderr)
	if kr == nil {
		return match("the keyring did not load")
	}
	if _, ok := kr.Lookup(alias, host); ok {
		return 0
	}
	return 1
}

// hasKeyMatch is --has-key's answer when it cannot tell: yes.
func hasKeyMatch(stderr io.Writer, why string) int {
	if why != "" {
		why = " after " + why
	}
	errorf(stderr, "--has-key: matching anyway%s, so that ssh runs the proxy, which will not connect unsigned", why)
	return 0
}

// normHost takes HOST as ssh passes it, brackets around an IPv6 address
// included.
func normHost(h string) (string, error) {
	inner, ok := strings.CutPrefix(h, "[")
	if !ok {
		return h, nil
	}
	inner, ok = strings.CutSuffix(inner, "]")
	if a, err := netip.ParseAddr(inner); !ok || err != nil || !a.Is6() {
		return "", fmt.Errorf("HOST %q: brackets hold an IPv6 address, e.g. [2001:db8::1] or 2001:db8::1", h)
	}
	return inner, nil
}

// checkPort refuses numeric ports the kernel would not dial: port 0 would
// wait out the timeout and then blame the key.
func checkPort(p string) error {
	n, err := strconv.Atoi(p)
	if err != nil {
		return nil // a service name; the dial says if it is unknown
	}
	if n < 1 || n > 65535 {
		return fmt.Errorf("PORT %s: not a port number; a port is 1 to 65535", p)
	}
	return nil
}

// loadKeyring loads the keyring, or prints why not and returns the exit
// status.
func loadKeyring(path string, stderr io.Writer) (*keyring.Keyring, int) {
	if path == "" {
		var err error
		if path, err = keyring.DefaultClientPath(); err != nil {
			errorf(stderr, "%v", err)
			return nil, 255
		}
	}
	// Say how to create a missing keyring: a first-time user hits this.
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		errorf(stderr, "keyring %s does not exist; create it (chmod 600) with an entry per host, e.g.\n\n"+
			"    [hosts.bastion]\n    key_file = \"md5/bastion.key\"\n\n"+
			"or name another file with -k or $SSH_MD5_KEYRING", path)
		return nil, 255
	}
	kr, err := keyring.Load(path, keyring.Client)
	if err != nil {
		errorf(stderr, "%v", err)
		return nil, 255
	}
	return kr, 0
}

// parseTimeout takes a Go duration or a number of seconds, as ssh's
// ConnectTimeout does.
func parseTimeout(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		secs, ferr := strconv.ParseFloat(s, 64)
		if ferr != nil {
			return 0, errors.New(`not a duration ("10s", "1m30s") or a number of seconds`)
		}
		d = time.Duration(secs * float64(time.Second))
	}
	if d <= 0 {
		return 0, errors.New("must be positive")
	}
	return d, nil
}

func describe(alias, host string) string {
	if alias == "" || alias == host {
		return host
	}
	return fmt.Sprintf("%s (alias %s)", host, alias)
}

func tomlKey(name string) string { return proxy.TOMLKey(name) }
