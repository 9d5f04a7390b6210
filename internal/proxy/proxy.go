//go:build linux

// Package proxy is the logic of ssh-md5-proxy: it dials a TCP connection
// signed with TCP-MD5 (RFC 2385) and either relays it over stdin/stdout or
// hands the socket itself to ssh (ProxyUseFdpass).
//
// It fails closed: every connection attempt gets its key before connect, and
// an attempt whose key cannot be set is abandoned, so nothing is ever sent
// unsigned when a key was meant.
//
// A host may have several keys while its key is rotated: Dial then races
// one connection per key, each signed with its own from the first SYN, and
// keeps the first whose handshake completes. A server drops the SYNs whose
// signature it cannot verify without a word, so the others never answer
// and are closed.
package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sshmd5/sshmd5/internal/tcpsig/md5"
)

// Options say what Dial connects to and how.
type Options struct {
	Host string // name or address to resolve and dial (ssh's %h)
	Port string // number or service name (ssh's %p)
	// Network is "tcp" (both families, Happy Eyeballs), "tcp4" or "tcp6".
	Network string
	// Timeout bounds resolving and connecting together; 0 means none.
	Timeout time.Duration
	// Secrets are the keys to sign with, newest first: one, or up to
	// keyring.MaxHostKeys during a rotation, each dialled at once.
	Secrets []md5.Secret
	// KeyName says where the secrets came from, for messages (e.g.
	// "hosts.bastion"); it must never be a secret.
	KeyName string
	// Resolver resolves Host; nil means net.DefaultResolver.
	Resolver *net.Resolver
}

// Dial is DialAny without the index of the key that connected.
func Dial(ctx context.Context, o Options) (*net.TCPConn, error) {
	c, _, err := DialAny(ctx, o)
	return c, err
}

// DialAny resolves o.Host and connects to the first of its addresses that
// answers, signing every attempt. With several o.Secrets it dials with each
// at once, a socket per key, returns the first connection to complete and
// the index of its key in o.Secrets, and closes the others.
//
// Errors are *NoAnswerError when the deadline passed with no answer (the
// usual symptom of a key mismatch: the server drops the SYN silently),
// *RefusedError when the connection was refused, and otherwise a wrapped
// error naming host and port.
func DialAny(ctx context.Context, o Options) (*net.TCPConn, int, error) {
	if len(o.Secrets) == 0 {
		return nil, -1, errors.New("proxy: no secret given; refusing to dial unsigned")
	}
	for _, s := range o.Secrets {
		if len(s) == 0 {
			// Fail closed: an empty secret would make DialControl's
			// key a delete, i.e. an unsigned dial.
			return nil, -1, errors.New("proxy: an empty secret given; refusing to dial unsigned")
		}
	}
	network := o.Network
	if network == "" {
		network = "tcp"
	}
	if o.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.Timeout)
		defer cancel()
	}
	var tried attempts
	if len(o.Secrets) == 1 {
		c, err := dialOne(ctx, o, network, o.Secrets[0], &tried)
		if err != nil {
			return nil, -1, classify(err, o, tried.list())
		}
		return c, 0, nil
	}
	// One goroutine per key, so the sockets are made on other threads:
	// a caller that entered a network namespace on its own thread only
	// (setns) must run the whole process in it, as ip netns exec does.
	// The losers are cancelled once one connects; a SYN_SENT socket
	// closes without a packet, so the server sees nothing more of them.
	race, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		i   int
		c   *net.TCPConn
		err error
	}
	ch := make(chan result, len(o.Secrets))
	for i, s := range o.Secrets {
		go func() {
			c, err := dialOne(race, o, network, s, &tried)
			ch <- result{i, c, err}
		}()
	}
	errs := make([]error, len(o.Secrets))
	var won *result
	for range o.Secrets {
		r := <-ch
		switch {
		case r.err != nil:
			errs[r.i] = r.err
		case won == nil:
			won = &r
			cancel()
		default:
			r.c.Close() // completed at the same moment: one is enough
		}
	}
	if won != nil {
		return won.c, won.i, nil
	}
	// Every key failed. A refusal or a local error says more than a
	// silence, which is what every key but the server's gets anyway.
	err := errs[0]
	for _, e := range errs {
		if !isTimeout(e) {
			err = e
			break
		}
	}
	return nil, -1, classify(err, o, tried.list())
}

// dialOne dials with one key.
func dialOne(ctx context.Context, o Options, network string, secret md5.Secret, tried *attempts) (*net.TCPConn, error) {
	sign := md5.DialControl(secret)
	d := net.Dialer{
		Resolver: o.Resolver,
		// Control runs for each address Happy Eyeballs tries, before
		// connect; an error here aborts that attempt, never the key.
		Control: func(network, address string, c syscall.RawConn) error {
			tried.add(address)
			return sign(network, address, c)
		},
	}
	// MPTCP sockets cannot carry TCP-MD5 keys (ENOPROTOOPT); even if the
	// default changes, a keyless fallback is not acceptable.
	d.SetMultipathTCP(false)
	c, err := d.DialContext(ctx, network, net.JoinHostPort(o.Host, o.Port))
	if err != nil {
		return nil, err
	}
	tc, ok := c.(*net.TCPConn)
	if !ok {
		c.Close()
		return nil, fmt.Errorf("%s port %s: dial returned %T, not a TCP connection", o.Host, o.Port, c)
	}
	return tc, nil
}

