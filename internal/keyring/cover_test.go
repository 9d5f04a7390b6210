package keyring

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/sshmd5/sshmd5/internal/tcpsig"
)

// The uncovered-family message suggests only what would help: not
// "listen on one family only" to a socket that already does, and not
// "add [peers."0.0.0.0/0"]" when that entry exists, bound to an interface.
func TestUncoveredMessage(t *testing.T) {
	all4 := netip.MustParsePrefix("0.0.0.0/0")
	v4only := tcpsig.Socket{Takes4: true}
	err := WordFix(v4only.Uncovered(nil))
	if msg := fmt.Sprint(err); !strings.Contains(msg, `add [peers."0.0.0.0/0"] with a key`) || strings.Contains(msg, "one family only") {
		t.Errorf("IPv4-only socket, no keys: %s", msg)
	}
	dual := tcpsig.Socket{Takes4: true, Takes6: true}
	if msg := fmt.Sprint(WordFix(dual.Uncovered(nil))); !strings.Contains(msg, "or listen on one family only") {
		t.Errorf("dual-stack socket, no keys: %s", msg)
	}
	bound := []tcpsig.Key{{Prefix: all4, Ifindex: 7, Secret: tcpsig.Secret("k")}}
	msg := fmt.Sprint(WordFix(v4only.Uncovered(bound)))
	if !strings.Contains(msg, "the key for 0.0.0.0/0 is bound to an interface") || strings.Contains(msg, "add [peers.") {
		t.Errorf("catch-all bound to an interface: %s", msg)
	}
	if err := v4only.Uncovered([]tcpsig.Key{{Prefix: all4, Secret: tcpsig.Secret("k")}}); err != nil {
		t.Errorf("covered socket: %v", err)
	}
}

// The backend's own message names no keyring syntax; WordFix adds it and
// keeps what wrapped the error.
func TestWordFixKeepsTheChain(t *testing.T) {
	ue := tcpsig.Socket{Takes6: true}.Uncovered(nil)
	if strings.Contains(ue.Error(), "[peers.") || !strings.Contains(ue.Error(), "add a key for ::/0") {
		t.Errorf("backend message: %s", ue)
	}
	err := WordFix(fmt.Errorf("listen [::]:22: %w", ue))
	if got, want := err.Error(), "listen [::]:22: "+strings.Replace(ue.Error(), "a key for ::/0", `[peers."::/0"] with a key`, 1); got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	var back tcpsig.UncoveredError
	if !errors.As(err, &back) {
		t.Errorf("WordFix lost the UncoveredError")
	}
	if plain := fmt.Errorf("other"); WordFix(plain) != plain || WordFix(nil) != nil {
		t.Errorf("WordFix changed an error without UncoveredError")
	}
}
