//go:build linux

// Package plan turns a server keyring and the listeners it is meant for
// into what sshd-md5-socket does with them: for each listener the backend,
// the keys to install and every reason to refuse. The shim applies a plan
// and `sshd-md5-socket check` prints one, so the two cannot disagree on
// whether a keyring is good or on how a refusal is worded.
package plan

import (
	"fmt"
	"net/netip"

	"github.com/sshmd5/sshmd5/internal/keyring"
	"github.com/sshmd5/sshmd5/internal/tcpsig"
	"github.com/sshmd5/sshmd5/internal/tcpsig/ao"
	"github.com/sshmd5/sshmd5/internal/tcpsig/md5"
)

// The backends a listener can get: TCP-MD5 for [peers] entries with key
// or key_file, TCP-AO for entries with ao. The keyring holds one backend
// per peer family, so a socket taking one family has one.
var (
	MD5 tcpsig.Backend = md5.Backend
	AO  tcpsig.Backend = ao.Backend
)

// Peer is one [peers] entry with the key it becomes.
type Peer struct {
	keyring.Peer
	// Key is the key to install (the first of Keys, for a TCP-AO entry);
	// bound to no interface when Err is set.
	Key tcpsig.Key
	// Keys are the entry's keys: one TCP-MD5 key or its TCP-AO keys.
	Keys []tcpsig.Key
	// Err is why the entry cannot be installed (a missing interface, or
	// one a key cannot be bound to), worded with the entry and the fix.
	Err error
}

// Plan is a keyring made ready to install.
type Plan struct {
	Path  string
	Ring  *keyring.Keyring
	Peers []Peer
	// Keys are the keys of Peers, in keyring order.
	Keys []tcpsig.Key
	// Refusals are the keyring-wide reasons not to start, in the order
	// check prints them; the shim stops at the first.
	Refusals []error
}

// Load reads the server keyring at path and plans it. The error is the
// keyring's own (it names the file and the fix); reasons to refuse a
// keyring that parses are in the plan's Refusals.
func Load(path string) (*Plan, error) {
	kr, err := keyring.Load(path, keyring.Server)
	if err != nil {
		return nil, err
	}
	return Make(path, kr), nil
}

// Make plans a parsed keyring read from path.
func Make(path string, kr *keyring.Keyring) *Plan {
	p := &Plan{Path: path, Ring: kr}
	if len(kr.Peers) == 0 {
		p.Refusals = append(p.Refusals, fmt.Errorf("keyring %s has no [peers]: nothing to sign incoming connections with; add [peers.\"0.0.0.0/0\"] and [peers.\"::/0\"]", path))
	}
	var aoEntry *keyring.Peer
	for _, e := range kr.Peers {
		if e.IsAO() && aoEntry == nil {
			aoEntry = &e
		}
	}
	// Before anything is opened: a kernel without TCP-AO would fail the
	// first key, and the port must not be opened half keyed.
	if aoEntry != nil {
		if err := ao.Supported(); err != nil {
			p.Refusals = append(p.Refusals, fmt.Errorf("%s: %w", aoEntry.Where(path), err))
		}
	}
	for _, e := range kr.Peers {
		// The kernel says a key cannot be bound to an interface only when
		// it is set; ask now, before anything is installed. TCP-AO binds
		// keys to the same kind of interface (an L3 master) as TCP-MD5.
		ifx, err := e.Ifindex(path, md5.CheckBindable)
		if err != nil {
			p.Refusals = append(p.Refusals, err)
		}
		keys := e.Keys(ifx)
		p.Peers = append(p.Peers, Peer{Peer: e, Key: keys[0], Keys: keys, Err: err})
		p.Keys = append(p.Keys, keys...)
	}
	return p
}

// Name gives a TCP-AO key's [peers] name, or "" (TCP-MD5 keys have none).
func Name(k tcpsig.Key) string {
	if k.AO == nil {
		return ""
	}
	return k.AO.Name
}

// Err is the first reason to refuse the keyring as a whole, or nil.
func (p *Plan) Err() error {
	if len(p.Refusals) == 0 {
		return nil
	}
	return p.Refusals[0]
}

// Listener is the plan for one listening socket.
type Listener struct {
	Socket  tcpsig.Socket
	Backend tcpsig.Backend
	// Apply are the keys the socket gets: those of the families it takes.
	Apply []tcpsig.Key
	// Uncovered are the catch-all prefixes of families the socket takes
	// that no key covers.
	Uncovered []netip.Prefix
	// Err is why the socket must not be served (peers it takes would
	// connect unsigned), worded with the [peers] entry that fixes it.
	Err error
}

// For plans the listening socket s: TCP-AO when the keys of the families
// it takes are TCP-AO ones, else TCP-MD5.
func (p *Plan) For(s tcpsig.Socket) Listener {
	l := Listener{Socket: s, Backend: MD5}
	l.Apply, l.Uncovered = s.Cover(p.Keys)
	var md5Key, aoKey *tcpsig.Key
	for i, k := range l.Apply {
		if k.AO != nil && aoKey == nil {
			aoKey = &l.Apply[i]
		} else if k.AO == nil && md5Key == nil {
			md5Key = &l.Apply[i]
		}
	}
	switch {
	case aoKey != nil && md5Key != nil:
		// The keyring allows one backend per family; a dual-stack socket
		// takes both families, and one socket cannot carry TCP-MD5 keys
		// and be sealed for TCP-AO.
		l.Err = fmt.Errorf("the socket takes %s peers, and the keyring signs one family with TCP-MD5 (%s) and the other with TCP-AO (%s); one socket cannot do both: listen on each family apart (-l 0.0.0.0:PORT -l [::]:PORT)",
			s.Families(), md5Key.Prefix, aoKey.Prefix)
	case aoKey != nil:
		// Sealed (ao_required) when keyed: no peer of any family gets in
		// unsigned, whatever the prefixes.
		l.Backend, l.Uncovered = AO, nil
		// The kernel takes an IPv4 prefix on a dual-stack socket only as
		// v4-mapped, and a /0 there would be ::/0: it refuses the key.
		if s.Takes4 && s.Takes6 {
			for _, k := range l.Apply {
				if k.AO != nil && k.Prefix.Addr().Is4() && k.Prefix.Bits() == 0 {
					l.Err = fmt.Errorf("TCP-AO key %s: a dual-stack socket cannot carry a TCP-AO key for all of IPv4 (the kernel would take it as ::/0); listen on each family apart (-l 0.0.0.0:PORT -l [::]:PORT), or key IPv4 peers by narrower prefixes", k)
					break
				}
			}
		}
	default:
		if err := MD5.Uncovered(s, p.Keys); err != nil {
			l.Err = Word(err)
		}
	}
	return l
}

// Word gives an error from a backend the keyring's wording of its fix: an
// uncovered family becomes the [peers."…"] entry to add. Callers that meet
// a refusal only in the kernel (a socket keyed at listen) word it so too.
func Word(err error) error { return keyring.WordFix(err) }
