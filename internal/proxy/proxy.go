//go:build linux

// Package proxy is the logic of ssh-md5-proxy: it dials a TCP connection
// signed with TCP-MD5 (RFC 2385) or TCP-AO (RFC 5925) and either relays it
// over stdin/stdout or hands the socket itself to ssh (ProxyUseFdpass).
//
// It fails closed: every connection attempt gets its key before connect, and
// an attempt whose key cannot be set is abandoned, so nothing is ever sent
// unsigned when a key was meant. Each key is dialled with its own backend
// (TCP-AO for a key with an AO part, TCP-MD5 otherwise) and never with the
// other: a TCP-AO key on a kernel without TCP-AO fails the whole dial
// before anything is sent.
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
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sshmd5/sshmd5/internal/tcpsig"
	"github.com/sshmd5/sshmd5/internal/tcpsig/ao"
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
	// Keys are the keys to sign with, newest first: one, or up to
	// keyring.MaxHostKeys during a rotation, each dialled at once on a
	// socket of its own. A key with an AO part is TCP-AO, else TCP-MD5;
	// the prefix is ignored (each attempt is keyed for the exact address
	// it dials).
	Keys []tcpsig.Key
	// KeyName says where the keys came from, for messages (e.g.
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
// answers, signing every attempt. With several o.Keys it dials with each at
// once, a socket per key, returns the first connection to complete and the
// index of its key in o.Keys, and closes the others.
//
// Before anything is sent it checks the keys (Check): an empty or
// oversized secret, or a TCP-AO key on a kernel without TCP-AO, fails the
// whole dial, never only that key's attempt.
//
// Errors are *NoAnswerError when the deadline passed with no answer (the
// usual symptom of a key mismatch: the server drops the SYN silently),
// *RefusedError when the connection was refused, and otherwise a wrapped
// error naming host and port.
func DialAny(ctx context.Context, o Options) (*net.TCPConn, int, error) {
	if err := Check(o); err != nil {
		return nil, -1, err
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
	if len(o.Keys) == 1 {
		c, err := dialOne(ctx, o, network, o.Keys[0], &tried)
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
	ch := make(chan result, len(o.Keys))
	for i, k := range o.Keys {
		go func() {
			c, err := dialOne(race, o, network, k, &tried)
			ch <- result{i, c, err}
		}()
	}
	errs := make([]error, len(o.Keys))
	var won *result
	for range o.Keys {
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

// Check refuses keys that DialAny must not dial with, before anything is
// sent: none at all, an empty secret (the kernel would take it as "no
// key", an unsigned dial), a secret or TCP-AO parameters the kernel would
// refuse, and TCP-AO keys when the kernel has no TCP-AO (the error then
// wraps ao.ErrNoKernel). A TCP-AO key is never dialled as TCP-MD5 instead,
// nor the other way round. Its messages name keys by place, kind and, for
// TCP-AO, name and IDs; never by secret.
func Check(o Options) error {
	if len(o.Keys) == 0 {
		return errors.New("proxy: no key given; refusing to dial unsigned")
	}
	var aoKeys []string
	for i, k := range o.Keys {
		which := keyLabel(i, len(o.Keys), k)
		switch n := len(k.Secret); {
		case n == 0:
			return fmt.Errorf("proxy: %s has an empty secret; refusing to dial unsigned", which)
		case n > tcpsig.MaxKeyLen:
			return fmt.Errorf("proxy: %s: secret is %d bytes, the kernel takes 1 to %d", which, n, tcpsig.MaxKeyLen)
		}
		if k.AO == nil {
			continue
		}
		if !slices.Contains(tcpsig.AOAlgorithms, k.AO.Algorithm) {
			return fmt.Errorf("proxy: %s: algorithm %q is not one the kernel offers (%s)", which, k.AO.Algorithm, strings.Join(tcpsig.AOAlgorithms, ", "))
		}
		if k.AO.MACLen < 4 || k.AO.MACLen > 20 {
			return fmt.Errorf("proxy: %s: MAC length %d is outside 4 to 20 bytes", which, k.AO.MACLen)
		}
		aoKeys = append(aoKeys, aoLabel(*k.AO))
	}
	if len(aoKeys) > 0 {
		if err := ao.Supported(); err != nil {
			from := ""
			if o.KeyName != "" {
				from = " from " + o.KeyName
			}
			what := "the key" + from + " is TCP-AO"
			switch {
			case len(aoKeys) < len(o.Keys):
				what = "the keys" + from + " include TCP-AO ones" // none is dialled alone
			case len(o.Keys) > 1:
				what = "the keys" + from + " are TCP-AO"
			}
			return fmt.Errorf("%s port %s: %s (%s), and %w; nothing was sent",
				o.Host, o.Port, what, strings.Join(aoKeys, "; "), err)
		}
	}
	return nil
}

// keyLabel names key i of n for messages: "key 2 of 3 (TCP-AO key alice,
// send_id 1, recv_id 101)".
func keyLabel(i, n int, k tcpsig.Key) string {
	s := "the key"
	if n > 1 {
		s = fmt.Sprintf("key %d of %d", i+1, n)
	}
	if k.AO != nil {
		return s + " (" + aoLabel(*k.AO) + ")"
	}
	return s + " (TCP-MD5)"
}

// aoLabel names a TCP-AO key by what the server's keyring names it by:
// "TCP-AO key alice, send_id 1, recv_id 101".
func aoLabel(a tcpsig.AO) string {
	name := ""
	if a.Name != "" {
		name = " " + a.Name
	}
	return fmt.Sprintf("TCP-AO key%s, send_id %d, recv_id %d", name, a.SendID, a.RecvID)
}

// backendOf is the backend a key is dialled with: its own, by its kind.
func backendOf(k tcpsig.Key) tcpsig.Backend {
	if k.AO != nil {
		return ao.Backend
	}
	return md5.Backend
}

// dialOne dials with one key.
func dialOne(ctx context.Context, o Options, network string, k tcpsig.Key, tried *attempts) (*net.TCPConn, error) {
	sign := backendOf(k).DialControl(k)
	d := net.Dialer{
		Resolver: o.Resolver,
		// Control runs for each address Happy Eyeballs tries, before
		// connect; an error here aborts that attempt, never the key.
		// An address counts as tried once its SYN can only go signed.
		Control: func(network, address string, c syscall.RawConn) error {
			if err := sign(network, address, c); err != nil {
				return err
			}
			tried.add(address)
			return nil
		},
	}
	// MPTCP sockets cannot carry TCP-MD5 or TCP-AO keys (ENOPROTOOPT);
	// even if the default changes, a keyless fallback is not acceptable.
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
		return &RefusedError{Host: o.Host, Port: o.Port, Tried: tried, KeyName: o.KeyName, Keys: len(o.Keys), AO: aoParts(o.Keys)}
	case isTimeout(err):
		return &NoAnswerError{Host: o.Host, Port: o.Port, Tried: tried, Timeout: o.Timeout, KeyName: o.KeyName, Keys: len(o.Keys), AO: aoParts(o.Keys)}
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

// aoParts returns the TCP-AO part of each key, copied (nil for a TCP-MD5
// key), or nil when no key is TCP-AO: what an error may say about the keys,
// which is never their secrets.
func aoParts(keys []tcpsig.Key) []*tcpsig.AO {
	var out []*tcpsig.AO
	for i, k := range keys {
		if k.AO == nil {
			continue
		}
		if out == nil {
			out = make([]*tcpsig.AO, len(keys))
		}
		a := *k.AO
		out[i] = &a
	}
	return out
}

// NoAnswerError means no address answered before the deadline. That is
// what a key mismatch looks like: a TCP-MD5 or TCP-AO server drops a SYN
// whose signature it cannot verify without a word, and so does a NAT'd
// path (the signature covers the addresses).
type NoAnswerError struct {
	Host, Port string
	Tried      []string // addresses a SYN was sent to
	Timeout    time.Duration
	KeyName    string
	Keys       int // how many keys were tried, each on its own socket
	// AO holds, per key tried and in order, its TCP-AO part (name and
	// IDs; nil for a TCP-MD5 key); nil when every key was TCP-MD5.
	AO []*tcpsig.AO
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
	b.WriteString(signedWith(e.KeyName, e.Keys, e.AO))
	if len(e.AO) == 0 {
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
	// TCP-AO: the server picks its key by the KeyID our SYN carries (our
	// send_id), which must be the recv_id of a key it holds for our
	// address, and drops the SYN unanswered when there is none or when
	// the MAC does not verify.
	which, ids := "this key", sendIDs(e.AO)
	if e.Keys > 1 {
		which = "any of these keys"
	}
	b.WriteString(". Likely causes: the server does not hold " + which + ":" +
		" the secret or MAC algorithm differs;" +
		" it has no key with recv_id " + ids + " (our send_id) for your address, an unknown KeyID;" +
		" or the key was revoked (removed from the server's keyring)." +
		" The server drops such a SYN without a word and counts it (nstat TcpExtTCPAOKeyNotFound for an unknown KeyID, TcpExtTCPAOBad for a wrong secret)." +
		" Or: a NAT between you and the server rewrites addresses, which breaks TCP-AO;" +
		" the host is down or filtered;" +
		" nothing listens on that port (its reset is unsigned, so it is dropped and looks the same).")
	return b.String()
}

// sendIDs lists the TCP-AO keys' send_ids: "1", "2 or 1".
func sendIDs(aos []*tcpsig.AO) string {
	var ids []string
	for _, a := range aos {
		if a != nil {
			ids = append(ids, strconv.Itoa(int(a.SendID)))
		}
	}
	return strings.Join(ids, " or ")
}

// RefusedError means the connection was refused. A plain reset from a
// closed port is unsigned and the kernel drops it (the dial then times
// out), so this takes a signed reset or an ICMP port-unreachable.
type RefusedError struct {
	Host, Port string
	Tried      []string
	KeyName    string
	Keys       int
	AO         []*tcpsig.AO // as in NoAnswerError
}

func (e *RefusedError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s port %s: connection refused", e.Host, e.Port)
	if len(e.Tried) > 0 {
		fmt.Fprintf(&b, " by %s", strings.Join(e.Tried, ", "))
	}
	b.WriteString(signedWith(e.KeyName, e.Keys, e.AO))
	b.WriteString(". Nothing accepts connections on that port: the " + kinds(e.Keys, e.AO) + " listener or sshd is not running, the port is wrong, or a firewall rejects it.")
	return b.String()
}

// kinds names the backends of keys: "TCP-MD5", "TCP-AO" or "TCP-MD5 or
// TCP-AO".
func kinds(keys int, aos []*tcpsig.AO) string {
	n := 0
	for _, a := range aos {
		if a != nil {
			n++
		}
	}
	switch {
	case n == 0:
		return "TCP-MD5"
	case n == keys:
		return "TCP-AO"
	}
	return "TCP-MD5 or TCP-AO"
}

// signedWith says which keys signed the attempts, for a message: where
// they came from and, for TCP-AO, each key's name and IDs.
func signedWith(keyName string, keys int, aos []*tcpsig.AO) string {
	if len(aos) == 0 {
		switch {
		case keyName == "":
			return ""
		case keys > 1:
			return fmt.Sprintf(" (signed with each of the %d keys from %s, one connection each)", keys, keyName)
		}
		return " (signed with the key from " + keyName + ")"
	}
	from := ""
	if keyName != "" {
		from = " from " + keyName
	}
	labels := make([]string, len(aos))
	for i, a := range aos {
		labels[i] = "TCP-MD5 key"
		if a != nil {
			labels[i] = aoLabel(*a)
		}
	}
	if len(labels) == 1 {
		if from != "" {
			from = "," + from // after the IDs
		}
		return " (signed with " + labels[0] + from + ")"
	}
	return fmt.Sprintf(" (signed with each of the %d keys%s, one connection each: %s)", len(labels), from, strings.Join(labels, "; "))
}
