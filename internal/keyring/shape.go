package keyring

import (
	"fmt"
	"strconv"
)

// Bounds on a keyring's structure, checked before the TOML decoder sees
// it. BurntSushi/toml copies the key path for every key, so its time and
// memory grow with the square of the depth of keys: 4,000 nested inline
// tables (16 KB) took 1.1 GB, a key of 4,000 dotted parts (8 KB) 330 MB.
// A keyring's deepest key has 4 parts (peers."::/0".ao.send_id, however
// it is written: dotted, under a [header] or in inline tables), and a
// deeper one is an error anyway; a TCP-MD5 entry's have 3, so `key.a =
// ...` reaches the checks that name it. Nesting needs 4 (peers = { a = {
// ao = [{ ... }] } }). An array holds at most MaxArrayItems items, the
// most TCP-AO keys one entry can have, so that a hostile file is refused
// before the decoder builds a table for each. Under the bounds the worst
// case costs a few times what a plain keyring of the same size does
// (DESIGN.md, "Keyring input is bounded").
const (
	MaxKeyDepth   = 4         // parts of a key's full path: [table] header, inline tables and dots
	MaxNesting    = 4         // arrays and inline tables inside one another
	MaxArrayItems = MaxAOKeys // items of one array (commas at its top level)
	MaxSize       = 1 << 20   // bytes of keyring text (and of a key file)
)

// shapeError is a bound that a keyring's text exceeds.
type shapeError struct {
	line int    // 0 for the size
	what string // the message after "keyring PATH:LINE: "
}

// checkShape scans TOML text for the depth of its keys and its nesting,
// without building anything. It knows just enough TOML to skip strings
// and comments; text it does not understand is left for the decoder to
// reject.
func checkShape(data []byte) *shapeError {
	if len(data) > MaxSize {
		return &shapeError{what: fmt.Sprintf("%d bytes, more than the %d-byte limit; is this the right file?", len(data), MaxSize)}
	}
	var (
		stack   []int // per open array or inline table: the depth of the key holding it
		kinds   []byte
		commas  []int // per open array or inline table: commas at its top level
		line    = 1
		keyMode = true // reading a key (or a header), not a value
		header  bool   // inside [table] or [[table]]
		table   int    // depth of the last [table] header
		value   int    // depth of the key whose value is being read
		dots    int    // in the key being read
	)
	base := func() int { // depth of what the key being read is inside
		if header {
			return 0
		}
		if len(stack) == 0 {
			return table
		}
		return stack[len(stack)-1]
	}
	tooDeepKey := func() *shapeError {
		return &shapeError{line: line, what: "a key more than " + strconv.Itoa(MaxKeyDepth) +
			` levels deep (counting its [table], inline tables and dotted parts), the limit; a keyring needs 3 (hosts.bastion.key_file), 4 in a TCP-AO list (peers."::/0".ao.send_id): write [hosts.NAME] tables with plain fields, and quote names that hold dots, e.g. [hosts."web.example.net"]`}
	}
	push := func(kind byte) *shapeError {
		stack, kinds, commas = append(stack, value), append(kinds, kind), append(commas, 0)
		if len(stack) > MaxNesting {
			return &shapeError{line: line, what: "arrays and inline tables nested more than " + strconv.Itoa(MaxNesting) +
				` deep, the limit; a keyring needs at most 2 (hosts = { bastion = { key_file = "..." } }), 4 with a TCP-AO list: write [hosts.NAME] and [peers."ADDRESS"] tables instead`}
		}
		return nil
	}
	pop := func(kind byte) {
		if n := len(kinds); n > 0 && kinds[n-1] == kind {
			stack, kinds, commas = stack[:n-1], kinds[:n-1], commas[:n-1]
			value = base()
		}
	}
	inInline := func() bool { return len(kinds) > 0 && kinds[len(kinds)-1] == '{' }
	for i := 0; i < len(data); i++ {
		c := data[i]
		switch {
		case c == '\n':
			line++
			if len(stack) == 0 {
				keyMode, header, dots = true, false, 0
			}
		case c == '#':
			for i+1 < len(data) && data[i+1] != '\n' {
				i++
			}
		case c == '"' || c == '\'':
			i, line = skipString(data, i, line)
		case keyMode && c == '.':
			if dots++; base()+dots+1 > MaxKeyDepth {
				return tooDeepKey()
			}
		case keyMode && c == '=' && !header:
			if value = base() + dots + 1; value > MaxKeyDepth {
				return tooDeepKey()
			}
			keyMode, dots = false, 0
		case c == '[':
			if len(stack) == 0 && keyMode && !header {
				header, dots = true, 0
				if i+1 < len(data) && data[i+1] == '[' {
					i++
				}
			} else if !keyMode {
				if e := push('['); e != nil {
					return e
				}
			}
		case c == ']':
			if header {
				table = dots + 1
				header, keyMode = false, false
				if i+1 < len(data) && data[i+1] == ']' {
					i++
				}
			} else {
				pop('[')
			}
		case c == '{' && !keyMode:
			if e := push('{'); e != nil {
				return e
			}
			keyMode, dots = true, 0
		case c == '}':
			pop('{')
			keyMode = false
		case c == ',' && inInline():
			keyMode, dots = true, 0
		case c == ',' && len(kinds) > 0:
			// n commas hold n items with a trailing one, n+1 without.
			if commas[len(commas)-1]++; commas[len(commas)-1] > MaxArrayItems {
				return &shapeError{line: line, what: "an array of more than " + strconv.Itoa(MaxArrayItems) +
					" items, the limit: no list in a keyring is longer (a [peers] entry has at most " + strconv.Itoa(MaxAOKeys) + " TCP-AO keys, as a KeyID is 8 bits)"}
			}
		}
	}
	return nil
}

// skipString returns the index of the last byte of the string that starts
// at data[i] (a quote), and the line count after it. An unterminated
// string runs to the end: the decoder reports it.
func skipString(data []byte, i, line int) (int, int) {
	q := data[i]
	multi := i+2 < len(data) && data[i+1] == q && data[i+2] == q
	if multi {
		i += 2
	}
	for i++; i < len(data); i++ {
		c := data[i]
		switch {
		case c == '\n' && !multi:
			return i - 1, line // a bad string; the caller counts the newline
		case c == '\n':
			line++
		case c == '\\' && q == '"':
			if i+1 < len(data) && data[i+1] == '\n' {
				line++
			}
			i++
		case c == q:
			if !multi {
				return i, line
			}
			if i+2 < len(data) && data[i+1] == q && data[i+2] == q {
				// Up to two more quotes may close it: """a"""".
				i += 2
				for k := 0; k < 2 && i+1 < len(data) && data[i+1] == q; k++ {
					i++
				}
				return i, line
			}
		}
	}
	return len(data), line
}

func (p *parser) shapeError(data []byte, e *shapeError) error {
	// [peers.10.0.0.1] is five levels deep to TOML: say what was meant.
	if q := quoteHint(data, e.line); q != "" {
		return p.errorf(e.line, "", "a table name holds an address or dotted name without quotes, which TOML reads as nested tables; %s", q)
	}
	return p.errorf(e.line, "", "%s (a bound that keeps a hostile keyring from making the TOML decoder use gigabytes of memory)", e.what)
}
