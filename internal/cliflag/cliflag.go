// Package cliflag words the flag package's parse errors the way the
// commands speak ("unknown flag -x"), for a one-line usage error that
// points to -h instead of printing the whole usage text.
package cliflag

import (
	"errors"
	"flag"
	"fmt"
	"strings"
)

// Message is err, from flag.FlagSet.Parse, in the commands' words. Long
// options are written with two dashes, as the usage texts write them.
func Message(fs *flag.FlagSet, err error) string {
	msg := err.Error()
	if name, ok := strings.CutPrefix(msg, "flag provided but not defined: -"); ok {
		return "unknown flag " + Dash(name)
	}
	if name, ok := strings.CutPrefix(msg, "flag needs an argument: -"); ok {
		return Dash(name) + " needs an argument"
	}
	if rest, ok := strings.CutPrefix(msg, "invalid value "); ok {
		// invalid value "lots" for flag -max-conns: parse error
		val, rest, _ := strings.Cut(rest, " for flag -")
		name, why, _ := strings.Cut(rest, ": ")
		if f := fs.Lookup(name); f != nil && strings.Contains(why, "parse error") {
			return fmt.Sprintf("%s %s: not a number", Dash(name), val)
		}
		if strings.Contains(why, Dash(name)) {
			return why // a Func flag's own error names the flag
		}
		return fmt.Sprintf("%s %s: %s", Dash(name), val, why)
	}
	if errors.Is(err, flag.ErrHelp) {
		return "help requested"
	}
	return msg
}

// Dash writes a flag's name as the usage texts do: -k, --max-conns.
func Dash(name string) string {
	if len(name) > 1 {
		return "--" + name
	}
	return "-" + name
}
