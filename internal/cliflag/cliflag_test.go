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

func TestOnce(t *testing.T) {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	k := fs.String("k", "", "")
	var ls []string
	fs.Func("l", "", func(v string) error { ls = append(ls, v); return nil })
	fs.Int("max-conns", 1, "")
	fs.Bool("json", false, "")
	Once(fs, "l")
	if err := fs.Parse([]string{"-k", "a", "-l", "x", "-l", "y", "--json", "--json"}); err != nil {
		t.Fatalf("repeatable -l and a repeated switch: %v", err)
	}
	if *k != "a" || len(ls) != 2 {
		t.Errorf("k %q, l %q", *k, ls)
	}
	for _, args := range [][]string{{"-k", "a", "-k", "b"}, {"--max-conns", "2", "--max-conns=3"}} {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		fs.String("k", "", "")
		fs.Int("max-conns", 1, "")
		Once(fs)
		err := fs.Parse(args)
		if err == nil {
			t.Fatalf("%q: parsed", args)
		}
		name := "-k"
		if args[0] != "-k" {
			name = "--max-conns"
		}
		if got, want := Message(fs, err), name+" given twice; it takes one value, give it once"; got != want {
			t.Errorf("%q: %q, want %q", args, got, want)
		}
	}
}
