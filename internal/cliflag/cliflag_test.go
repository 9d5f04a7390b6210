package cliflag

import (
	"errors"
	"flag"
	"io"
	"testing"
)

func TestMessage(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-x"}, "unknown flag -x"},
		{[]string{"--frob"}, "unknown flag --frob"},
		{[]string{"-k"}, "-k needs an argument"},
		{[]string{"--max-conns", "lots"}, `--max-conns "lots": not a number`},
		{[]string{"--max-startups", "1:2"}, `--max-startups "1:2": bad`},
		{[]string{"--other", "v"}, `--other "v": no good`},
	} {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		fs.String("k", "", "")
		fs.Int("max-conns", 1, "")
		fs.Func("max-startups", "", func(v string) error { return errors.New(`--max-startups "1:2": bad`) })
		fs.Func("other", "", func(v string) error { return errors.New("no good") })
		err := fs.Parse(c.args)
		if err == nil {
			t.Fatalf("%q: parsed", c.args)
		}
		if got := Message(fs, err); got != c.want {
			t.Errorf("%q: %q, want %q", c.args, got, c.want)
		}
	}
}
