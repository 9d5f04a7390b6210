//go:build linux

package main

import (
	"fmt"
	"io"
	"net/netip"
	"strings"

	"github.com/sshmd5/sshmd5/internal/keyring"
)

// noKey says that the keyring has no key for the host, and what would
// give it one. Lookup tries the alias first, so the usual mistakes are
// about the alias: a ProxyCommand without -n %n while the keyring names
// hosts by alias, and a mistyped alias.
func noKey(stderr io.Writer, sub, alias, host string, kr *keyring.Keyring) {
	// ssh passes an IPv6 %h in brackets; the entry is named without.
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	name := host
	if alias != "" && alias != host {
		name = alias
	}
	why := ""
	if sub == "" {
		why = "; it will not connect unsigned"
	}
	errorf(stderr, "%sno key for %s in %s%s", sub, describe(alias, host), kr.Path, why)
	add := fmt.Sprintf("add a [hosts.%s] entry with key_file = \"...\" (or key = \"...\") to the keyring", tomlKey(name))
	if near := nearest(name, kr.Hosts); near != "" {
		if name == alias {
			errorf(stderr, "hint: did you mean %s? -n %s names [hosts.%s]; or %s", near, near, tomlKey(near), add)
		} else {
			errorf(stderr, "hint: did you mean %s? The keyring has [hosts.%s]; or %s", near, tomlKey(near), add)
		}
		return
	}
	if name == host {
		if names := aliasNames(kr.Hosts); names != "" {
			how := "-n %n, as in ProxyCommand ssh-md5-proxy -n %n %h %p"
			if sub != "" {
				how = "-n ALIAS" // typed by hand, not by ssh
			}
			errorf(stderr, "hint: the keyring names hosts by ssh alias (%s); pass the alias: %s", names, how)
			errorf(stderr, "hint: or %s", add)
			return
		}
	}
	errorf(stderr, "hint: %s", add)
}

// isAddrName tells an entry named by address or CIDR from one named by
// alias or glob.
func isAddrName(n string) bool {
	if _, err := netip.ParseAddr(n); err == nil {
		return true
	}
	_, err := netip.ParsePrefix(n)
	return err == nil
}

// aliasNames lists up to three entries that only an alias (-n %n) can
// match: names and globs, not addresses.
func aliasNames(hosts []keyring.Host) string {
	var names []string
	n := 0
	for _, h := range hosts {
		if isAddrName(h.Name) {
			continue
		}
		if n++; n <= 3 {
			names = append(names, h.Name)
		}
	}
	if n > 3 {
		names = append(names, fmt.Sprintf("and %d more", n-3))
	}
	return strings.Join(names, ", ")
}

// nearest is the entry name (or hostname) closest to name by edit
// distance, if it is close enough to be a typo of it, else "".
func nearest(name string, hosts []keyring.Host) string {
	const maxLen = 255 // a DNS name's limit; keeps the distance cheap
	if len(name) > maxLen || isAddrName(name) {
		return ""
	}
	limit := 2
	if len(name) <= 4 {
		limit = 1
	}
	best, bestD := "", limit+1
	for _, h := range hosts {
		for _, c := range []string{h.Name, h.Hostname} {
			if c == "" || len(c) > maxLen || isAddrName(c) || strings.ContainsAny(c, "*?[") {
				continue
			}
			// Distance 0 is a name that differs only in case, which the
			// exact lookup does not forgive.
			if d := editDistance(strings.ToLower(name), strings.ToLower(c)); c != name && d < bestD {
				best, bestD = h.Name, d
			}
		}
	}
	return best
}

// editDistance counts the insertions, deletions, substitutions and
// transpositions of adjacent bytes that turn a into b (optimal string
// alignment): "mysrever" is one from "myserver".
func editDistance(a, b string) int {
	prev2 := make([]int, len(b)+1)
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}
