//go:build linux

package testnet

import (
	"os"
	"strconv"
	"strings"
)

// Children returns the pids whose parent is pid, each with its state
// letter from /proc/PID/stat ("S", "R", "Z" for a zombie, ...): what a
// test checks to see that a server reaps its sessions.
func Children(pid int) map[int]string {
	kids := map[int]string{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...; comm may hold spaces and parens.
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) < 2 {
			continue
		}
		if pp, _ := strconv.Atoi(f[1]); pp == pid {
			kids[p] = f[0]
		}
	}
	return kids
}
