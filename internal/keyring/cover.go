package keyring

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/sshmd5/sshmd5/internal/tcpsig"
)

// PeerEntry names the [peers] entry that holds the key for p.
func PeerEntry(p netip.Prefix) string { return fmt.Sprintf("[peers.%q]", p.String()) }

// WordFix returns err with the fix of a tcpsig.UncoveredError it holds
// named as the keyring entries to add: the backend knows which prefixes
// are missing, the keyring how they are written. Other errors come back
// as they are.
func WordFix(err error) error {
	var ue tcpsig.UncoveredError
	if err == nil || !errors.As(err, &ue) {
		return err
	}
	return worded{err, strings.Replace(err.Error(), ue.Error(), ue.Worded(PeerEntry), 1)}
}

type worded struct {
	err error
	msg string
}

func (w worded) Error() string { return w.msg }
func (w worded) Unwrap() error { return w.err }
