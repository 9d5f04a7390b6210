package keyring

import (
	"net/netip"
	"path"
	"strings"
)

// Lookup finds the [hosts] entry ssh-md5-proxy signs with. alias is ssh's
// %n (the name as typed; may be ""), host is %h (what will be dialled). The
// order is in the package documentation. It reports false when nothing
// matches.
func (k *Keyring) Lookup(alias, host string) (Host, bool) {
	exact := alias
	if exact == "" {
		exact = host
	}
	for _, h := range k.Hosts {
		if h.Name == exact {
			return h, true
		}
	}
	for _, h := range k.Hosts {
		if h.Hostname != "" && sameHost(h.Hostname, host) {
			return h, true
		}
	}
	for _, s := range []string{alias, host} {
		if s == "" {
			continue
		}
		s = strings.ToLower(s)
		best, bestScore := -1, -1
		for i, h := range k.Hosts {
			if !isGlob(h.Name) {
				continue
			}
			if ok, _ := path.Match(strings.ToLower(h.Name), s); !ok {
				continue
			}
			// Strictly greater keeps the earlier entry on a tie.
			if sc := literalChars(h.Name); sc > bestScore {
				best, bestScore = i, sc
			}
		}
		if best >= 0 {
			return k.Hosts[best], true
		}
	}
	addr, err := netip.ParseAddr(host)
	if err != nil {
		return Host{}, false
	}
	addr = addr.WithZone("").Unmap()
	best, bestBits := -1, -1
	for i, h := range k.Hosts {
		p, ok, _ := hostPrefix(h.Name)
		if ok && p.Contains(addr) && p.Bits() > bestBits {
			best, bestBits = i, p.Bits()
		}
	}
	if best < 0 {
		return Host{}, false
	}
	return k.Hosts[best], true
}

// sameHost compares DNS names without case, and addresses by value so that
// "2001:db8::1" and "2001:DB8:0::1" are one host.
func sameHost(a, b string) bool {
	if strings.EqualFold(a, b) {
		return true
	}
	x, err1 := netip.ParseAddr(a)
	y, err2 := netip.ParseAddr(b)
	return err1 == nil && err2 == nil && x.Unmap() == y.Unmap()
}

func isGlob(s string) bool { return strings.ContainsAny(s, "*?[") }

func checkGlob(s string) error {
	if _, err := path.Match(s, ""); err != nil {
		return errBadGlob
	}
	return nil
}

// literalChars measures how specific a glob is: the characters that must
// match themselves. A [class] counts as a wildcard.
func literalChars(pattern string) int {
	n := 0
	for i := 0; i < len(pattern); i++ {
		switch pattern[i] {
		case '*', '?':
		case '\\':
			i++
			n++
		case '[':
			for i < len(pattern) && pattern[i] != ']' {
				if pattern[i] == '\\' {
					i++
				}
				i++
			}
		default:
			n++
		}
	}
	return n
}
