// Package cliflag words the flag package's parse errors the way the
// commands speak ("unknown flag -x"), for a one-line usage error that
// points to -h instead of printing the whole usage text.
package cliflag

import (
	"errors"
	"flag"
	"fmt"
	"slices"
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

// Once makes every flag of fs that takes a value, except the repeatable
// ones named, an error when given twice: "-k a.toml -k b.toml" is a
// mistake to report, not "the last one wins". Switches (bool flags) may
// repeat. Call it after the flags are defined and before Parse.
func Once(fs *flag.FlagSet, repeatable ...string) {
	fs.VisitAll(func(f *flag.Flag) {
		if slices.Contains(repeatable, f.Name) {
			return
		}
		if b, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
			return
		}
		f.Value = &once{Value: f.Value, name: f.Name}
	})
}

type once struct {
	flag.Value
	name string
	set  bool
}

func (o *once) Set(v string) error {
	if o.set {
		return fmt.Errorf("%s given twice; it takes one value, give it once", Dash(o.name))
	}
	o.set = true
	return o.Value.Set(v)
}
