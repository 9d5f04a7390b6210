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
	"github.com/sshmd5/sshmd5/internal/tcpsig/md5"
)

// Backend is the signature every listener gets: TCP-MD5, the only one the
// kernel offers sshd today.
var Backend tcpsig.Backend = md5.Backend

// Peer is one [peers] entry with the key it becomes.
type Peer struct {
	keyring.Peer
	// Key is the key to install; bound to no interface when Err is set.
	Key tcpsig.Key
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
	for _, e := range kr.Peers {
		// The kernel says a key cannot be bound to an interface only when
		// it is set; ask now, before anything is installed.
		ifx, err := e.Ifindex(path, md5.CheckBindable)
		if err != nil {
			p.Refusals = append(p.Refusals, err)
		}
		k := e.Key(ifx)
		p.Peers = append(p.Peers, Peer{Peer: e, Key: k, Err: err})
		p.Keys = append(p.Keys, k)
	}
	return p
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

// For plans the listening socket s.
func (p *Plan) For(s tcpsig.Socket) Listener {
	l := Listener{Socket: s, Backend: Backend}
	l.Apply, l.Uncovered = s.Cover(p.Keys)
	if err := Backend.Uncovered(s, p.Keys); err != nil {
		l.Err = Word(err)
	}
	return l
}

// Word gives an error from a backend the keyring's wording of its fix: an
// uncovered family becomes the [peers."…"] entry to add. Callers that meet
// a refusal only in the kernel (a socket keyed at listen) word it so too.
func Word(err error) error { return keyring.WordFix(err) }
