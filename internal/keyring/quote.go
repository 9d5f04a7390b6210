package keyring

import (
	"net/netip"
	"regexp"
	"strconv"
	"strings"
)

// unquotedHeader is a [peers.X] or [hosts.X] header whose X holds what
// TOML reads as more parts (dots) or cannot read at all (colons,
// slashes): [peers.10.0.0.0/8]. Only these characters, so that what it
// quotes back is a table name, never other text of the line.
var unquotedHeader = regexp.MustCompile(`^\[\s*(peers|hosts)\s*\.\s*([A-Za-z0-9_.:/*?-]*[.:/][A-Za-z0-9_.:/*?-]*)\s*\]\s*(#.*)?$`)

// quoteHint says how to write the header on line (1-based) of data when
// it is an unquoted name that needs quotes, e.g. `quote it:
// [peers."10.0.0.0/8"]`, or "". A [peers] name must be an address or
// prefix to be quoted back; a [hosts] name is an alias, host name, glob,
// address or CIDR.
func quoteHint(data []byte, line int) string {
	if line < 1 {
		return ""
	}
	text := string(data)
	for range line - 1 {
		i := strings.IndexByte(text, '\n')
		if i < 0 {
			return ""
		}
		text = text[i+1:]
	}
	text, _, _ = strings.Cut(text, "\n")
	m := unquotedHeader.FindStringSubmatch(strings.TrimSpace(text))
	if m == nil {
		return ""
	}
	table, name := m[1], m[2]
	if table == "peers" {
		if _, err := netip.ParsePrefix(name); err != nil {
			if _, err := netip.ParseAddr(name); err != nil {
				return ""
			}
		}
	}
	return "quote it: [" + table + "." + strconv.Quote(name) + "]"
}