// attempts records the addresses Dial tried; Happy Eyeballs calls Control
// from two goroutines at once.
type attempts struct {
	mu    sync.Mutex
	addrs []string
}

func (a *attempts) add(address string) {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		host = address
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if !slices.Contains(a.addrs, host) {
		a.addrs = append(a.addrs, host)
	}
}

func (a *attempts) list() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.addrs)
}

// classify turns a dial error into one that tells the user what to check.
func classify(err error, o Options, tried []string) error {
	network := o.Network
	var dnsErr *net.DNSError
	var addrErr *net.AddrError
	switch {
	case errors.As(err, &dnsErr) && dnsErr.Err == "unknown port",
		errors.As(err, &addrErr) && addrErr.Err == "invalid port":
		// Go says "lookup tcp/x" or "address x": the port, not the host.
		return fmt.Errorf("%s port %s: not a port number (1 to 65535) or a service name from /etc/services", o.Host, o.Port)
	case errors.As(err, &addrErr) && addrErr.Err == "no suitable address found" && (network == "tcp4" || network == "tcp6"):
		fam, flag := "IPv6", "-6"
		if network == "tcp4" {
			fam, flag = "IPv4", "-4"
		}
		return fmt.Errorf("%s port %s: %s has no %s address, the only family %s allows; drop %s", o.Host, o.Port, o.Host, fam, flag, flag)
	case errors.As(err, &dnsErr):
		if dnsErr.IsTimeout {
			return fmt.Errorf("%s port %s: resolving %s: no answer within %v", o.Host, o.Port, o.Host, o.Timeout)
		}
		return fmt.Errorf("%s port %s: resolving %s: %w", o.Host, o.Port, o.Host, dnsErr)
	case errors.Is(err, syscall.ECONNREFUSED):
		return &RefusedError{Host: o.Host, Port: o.Port, Tried: tried, KeyName: o.KeyName, Keys: len(o.Secrets)}
	case isTimeout(err):
		return &NoAnswerError{Host: o.Host, Port: o.Port, Tried: tried, Timeout: o.Timeout, KeyName: o.KeyName, Keys: len(o.Secrets)}
	case len(tried) == 0:
		// Nothing was dialled: the error is about resolving or
		// choosing an address (e.g. -6 for a host with only IPv4).
		return fmt.Errorf("%s port %s: %w", o.Host, o.Port, unwrapOp(err))
	}
	return fmt.Errorf("%s port %s: connecting to %s: %w", o.Host, o.Port, strings.Join(tried, ", "), unwrapOp(err))
}

func isTimeout(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, syscall.ETIMEDOUT) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// unwrapOp drops net.OpError's "dial tcp 1.2.3.4:22:" prefix, which repeats
// what the caller's message already says.
func unwrapOp(err error) error {
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		return op.Err
	}
	return err
}

// NoAnswerError means no address answered before the deadline. With
// TCP-MD5 that is what a key mismatch looks like: the server drops a SYN
// whose signature it cannot verify without a word, and so does a NAT'd path
// (the signature covers the addresses).
type NoAnswerError struct {
	Host, Port string
	Tried      []string // addresses a SYN was sent to
	Timeout    time.Duration
	KeyName    string
	Keys       int // how many keys were tried, each on its own socket
}

func (e *NoAnswerError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s port %s: no answer", e.Host, e.Port)
	if e.Timeout > 0 {
		fmt.Fprintf(&b, " within %v", e.Timeout)
	}
	if len(e.Tried) > 0 {
		fmt.Fprintf(&b, " from %s", strings.Join(e.Tried, ", "))
	}
	b.WriteString(signedWith(e.KeyName, e.Keys))
	which := "this key"
	if e.Keys > 1 {
		which = "any of these keys"
	}
	b.WriteString(". Likely causes: the server does not have " + which + " or has another one;" +
		" a NAT between you and the server rewrites addresses, which breaks TCP-MD5;" +
		" the host is down or filtered;" +
		" nothing listens on that port (its reset is unsigned, so it is dropped and looks the same).")
	return b.String()
}

// RefusedError means the connection was refused. A plain reset from a
// closed port is unsigned and the kernel drops it (the dial then times
// out), so this takes a signed reset or an ICMP port-unreachable.
type RefusedError struct {
	Host, Port string
	Tried      []string
	KeyName    string
	Keys       int
}

func (e *RefusedError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s port %s: connection refused", e.Host, e.Port)
	if len(e.Tried) > 0 {
		fmt.Fprintf(&b, " by %s", strings.Join(e.Tried, ", "))
	}
	b.WriteString(signedWith(e.KeyName, e.Keys))
	b.WriteString(". Nothing accepts connections on that port: the TCP-MD5 listener or sshd is not running, the port is wrong, or a firewall rejects it.")
	return b.String()
}

func signedWith(keyName string, keys int) string {
	switch {
	case keyName == "":
		return ""
	case keys > 1:
		return fmt.Sprintf(" (signed with each of the %d keys from %s, one connection each)", keys, keyName)
	}
	return " (signed with the key from " + keyName + ")"
}
