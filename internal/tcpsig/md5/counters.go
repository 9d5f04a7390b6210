//go:build linux

package md5

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Counters are the kernel's TCP-MD5 drop counters of the calling process's
// network namespace.
type Counters struct {
	NotFound   uint64 // unsigned segment where a key was expected
	Failure    uint64 // signed with the wrong key
	Unexpected uint64 // signed segment where no key was expected
}

// Sub returns the increase from old to c.
func (c Counters) Sub(old Counters) Counters {
	return Counters{c.NotFound - old.NotFound, c.Failure - old.Failure, c.Unexpected - old.Unexpected}
}

// ReadCounters reads TcpExt TCPMD5* from /proc/net/netstat.
func ReadCounters() (Counters, error) {
	return ReadCountersAt("/proc/net/netstat")
}

// ReadCountersAt reads them from a netstat file of another place, such as
// /proc/thread-self/net/netstat for a thread switched to another network
// namespace.
func ReadCountersAt(path string) (Counters, error) {
	f, err := os.Open(path)
	if err != nil {
		return Counters{}, err
	}
	defer f.Close()
	// The file holds pairs of lines: "TcpExt: Name1 Name2 ..." then
	// "TcpExt: 1 2 ...".
	var names []string
	var c Counters
	seen := 0
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
		for i, v := range fields[1:] {
			if i >= len(names) {
				break
			}
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				return Counters{}, fmt.Errorf("%s: %s: %w", path, names[i], err)
			}
			switch names[i] {
			case "TCPMD5NotFound":
				c.NotFound = n
			case "TCPMD5Failure":
				c.Failure = n
			case "TCPMD5Unexpected":
				c.Unexpected = n
			default:
				continue
			}
			seen++
		}
		if seen != 3 {
			return Counters{}, fmt.Errorf("%s: no TcpExt TCPMD5* counters (a kernel without CONFIG_TCP_MD5SIG?)", path)
		}
		return c, nil
	}
	if err := sc.Err(); err != nil {
		return Counters{}, err
	}
	return Counters{}, fmt.Errorf("%s: no TcpExt counters", path)
}
