package ao

import (
	"encoding/hex"
	"testing"
)

// RFC 4493 section 4's test vectors.
func TestAESCMAC(t *testing.T) {
	h := func(s string) []byte {
		b, err := hex.DecodeString(s)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	key := h("2b7e151628aed2a6abf7158809cf4f3c")
	msg := h("6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e5130c81c46a35ce411e5fbc1191a0a52eff69f2445df4f9b17ad2b417be66c3710")
	for _, c := range []struct {
		n    int
		want string
	}{
		{0, "bb1d6929e95937287fa37d129b756746"},
		{16, "070a16b46b4d4144f79bdd9dd04a287c"},
		{40, "dfa66747de9ae63030ca32611497c827"},
		{64, "51f0bebf7e3b9d92fc49741779363cfe"},
	} {
		if got := hex.EncodeToString(aesCMAC(key, msg[:c.n])); got != c.want {
			t.Errorf("AES-CMAC of %d bytes = %s, want %s", c.n, got, c.want)
		}
	}
}
