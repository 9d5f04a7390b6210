package tcpsig

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
)

// The secret type is what keeps keys out of logs on every backend.
func TestSecretNeverPrints(t *testing.T) {
	s := Secret("hunter2-not-for-logs")
	k := Key{Prefix: netip.MustParsePrefix("10.0.0.0/8"), Secret: s}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d"} {
		for _, v := range []any{s, k, []Secret{s}, struct{ S Secret }{s}} {
			if out := fmt.Sprintf(verb, v); strings.Contains(out, "hunter2") || strings.Contains(out, fmt.Sprintf("%x", []byte("hunter2"))) {
				t.Errorf("%s of %T printed the secret: %s", verb, v, out)
			}
		}
	}
}

func TestCoverPerFamily(t *testing.T) {
	all4 := Key{Prefix: netip.MustParsePrefix("0.0.0.0/0"), Secret: Secret("a")}
	all6 := Key{Prefix: netip.MustParsePrefix("::/0"), Secret: Secret("b")}
	bound4 := Key{Prefix: netip.MustParsePrefix("0.0.0.0/0"), Ifindex: 7, Secret: Secret("c")}
	host6 := Key{Prefix: netip.MustParsePrefix("2001:db8::1/128"), Secret: Secret("d")}
	v4 := Socket{Takes4: true}
	dual := Socket{Takes4: true, Takes6: true}
	for _, c := range []struct {
		s         Socket
		keys      []Key
		apply     int
		uncovered string
	}{
		{v4, []Key{all4, all6}, 1, "[]"},
		{v4, []Key{bound4}, 1, "[0.0.0.0/0]"},
		{dual, []Key{all4, host6}, 2, "[::/0]"},
		{dual, []Key{all4, all6, host6}, 3, "[]"},
		{dual, nil, 0, "[0.0.0.0/0 ::/0]"},
	} {
		apply, unc := c.s.Cover(c.keys)
		if len(apply) != c.apply || fmt.Sprint(unc) != c.uncovered {
			t.Errorf("%s socket, keys %v: apply %d, uncovered %v; want %d, %s", c.s.Families(), c.keys, len(apply), unc, c.apply, c.uncovered)
		}
		if (c.s.Uncovered(c.keys) == nil) != (c.uncovered == "[]") {
			t.Errorf("%s socket, keys %v: Uncovered disagrees with Cover", c.s.Families(), c.keys)
		}
	}
}
