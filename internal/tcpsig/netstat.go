package tcpsig

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// ReadTcpExt reads the TcpExt counters of a netstat file (/proc/net/netstat,
// or /proc/thread-self/net/netstat for a thread switched to another network
// namespace), by name. The backends' drop counters (TCPMD5*, TCPAO*) live
// there; each backend picks its own and says what their absence means.
func ReadTcpExt(path string) (map[string]uint64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	// The file holds pairs of lines: "TcpExt: Name1 Name2 ..." then
	// "TcpExt: 1 2 ...".
	var names []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 || fields[0] != "TcpExt:" {
			continue
		}
		if names == nil {
			names = fields[1:]
			continue
		}
		if len(fields)-1 != len(names) {
			return nil, fmt.Errorf("%s: %d TcpExt counter names but %d values", path, len(names), len(fields)-1)
		}
		c := make(map[string]uint64, len(names))
		for i, v := range fields[1:] {
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("%s: %s: %w", path, names[i], err)
			}
			c[names[i]] = n
		}
		return c, nil
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return nil, fmt.Errorf("%s: no TcpExt counters", path)
}
