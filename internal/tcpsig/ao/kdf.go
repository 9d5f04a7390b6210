package ao

import (
	"crypto/aes"
	"crypto/subtle"
)

// cmacKDF is RFC 5926's KDF_AES_128_CMAC as tcp_ao.c applies it to a
// cmac(aes128) key whose secret is not 16 bytes: the kernel keeps, and
// reports back, AES-CMAC(0^128, secret) instead of the secret.
func cmacKDF(secret []byte) []byte {
	var zero [16]byte
	return aesCMAC(zero[:], secret)
}

// aesCMAC is AES-CMAC (RFC 4493) with a 16-byte key.
func aesCMAC(key, msg []byte) []byte {
	c, err := aes.NewCipher(key)
	if err != nil {
		panic(err) // a 16-byte key is always valid
	}
	var l, k1, k2 [16]byte
	c.Encrypt(l[:], l[:])
	shift := func(dst, src *[16]byte) {
		var carry byte
		for i := 15; i >= 0; i-- {
			dst[i] = src[i]<<1 | carry
			carry = src[i] >> 7
		}
		if src[0]&0x80 != 0 {
			dst[15] ^= 0x87
		}
	}
	shift(&k1, &l)
	shift(&k2, &k1)
	n := (len(msg) + 15) / 16
	complete := n > 0 && len(msg)%16 == 0
	if n == 0 {
		n = 1
	}
	var last [16]byte
	if complete {
		subtle.XORBytes(last[:], msg[(n-1)*16:], k1[:])
	} else {
		rest := msg[(n-1)*16:]
		copy(last[:], rest)
		last[len(rest)] = 0x80
		subtle.XORBytes(last[:], last[:], k2[:])
	}
	var x [16]byte
	for i := 0; i < n-1; i++ {
		subtle.XORBytes(x[:], x[:], msg[i*16:(i+1)*16])
		c.Encrypt(x[:], x[:])
	}
	subtle.XORBytes(x[:], x[:], last[:])
	c.Encrypt(x[:], x[:])
	clear(l[:])
	clear(k1[:])
	clear(k2[:])
	return x[:]
}
