//go:build linux

package ao

import (
	"net/netip"
	"testing"
)

// The offsets and bit positions below are what gcc gives for the structs
// of include/uapi/linux/tcp.h (Linux 6.12) on x86-64, measured with
// offsetof and by setting each bitfield; the kernel keeps that ABI.
func TestLayoutSizes(t *testing.T) {
	for _, c := range []struct {
		name      string
		got, want int
	}{
		{"tcp_ao_add", len(addCmd{}.encode()), 288},
		{"tcp_ao_del", len(delCmd{}.encode()), 144},
		{"tcp_ao_info_opt", len(infoOpt{}.encode()), 48},
		{"tcp_ao_getsockopt", sizeofGet, 304},
	} {
		if c.got != c.want {
			t.Errorf("struct %s: %d bytes, want %d", c.name, c.got, c.want)
		}
	}
	for opt, want := range map[int]int{optAddKey: 38, optDelKey: 39, optInfo: 40, optGetKeys: 41} {
		if opt != want {
			t.Errorf("option %d, want %d", opt, want)
		}
	}
}

// at checks that exactly the bytes in want are non-zero in b.
func at(t *testing.T, what string, b []byte, want map[int]byte) {
	t.Helper()
	for i, v := range b {
		if w := want[i]; v != w {
			t.Errorf("%s: byte %d = %#x, want %#x", what, i, v, w)
		}
	}
}

func le(t *testing.T) {
	t.Helper()
	if bigEndian {
		t.Fatal("the byte positions this test expects are those of little-endian ABIs (amd64, arm64); on a big-endian one the bitfields sit at the other end of their word: extend the test before trusting the encoders")
	}
}

func TestLayoutAdd(t *testing.T) {
	le(t)
	b := addCmd{
		addr: netip.MustParseAddr("192.0.2.0"), prefix: 24, algName: "hmac(sha256)",
		ifindex: 0x01020304, setRnext: true, sndID: 101, rcvID: 1, macLen: 12,
		keyflags: keyfIfindex, key: []byte{0xaa, 0xbb},
	}.encode()
	want := map[int]byte{
		0: 2, 4: 192, 6: 2, // sockaddr_in: family AF_INET, address
		192: 4, 193: 3, 194: 2, 195: 1, // ifindex
		196: 2,                    // set_rnext is bit 1
		202: 24, 203: 101, 204: 1, // prefix, sndid, rcvid
		205: 12, 206: 1, 207: 2, // maclen, keyflags, keylen
		208: 0xaa, 209: 0xbb, // key
	}
	for i, c := range []byte("hmac(sha256)") {
		want[128+i] = c
	}
	at(t, "tcp_ao_add", b, want)
	b = addCmd{setCurrent: true, addr: netip.IPv4Unspecified()}.encode()
	if b[196] != 1 {
		t.Errorf("set_current: byte 196 = %#x, want 1", b[196])
	}
	// AF_INET6 socket, IPv4 peer: v4-mapped sockaddr_in6.
	b = addCmd{addr: netip.MustParseAddr("192.0.2.7"), sin6: true, prefix: 32}.encode()
	at(t, "tcp_ao_add v4-mapped", b, map[int]byte{0: 10, 18: 0xff, 19: 0xff, 20: 192, 22: 2, 23: 7, 202: 32})
	// A secret longer than the field is cut, not overflowed.
	b = addCmd{addr: netip.IPv4Unspecified(), key: make([]byte, 100)}.encode()
	if b[addKeylen] != 80 {
		t.Errorf("keylen of a 100-byte key = %d, want 80", b[addKeylen])
	}
}

func TestLayoutDel(t *testing.T) {
	le(t)
	b := delCmd{addr: netip.MustParseAddr("2001:db8::"), sin6: true, prefix: 32, ifindex: 5, delAsync: true, sndID: 7, rcvID: 8, keyflags: 1}.encode()
	at(t, "tcp_ao_del", b, map[int]byte{
		0: 10, 8: 0x20, 9: 0x01, 10: 0x0d, 11: 0xb8, // sockaddr_in6
		128: 5, 132: 4, // ifindex, del_async is bit 2
		138: 32, 139: 7, 140: 8, 143: 1, // prefix, sndid, rcvid, keyflags
	})
}

