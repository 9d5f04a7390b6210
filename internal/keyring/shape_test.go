package keyring

import (
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
)

func nestInline(n int) string {
	return "x = " + strings.Repeat("{a=", n) + "1" + strings.Repeat("}", n) + "\n"
}

func nestArray(n int) string {
	return "x = " + strings.Repeat("[", n) + "1" + strings.Repeat("]", n) + "\n"
}

// TestShapeBounds checks each bound just under and just over, and that
// what looks like nesting inside strings and comments does not count.
func TestShapeBounds(t *testing.T) {
	dotted := func(n int) string { return strings.TrimSuffix(strings.Repeat("a.", n), ".") }
	tests := []struct {
		name, text string
		line       int    // 0: within the bounds
		want       string // in the error
	}{
		{"inline at bound", nestInline(MaxKeyDepth - 1), 0, ""},
		{"inline over", "\n" + nestInline(MaxKeyDepth), 2, "a key more than 4 levels deep"},
		{"array at bound", nestArray(MaxNesting), 0, ""},
		{"array over", nestArray(MaxNesting + 1), 1, "nested more than 4 deep"},
		{"mixed at bound", "x = [{a=[[1]]}]\n", 0, ""},
		{"mixed over", "x = [{a=[[[1]]]}]\n", 1, "nested more than 4 deep"},
		{"key at bound", dotted(MaxKeyDepth) + " = 1\n", 0, ""},
		{"key over", dotted(MaxKeyDepth+1) + " = 1\n", 1, "a key more than 4 levels deep"},
		{"header at bound", "[" + dotted(MaxKeyDepth) + "]\n", 0, ""},
		{"header over", "[[" + dotted(MaxKeyDepth+1) + "]]\n", 1, "a key more than 4 levels deep"},
		{"under header at bound", "[hosts.a]\n" + dotted(2) + " = 1\n", 0, ""},
		{"under header over", "[hosts.a]\n" + dotted(3) + " = 1\n", 2, "a key more than 4 levels deep"},
		{"inline at key bound", "hosts = { a = { key.x = 1 }, b = 2 }\nc.d.e.f = 1\n", 0, ""},
		{"inline key over", "hosts = { a = { key.x.y = 1 } }\n", 1, "a key more than 4 levels deep"},
		{"inline in array over", "[hosts]\nx = [ { a.b.c = 1 } ]\n", 2, "a key more than 4 levels deep"},
		{"after inline closes", "a = { b.c.d = 1 }\n" + dotted(4) + " = 1\n", 0, ""},
		{"quoted dots", "[peers.\"1.2.3.4.5.6.7.8.9.10\"]\n'a.b.c.d.e.f.g.h.i.j' = 1\n", 0, ""},
		{"brackets in strings", "a = \"" + strings.Repeat("[{", 20) + "\"\nb = '" + strings.Repeat("[", 20) + "'\nc = \"\"\"\n" + strings.Repeat("{", 20) + "\n\"\"\"\nd = 1\n", 0, ""},
		{"brackets in comments", "# " + strings.Repeat("[", 20) + "\na = 1 # " + strings.Repeat("{", 20) + "\n", 0, ""},
		{"line after multi-line string", "a = '''\n\n'''\n" + nestArray(MaxNesting+1), 4, "nested"},
		{"escaped quote", `a = "\"[[[[[[[[[["` + "\n", 0, ""},
		{"ao list", "[peers.\"::/0\"]\nao = [\n  { name = \"a\", send_id = 1, recv_id = 1, key_file = \"a.key\" },\n  { name = \"b\", send_id = 2, recv_id = 2, key = \"x\" },\n]\n", 0, ""},
		{"ao list dotted", "peers.\"::/0\".ao = [{ name = \"a\" }]\n", 0, ""},
		{"ao list inline", "peers = { \"::/0\" = { ao = [{ name = \"a\" }] } }\n", 0, ""},
		{"ao array of tables", "[[peers.\"::/0\".ao]]\nname = \"a\"\n", 0, ""},
		{"ao item key over", "[peers.\"::/0\"]\nao = [{ name.x = \"a\" }]\n", 2, "a key more than 4 levels deep"},
		{"items at bound", "x = [" + strings.Repeat("{},", MaxArrayItems) + "]\n", 0, ""},
		{"items at bound, no trailing comma", "x = [" + strings.Repeat("1,", MaxArrayItems) + "1]\n", 0, ""},
		{"items over", "x = [\n" + strings.Repeat("{ a = 1, b = 2 },\n", MaxArrayItems+1) + "]\n", MaxArrayItems + 2, "an array of more than 256 items, the limit"},
		{"items over, nested", "x = [[" + strings.Repeat("1,", MaxArrayItems+1) + "]]\n", 1, "an array of more than 256 items"},
		{"commas in inline tables and strings", "x = [{" + strings.Repeat("a=1,", 300) + "b=\"" + strings.Repeat(",", 300) + "\"}]\n", 0, ""},
		{"size at bound", strings.Repeat("#", MaxSize-1) + "\n", 0, ""},
		{"size over", strings.Repeat("#", MaxSize) + "\n", 0, "1048577 bytes, more than the 1048576-byte limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := checkShape([]byte(tt.text))
			if tt.want == "" {
				if e != nil {
					t.Fatalf("refused: line %d: %s", e.line, e.what)
				}
				return
			}
			if e == nil {
				t.Fatal("accepted")
			}
			_, err := Parse(kpath, []byte(tt.text), Both, nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "gigabytes") {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
			where := kpath + ": "
			if tt.line > 0 {
				where = kpath + ":" + strconv.Itoa(tt.line) + ": "
			}
			if !strings.Contains(err.Error(), where) {
				t.Errorf("err = %v, want it at %q", err, where)
			}
		})
	}
}

