package tcpsig

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"syscall"
	"testing"
)

// recorder is a backend in memory that logs each call, to check the order
// the generic reconcile keeps. The kernel backends have their own tests on
// real sockets (internal/md5).
type recorder struct {
	keys  map[ID]Secret
	log   []string
	fail  string // a call that fails, e.g. "del 10.0.0.1/32"
	fails int
}

func (r *recorder) Keys(Socket) ([]Key, error) {
	var out []Key
	for id, s := range r.keys {
		out = append(out, Key{Prefix: id.Prefix, Ifindex: id.Ifindex, Secret: s})
	}
	return out, nil
}

func (r *recorder) call(op string) error {
	r.log = append(r.log, op)
	if op == r.fail && r.fails > 0 {
		r.fails--
		return errors.New("refused")
	}
	return nil
}

func (r *recorder) Set(_ Socket, k Key) error {
	if err := r.call("set " + k.Prefix.String()); err != nil {
		return err
	}
	r.keys[k.ID()] = k.Secret
	return nil
}

func (r *recorder) Delete(_ Socket, k Key) error {
	if err := r.call("del " + k.Prefix.String()); err != nil {
		return err
	}
	delete(r.keys, k.ID())
	return nil
}

func (r *recorder) Uncovered(s Socket, keys []Key) error { return s.Uncovered(keys) }

func (r *recorder) Name() string { return "recorder" }

func (r *recorder) DialControl(Key) func(string, string, syscall.RawConn) error { return nil }

func k(p, secret string) Key { return Key{Prefix: netip.MustParsePrefix(p), Secret: Secret(secret)} }

func TestReconcileOrder(t *testing.T) {
	s := Socket{Takes4: true}
	have := []Key{k("0.0.0.0/0", "old"), k("10.0.0.0/8", "a"), k("10.0.0.1/32", "b"), k("10.1.0.0/16", "c")}
	want := []Key{k("0.0.0.0/0", "new"), k("10.0.0.0/8", "a"), k("192.0.2.0/24", "d")}
	r := &recorder{keys: map[ID]Secret{}}
	for _, k := range have {
		r.keys[k.ID()] = k.Secret
	}
	d, err := Reconcile(r, s, have, want)
	if err != nil {
		t.Fatal(err)
	}
	// Adds and replaces first (in want's order), then deletes, most
	// specific first; the unchanged key is left alone.
	wantLog := []string{"set 0.0.0.0/0", "set 192.0.2.0/24", "del 10.0.0.1/32", "del 10.1.0.0/16"}
	if !slices.Equal(r.log, wantLog) {
		t.Errorf("calls %v, want %v", r.log, wantLog)
	}
	if fmt.Sprint(d) != "1 added, 1 replaced, 2 deleted" {
		t.Errorf("diff %v", d)
	}
	got, _ := r.Keys(s)
	if len(got) != len(want) {
		t.Errorf("socket ends with %v, want %v", got, want)
	}
}

func TestReconcileUndo(t *testing.T) {
	s := Socket{Takes4: true}
	have := []Key{k("0.0.0.0/0", "old"), k("10.0.0.1/32", "b"), k("10.1.0.0/16", "c")}
	want := []Key{k("0.0.0.0/0", "new"), k("192.0.2.0/24", "d")}
	r := &recorder{keys: map[ID]Secret{}, fail: "del 10.1.0.0/16", fails: 1}
	for _, k := range have {
		r.keys[k.ID()] = k.Secret
	}
	if _, err := Reconcile(r, s, have, want); err == nil {
		t.Fatal("a failing delete was not reported")
	}
	got, _ := r.Keys(s)
	slices.SortFunc(got, func(a, b Key) int { return a.Prefix.Bits() - b.Prefix.Bits() })
	if fmt.Sprint(got) != "[0.0.0.0/0 10.1.0.0/16 10.0.0.1/32]" || !r.keys[ID{Prefix: netip.MustParsePrefix("0.0.0.0/0")}].Equal(Secret("old")) {
		t.Errorf("after the undo the socket has %v, want the keys it had with the catch-all's old secret", got)
	}
}

func TestReconcileRefusesUncovered(t *testing.T) {
	r := &recorder{keys: map[ID]Secret{}}
	_, err := Reconcile(r, Socket{Takes4: true, Takes6: true}, nil, []Key{k("0.0.0.0/0", "x")})
	if !errors.As(err, new(UncoveredError)) || len(r.log) != 0 {
		t.Errorf("want an UncoveredError before any call, got %v after %v", err, r.log)
	}
}
