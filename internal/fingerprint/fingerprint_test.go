package fingerprint

import (
	"crypto/sha256"
	"encoding/base64"
	"strings"
	"testing"
)

// The vector was computed with coreutils, not with this code:
//
//	printf 'sshmd5 key fingerprint v1\000KEY' | sha256sum | cut -d' ' -f1 |
//	    tr a-f A-F | basenc --base16 -d | base64 | tr -d =
//
// It pins the format: a change here changes what every operator compares,
// so it must come with a new Context version.
func TestKnownVector(t *testing.T) {
	const key = "hunter2-hunter2-hunter2-hunter2-hunter2-hun"
	const want = "MD5KEY:SHA256:Y78s+cIJ7L4Fx1ODLACDDxwJV4vCGopYzEE5eIwReq4"
	if got := Of([]byte(key)); got != want {
		t.Fatalf("Of(%q) = %s, want %s", key, got, want)
	}
}

func TestDomainSeparated(t *testing.T) {
	key := []byte("some key")
	plain := sha256.Sum256(key)
	if strings.Contains(Of(key), base64.RawStdEncoding.EncodeToString(plain[:])) {
		t.Fatal("fingerprint is the plain SHA-256 of the key")
	}
	if Of(key) == Of([]byte("some key\n")) {
		t.Fatal("keys that differ by a byte share a fingerprint")
	}
	if got := Of(key); !strings.HasPrefix(got, Prefix) || len(got) != len(Prefix)+43 {
		t.Fatalf("Of = %q: want %s and 43 characters", got, Prefix)
	}
	if strings.Contains(Of(key), string(key)) {
		t.Fatal("fingerprint holds the key")
	}
}

// The TCP-AO vector, computed with coreutils the same way with the AO
// context:
//
//	printf 'sshmd5 ao key fingerprint v1\000KEY' | sha256sum | ...
func TestKnownVectorAO(t *testing.T) {
	const key = "hunter2-hunter2-hunter2-hunter2-hunter2-hun"
	const want = "AOKEY:SHA256:9K/3PeHgbvP9TYG13X3M20VurjTvvSxJMGLYS4xF2us"
	if got := OfAO([]byte(key)); got != want {
		t.Fatalf("OfAO(%q) = %s, want %s", key, got, want)
	}
}

// The same bytes as the two kinds of key: the hashes differ too, so that
// no one can take one fingerprint for the other by its digits.
func TestKindsSeparated(t *testing.T) {
	key := []byte("some key")
	md5, ao := Of(key), OfAO(key)
	if !strings.HasPrefix(ao, AOPrefix) || len(ao) != len(AOPrefix)+43 {
		t.Fatalf("OfAO = %q: want %s and 43 characters", ao, AOPrefix)
	}
	if strings.TrimPrefix(md5, Prefix) == strings.TrimPrefix(ao, AOPrefix) {
		t.Fatal("a TCP-MD5 and a TCP-AO fingerprint share their hash")
	}
}