// worstCases are the costliest shapes of keyring text under the bounds,
// each repeated up to MaxSize bytes: keys as deep as allowed, written
// dotted, under headers, in inline tables and arrays. They are valid
// TOML, so the decoder does all its work before the keyring's own checks
// refuse them.
func worstCases() map[string][]byte {
	gen := map[string]func(i int) string{
		"dotted":      func(i int) string { return fmt.Sprintf("k%d.a.a.a = 1\n", i) },
		"headers":     func(i int) string { return fmt.Sprintf("[k%d.a.a.a]\n", i) },
		"arrays":      func(i int) string { return fmt.Sprintf("[[k%d.a.a.a]]\n", i) },
		"inline":      func(i int) string { return fmt.Sprintf("k%d = {a={a={a=1}}}\n", i) },
		"nested":      func(i int) string { return fmt.Sprintf("k%d = [[[[1]]]]\n", i) },
		"wide inline": func(i int) string { return fmt.Sprintf("k%d = {a.a.a=1,b.a.a=1,c.a.a=1,d.a.a=1}\n", i) },
		// Tables in arrays at the item bound: the TCP-AO shape.
		"ao items": func(i int) string {
			return fmt.Sprintf("k%d.a = [%s]\n", i, strings.Repeat("{a=1,b=1},", MaxArrayItems))
		},
		"ao tables": func(i int) string { return fmt.Sprintf("[[k%d.a.a]]\na=1\n", i%100) },
	}
	out := map[string][]byte{}
	for name, g := range gen {
		var b strings.Builder
		for i := 0; ; i++ {
			l := g(i)
			if b.Len()+len(l) > MaxSize {
				break
			}
			b.WriteString(l)
		}
		out[name] = []byte(b.String())
	}
	return out
}

// TestShapeWorstCase prints what Parse allocates for each worst case
// under the bounds beside a plain keyring of the same size. The peak RSS
// of `check` on the worst of them is in DESIGN.md.
func TestShapeWorstCase(t *testing.T) {
	alloc := func(text []byte) uint64 {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		_, _ = Parse(kpath, text, Both, nil)
		runtime.ReadMemStats(&after)
		return after.TotalAlloc - before.TotalAlloc
	}
	var pb strings.Builder
	for i := 0; pb.Len() < MaxSize-40; i++ {
		fmt.Fprintf(&pb, "[hosts.h%d]\nkey = \"0123456789\"\n", i)
	}
	plain := alloc([]byte(pb.String()))
	for name, text := range worstCases() {
		if e := checkShape(text); e != nil {
			t.Errorf("%s: refused at line %d: %s", name, e.line, e.what)
			continue
		}
		w := alloc(text)
		t.Logf("%-11s %7d bytes: allocates %4d MB, a plain keyring of the same size %d MB: ratio %.1f", name, len(text), w>>20, plain>>20, float64(w)/float64(plain))
	}
}

// FuzzShape checks checkShape against the decoder: whatever text it lets
// through decodes to keys no deeper than MaxKeyDepth, so no spelling of a
// deep key (quotes, escapes, comments, multi-line strings, inline tables
// in arrays) gets past the bound.
func FuzzShape(f *testing.F) {
	for _, s := range []string{
		"a.b.c.d = 1\n", "[a.b]\nc.d = 1\n", "a = { b = { c = { d = 1 } } }\n", "a = [ { b.c.d = 1 } ]\n",
		"[[a.b]]\nc = { d = 1 }\n", "[p.\"::/0\"]\nao = [\n{ n = \"a\", s = 1 },\n{ n.x = 1 },\n]\n", "a = [" + strings.Repeat("{},", 257) + "]\n", "'a.b'.\"c.d\" = 1\n", "a = \"\"\"\n[x.y.z.w.v]\n\"\"\"\n", "a = '''x'''\nb.c.d.e = 1\n",
		"a = \"\\\"\" # [x]\nb = 1\n", "a.b.c = { d = [ [ 1 ] ] }\n", "[a]\nb = [\n{ c.d = 1 },\n]\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		if checkShape([]byte(text)) != nil {
			return
		}
		var v map[string]any
		md, err := toml.Decode(text, &v)
		if err != nil {
			return
		}
		for _, k := range md.Keys() {
			if len(k) > MaxKeyDepth {
				t.Fatalf("checkShape let through key %s, %d deep", k, len(k))
			}
		}
	})
}