func TestLayoutInfo(t *testing.T) {
	le(t)
	o := infoOpt{aoRequired: true, acceptICMPs: true, current: 3, rnext: 4, pktGood: 1, pktBad: 2, pktKeyNotFound: 3, pktAORequired: 4, pktDroppedICMP: 5}
	b := o.encode()
	at(t, "tcp_ao_info_opt", b, map[int]byte{0: 4 | 16, 6: 3, 7: 4, 8: 1, 16: 2, 24: 3, 32: 4, 40: 5})
	if got := decodeInfo(b); got != o {
		t.Errorf("decode(encode(%+v)) = %+v", o, got)
	}
	for n, byte0 := range map[uint]byte{infoSetCurrent: 1, infoSetRnext: 2, infoSetCounters: 8} {
		b := make([]byte, sizeofInfo)
		setBit32(b, infoFlags, n, true)
		if b[0] != byte0 {
			t.Errorf("bit %d: byte 0 = %#x, want %#x", n, b[0], byte0)
		}
	}
}

func TestLayoutGet(t *testing.T) {
	le(t)
	b := make([]byte, 2*sizeofGet)
	getReq{nkeys: 2, getAll: true}.encode(b)
	at(t, "tcp_ao_getsockopt request", b[:sizeofGet], map[int]byte{272: 2, 276: 4})
	getReq{nkeys: 1, rnext: true}.encode(b)
	at(t, "tcp_ao_getsockopt is_rnext", b[:sizeofGet], map[int]byte{272: 1, 276: 2})
	getReq{nkeys: 1, current: true}.encode(b)
	at(t, "tcp_ao_getsockopt is_current", b[:sizeofGet], map[int]byte{272: 1, 276: 1})

	// A reply as the kernel writes it: 10.1.0.0/16, hmac(sha1).
	r := b[sizeofGet:]
	r[0], r[4], r[5] = 2, 10, 1
	copy(r[128:], "hmac(sha1)")
	copy(r[192:], []byte{1, 2, 3})
	r[276] = 1 | 2
	r[278], r[279], r[280], r[281], r[282], r[283] = 9, 10, 16, 12, 1, 3
	r[284] = 6
	r[288], r[296] = 11, 12
	g := decodeGot(r)
	if !g.addrOK || g.addr != netip.MustParseAddr("10.1.0.0") || g.prefix != 16 || g.algName != "hmac(sha1)" ||
		string(g.key) != "\x01\x02\x03" || !g.isCurrent || !g.isRnext || g.sndID != 9 || g.rcvID != 10 ||
		g.macLen != 12 || g.keyflags != 1 || g.ifindex != 6 || g.pktGood != 11 || g.pktBad != 12 {
		t.Errorf("decoded %+v", g)
	}
	k, err := toKey(g)
	if err != nil || k.Prefix != netip.MustParsePrefix("10.1.0.0/16") || k.Ifindex != 6 || k.AO.SendID != 9 || k.AO.RecvID != 10 || k.AO.Algorithm != "hmac(sha1)" || k.AO.MACLen != 12 {
		t.Errorf("toKey = %+v, %v", k, err)
	}
	// The kernel names AES-128-CMAC by the cipher it runs.
	copy(r[128:], "cmac(aes)\x00")
	if k, _ := toKey(decodeGot(r)); k.AO.Algorithm != "cmac(aes128)" {
		t.Errorf("cmac(aes) read back as %q, want cmac(aes128)", k.AO.Algorithm)
	}
	// IPv6 and v4-mapped replies.
	clear(r[:128])
	r[0] = 10
	copy(r[8:], netip.MustParseAddr("::ffff:192.0.2.0").AsSlice())
	if g := decodeGot(r); g.addr != netip.MustParseAddr("192.0.2.0") {
		t.Errorf("v4-mapped reply read as %s", g.addr)
	}
}
