package identity

import (
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

var secret = []byte("0123456789abcdef0123456789abcdef")

// sign signs claims as a deployer's backend would, with golang-jwt.
func sign(t testing.TB, m jwt.SigningMethod, key any, c jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(m, c).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// raw builds a token from JSON header and claims and a signature, by hand.
func raw(header, claims, sig string) string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(header)) + "." + enc([]byte(claims)) + "." + sig
}

// hs256 signs header.claims with secret, by hand.
func hs256(t testing.TB, header, claims string) string {
	t.Helper()
	enc := base64.RawURLEncoding.EncodeToString
	text := enc([]byte(header)) + "." + enc([]byte(claims))
	sig, err := jwt.SigningMethodHS256.Sign(text, secret)
	if err != nil {
		t.Fatal(err)
	}
	return text + "." + enc(sig)
}

func checker(t testing.TB, cfg Config) *Checker {
	t.Helper()
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Every way a token can be wrong is refused with its reason; a good one
// gives its claims.
func TestVerify(t *testing.T) {
	c := checker(t, Config{Secret: secret})
	now := time.Now()
	hour := now.Add(time.Hour).Unix()
	const hdr = `{"alg":"HS256","typ":"JWT"}`
	good := sign(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"sub": "mary", "exp": hour})
	for _, tc := range []struct {
		name  string
		token string
		err   error
	}{
		{"valid, no exp", sign(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"sub": "mary"}), nil},
		{"valid, every claim", sign(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{
			"sub": "mary", "groups": []string{"a", "b"}, "sid": "s1", "walls": []string{"x", "y*"},
			"exp": hour, "nbf": now.Unix() - 10, "iat": now.Unix(), "aud": 7, "iss": []int{1}, "other": map[string]int{"a": 1}}), nil},
		{"valid, null optional claims", hs256(t, hdr, `{"sub":"mary","groups":null,"sid":null,"exp":null}`), nil},
		{"valid, fractional exp", hs256(t, hdr, `{"sub":"mary","exp":9999999999.5}`), nil},
		{"expired within the leeway", sign(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"sub": "mary", "exp": now.Unix() - 2}), nil},
		{"expired", sign(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"sub": "mary", "exp": now.Unix() - 60}), ErrExpired},
		{"nbf in the future", sign(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"sub": "mary", "nbf": now.Unix() + 60}), ErrNotYetValid},
		{"iat in the future", sign(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"sub": "mary", "iat": now.Unix() + 60}), ErrNotYetValid},
		{"no sub", sign(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"groups": []string{"a"}}), ErrNoSubject},
		{"empty sub", sign(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"sub": ""}), ErrNoSubject},
		{"sub a number", sign(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"sub": 42}), ErrClaims},
		{"groups a string", sign(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"sub": "m", "groups": "a"}), ErrClaims},
		{"groups of numbers", sign(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"sub": "m", "groups": []int{1}}), ErrClaims},
		{"sid a number", sign(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"sub": "m", "sid": 1}), ErrClaims},
		{"walls an object", sign(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"sub": "m", "walls": map[string]int{}}), ErrClaims},
		{"exp a string", sign(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"sub": "m", "exp": "9999999999"}), ErrClaims},
		{"exp out of range", hs256(t, hdr, `{"sub":"mary","exp":1e300}`), ErrClaims},
		{"exp negative", hs256(t, hdr, `{"sub":"mary","exp":-1}`), ErrExpired},
		{"nbf a bool", sign(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"sub": "m", "nbf": true}), ErrClaims},
		{"claims not an object", hs256(t, hdr, `["sub"]`), ErrClaims},
		{"claims not JSON", hs256(t, hdr, `{"sub":`), ErrMalformed},
		{"header not JSON", hs256(t, `{"alg"`, `{"sub":"m"}`), ErrMalformed},
		{"HS384", sign(t, jwt.SigningMethodHS384, secret, jwt.MapClaims{"sub": "mary"}), ErrAlgorithm},
		{"HS512", sign(t, jwt.SigningMethodHS512, secret, jwt.MapClaims{"sub": "mary"}), ErrAlgorithm},
		{"alg none, by hand", raw(`{"alg":"none","typ":"JWT"}`, `{"sub":"mary"}`, ""), ErrAlgorithm},
		{"alg none, by golang-jwt", sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, jwt.MapClaims{"sub": "mary"}), ErrAlgorithm},
		{"alg None", raw(`{"alg":"None"}`, `{"sub":"mary"}`, ""), ErrAlgorithm},
		{"alg unknown", raw(`{"alg":"XX256"}`, `{"sub":"mary"}`, "c2ln"), ErrAlgorithm},
		{"alg missing", raw(`{"typ":"JWT"}`, `{"sub":"mary"}`, "c2ln"), ErrAlgorithm},
		{"alg none with HS256's signature", strings.Replace(good, good[:strings.IndexByte(good, '.')],
			base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`)), 1), ErrAlgorithm},
		{"wrong secret", sign(t, jwt.SigningMethodHS256, []byte(strings.Repeat("x", 32)), jwt.MapClaims{"sub": "mary"}), ErrSignature},
		{"tampered signature", tamper(good, len(good)-5), ErrSignature},
		{"tampered claims", swapClaims(good, `{"sub":"admin","exp":`+strconv.FormatInt(hour, 10)+`}`), ErrSignature},
		{"signature cut", good[:strings.LastIndexByte(good, '.')+1], ErrSignature},
		{"signature not base64", good[:strings.LastIndexByte(good, '.')+1] + "!!", ErrMalformed},
		{"empty", "", ErrMalformed},
		{"one segment", "abc", ErrMalformed},
		{"two segments", "a.b", ErrMalformed},
		{"four segments", good + ".x", ErrMalformed},
		{"not base64", "!!!.???.***", ErrMalformed},
		{"Bearer left in", "Bearer " + good, ErrMalformed},
		{"spaces", " " + good, ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id, err := c.Verify(tc.token)
			switch {
			case !errors.Is(err, tc.err):
				t.Fatalf("got %v, want %v", err, tc.err)
			case err == nil && id.Sub != "mary":
				t.Fatalf("sub %q", id.Sub)
			case err != nil && !id.Anonymous():
				t.Fatalf("refused, but identity %+v", id)
			}
		})
	}
}

// tamper changes the character at i to another valid base64url one.
func tamper(tok string, i int) string {
	c := byte('A')
	if tok[i] == 'A' {
		c = 'B'
	}
	return tok[:i] + string(c) + tok[i+1:]
}

// swapClaims replaces a signed token's claims, keeping its signature.
func swapClaims(tok, claims string) string {
	parts := strings.Split(tok, ".")
	parts[1] = base64.RawURLEncoding.EncodeToString([]byte(claims))
	return strings.Join(parts, ".")
}

// A verified token gives every claim it has.
func TestVerifyClaims(t *testing.T) {
	c := checker(t, Config{Secret: secret})
	exp := time.Now().Add(time.Hour).Truncate(time.Second)
	id, err := c.Verify(sign(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{
		"sub": "mary", "groups": []string{"a", "b"}, "sid": "s1", "walls": []string{"x", "y*"}, "exp": exp.Unix()}))
	if err != nil {
		t.Fatal(err)
	}
	want := Identity{Sub: "mary", Groups: []string{"a", "b"}, Sid: "s1", Walls: []string{"x", "y*"}, Expires: exp}
	if id.Sub != want.Sub || id.Sid != want.Sid || !slices.Equal(id.Groups, want.Groups) ||
		!slices.Equal(id.Walls, want.Walls) || !id.Expires.Equal(want.Expires) {
		t.Fatalf("got %+v, want %+v", id, want)
	}
}

// Mint makes tokens that Verify (and golang-jwt) accept, with its claims.
func TestMint(t *testing.T) {
	c := checker(t, Config{Secret: secret})
	tok, err := Mint(secret, Claims{Sub: "mary", Groups: []string{"g"}, Sid: "s", Walls: []string{"w*"}, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	id, err := c.Verify(tok)
	if err != nil {
		t.Fatal(err)
	}
	if id.Sub != "mary" || id.Sid != "s" || !slices.Equal(id.Groups, []string{"g"}) || !slices.Equal(id.Walls, []string{"w*"}) {
		t.Fatalf("got %+v", id)
	}
	if d := time.Until(id.Expires); d < 59*time.Minute || d > time.Hour {
		t.Fatalf("expires in %v", d)
	}
	// Read back by the library itself, as a backend would.
	var mc jwt.MapClaims
	if _, err := jwt.ParseWithClaims(tok, &mc, func(*jwt.Token) (any, error) { return secret, nil },
		jwt.WithValidMethods([]string{"HS256"})); err != nil || mc["sub"] != "mary" || mc["iat"] == nil {
		t.Fatalf("golang-jwt: %v %v", err, mc)
	}
	forever, err := Mint(secret, Claims{Sub: "svc"})
	if id, err2 := c.Verify(forever); err != nil || err2 != nil || !id.Expires.IsZero() {
		t.Fatalf("TTL 0: %v %v %+v", err, err2, id)
	}
	for _, tc := range []struct {
		secret []byte
		c      Claims
	}{
		{secret[:31], Claims{Sub: "m"}},
		{secret, Claims{}},
		{secret, Claims{Sub: "m", TTL: -time.Second}},
	} {
		if tok, err := Mint(tc.secret, tc.c); err == nil {
			t.Errorf("Mint(%d bytes, %+v) = %q", len(tc.secret), tc.c, tok)
		}
	}
}

// The private prefixes reach their audience only, with or without a
// facility; the listed walls only tokens whose walls claim matches.
func TestAllows(t *testing.T) {
	c := checker(t, Config{Secret: secret, PrivateWalls: []string{"staff", "ops:*", "team-*"}})
	mary := Identity{Sub: "mary", Groups: []string{"chatters", "x"}, Sid: "s1"}
	bob := Identity{Sub: "bob", Groups: []string{"other"}, Sid: "s2", Walls: []string{"staff", "ops:*"}}
	anon := Identity{}
	for _, tc := range []struct {
		wall    string
		private bool
		allowed []Identity // the others are refused
	}{
		{"main", false, []Identity{mary, bob, anon}},
		{"users", false, []Identity{mary, bob, anon}},
		{"user", false, []Identity{mary, bob, anon}},
		{"User:mary", false, []Identity{mary, bob, anon}},
		{"a:user:mary", false, []Identity{mary, bob, anon}},
		{"user:mary", true, []Identity{mary}},
		{"user:mary:orders", true, []Identity{mary}},
		{"user:mary:orders:eu", true, []Identity{mary}},
		{"user:maryx", true, nil},
		{"user:mar", true, nil},
		{"user:", true, nil},
		{"user::x", true, nil},
		{"user:bob", true, []Identity{bob}},
		{"group:chatters", true, []Identity{mary}},
		{"group:chatters:orders", true, []Identity{mary}},
		{"group:chatter", true, nil},
		{"group:", true, nil},
		{"session:s1", true, []Identity{mary}},
		{"session:s1:orders", true, []Identity{mary}},
		{"session:s2", true, []Identity{bob}},
		{"session:", true, nil},
		{"staff", true, []Identity{bob}},
		{"staffroom", false, []Identity{mary, bob, anon}},
		{"ops:", true, []Identity{bob}},
		{"ops:db", true, []Identity{bob}},
		{"ops", false, []Identity{mary, bob, anon}},
		{"team-a", true, nil}, // no token's claim matches
	} {
		if got := c.Private(tc.wall); got != tc.private {
			t.Errorf("Private(%q) = %v", tc.wall, got)
		}
		for _, id := range []Identity{mary, bob, anon} {
			want := slices.ContainsFunc(tc.allowed, func(a Identity) bool { return a.Sub == id.Sub })
			if got := c.Allows(id, tc.wall); got != want {
				t.Errorf("Allows(%q, %q) = %v, want %v", id.Sub, tc.wall, got, want)
			}
		}
	}
	// The walls claim: names and prefix patterns, for listed walls only.
	carol := Identity{Sub: "carol", Walls: []string{"team-*", "user:*", "group:chatters"}}
	for wall, want := range map[string]bool{"team-a": true, "team-": true, "staff": false, "ops:x": false,
		"user:mary": false, "group:chatters": false, "main": true} {
		if got := c.Allows(carol, wall); got != want {
			t.Errorf("walls claim: Allows(carol, %q) = %v, want %v", wall, got, want)
		}
	}
	// A sub with ':' owns no wall: user:a:b is a's.
	if c.Allows(Identity{Sub: "a:b"}, "user:a:b") || !c.Allows(Identity{Sub: "a"}, "user:a:b") {
		t.Error("user:a:b must be a's wall, not a:b's")
	}
	// An empty group or sid owns nothing.
	if c.Allows(Identity{Sub: "m", Groups: []string{""}}, "group:") || c.Allows(Identity{Sub: "m"}, "session:") {
		t.Error("an empty owner matched")
	}
	// "*" makes every wall private.
	all := checker(t, Config{Secret: secret, PrivateWalls: []string{"*"}})
	if !all.Private("main") || all.Allows(mary, "main") || !all.Allows(Identity{Sub: "x", Walls: []string{"*"}}, "main") {
		t.Error(`"*" policy`)
	}
}

// Configuration mistakes are refused with a clear reason.
func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string // "" valid
	}{
		{Config{}, ""},
		{Config{Anonymous: AnonymousRead}, ""},
		{Config{Secret: secret, Anonymous: AnonymousNone, PrivateWalls: []string{"a", "b:*", "*"}}, ""},
		{Config{Secret: secret[:31]}, "at least 32"},
		{Config{Anonymous: AnonymousNone}, "needs a token secret"},
		{Config{PrivateWalls: []string{"a"}}, "need a token secret"},
		{Config{Secret: secret, Anonymous: 3}, "want post, read or none"},
		{Config{Secret: secret, PrivateWalls: []string{"a*b"}}, "may only end"},
		{Config{Secret: secret, PrivateWalls: []string{"**"}}, "may only end"},
		{Config{Secret: secret, PrivateWalls: []string{"a b"}}, "not a valid wall name"},
		{Config{Secret: secret, PrivateWalls: []string{"a/*"}}, "not the start of a valid wall name"},
		{Config{Secret: secret, PrivateWalls: []string{strings.Repeat("w", 65)}}, "not a valid wall name"},
	} {
		err := tc.cfg.Validate()
		if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%+v: %v, want %q", tc.cfg, err, tc.want)
		}
		if _, nerr := New(tc.cfg); (nerr == nil) != (err == nil) {
			t.Errorf("%+v: New %v, Validate %v", tc.cfg, nerr, err)
		}
	}
}

func TestParseMode(t *testing.T) {
	for s, want := range map[string]Mode{"post": AnonymousPost, "read": AnonymousRead, "none": AnonymousNone} {
		if m, err := ParseMode(s); err != nil || m != want || m.String() != s {
			t.Errorf("ParseMode(%q) = %v, %v", s, m, err)
		}
	}
	for _, s := range []string{"", "Post", "write", "none "} {
		if _, err := ParseMode(s); err == nil || !strings.Contains(err.Error(), "want post, read or none") {
			t.Errorf("ParseMode(%q): %v", s, err)
		}
	}
}

// The cost of one token check, as admission pays it per request.
func BenchmarkVerify(b *testing.B) {
	c := checker(b, Config{Secret: secret})
	tok, _ := Mint(secret, Claims{Sub: "mary", Groups: []string{"chatters"}, Sid: "s1", TTL: time.Hour})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Verify(tok); err != nil {
			b.Fatal(err)
		}
	}
}

// The cost of a token's first check (an HMAC and two JSON decodings, and
// a fresh cache entry).
func BenchmarkVerifyUncached(b *testing.B) {
	c := checker(b, Config{Secret: secret})
	tok, _ := Mint(secret, Claims{Sub: "mary", Groups: []string{"chatters"}, Sid: "s1", TTL: time.Hour})
	b.ReportAllocs()
	for b.Loop() {
		c.cache = verifiedCache{}
		if _, err := c.Verify(tok); err != nil {
			b.Fatal(err)
		}
	}
}

// TestVerifyCached: a token that verified verifies again from the cache,
// with the same identity and no allocation; a bad token is never cached.
func TestVerifyCached(t *testing.T) {
	c := checker(t, Config{Secret: secret})
	tok, _ := Mint(secret, Claims{Sub: "mary", Groups: []string{"chatters"}, TTL: time.Hour})
	first, err := c.Verify(tok)
	if err != nil {
		t.Fatal(err)
	}
	again, err := c.Verify(tok)
	if err != nil || again.Sub != "mary" || !slices.Equal(again.Groups, first.Groups) || !again.Expires.Equal(first.Expires) {
		t.Fatalf("cached verify: %+v, %v; first %+v", again, err, first)
	}
	if n := testing.AllocsPerRun(100, func() { _, _ = c.Verify(tok) }); n != 0 {
		t.Errorf("a cached token costs %v allocations", n)
	}
	bad := tok[:len(tok)-2] + "xx"
	for range 2 {
		if _, err := c.Verify(bad); err == nil {
			t.Fatal("a tampered token verified")
		}
	}
	if len(c.cache.m) != 1 {
		t.Fatalf("cache holds %d tokens, want 1", len(c.cache.m))
	}
}

// TestVerifiedCacheTime: a cached token is judged against the clock on
// every hit; keys are copies; the cache is bounded.
func TestVerifiedCacheTime(t *testing.T) {
	var c verifiedCache
	t0 := time.Unix(1_800_000_000, 0)
	buf := []byte("token-a")
	c.put(string(buf), verified{id: Identity{Sub: "a"}, notAfter: t0})
	buf[0] = 'X' // the caller reuses its buffer
	if id, err, ok := c.get("token-a", t0.Add(Leeway)); !ok || err != nil || id.Sub != "a" {
		t.Fatalf("within the leeway: %+v %v %v", id, err, ok)
	}
	if _, err, ok := c.get("token-a", t0.Add(Leeway+time.Second)); !ok || err != ErrExpired {
		t.Fatalf("past exp: %v %v", err, ok)
	}
	if _, _, ok := c.get("token-a", t0); ok {
		t.Fatal("an expired token stayed cached")
	}
	c.put("token-b", verified{id: Identity{Sub: "b"}, notBefore: t0.Add(time.Hour)})
	if _, err, ok := c.get("token-b", t0); !ok || err != ErrNotYetValid {
		t.Fatalf("before nbf: %v %v", err, ok)
	}
	if _, err, _ := c.get("token-b", t0.Add(time.Hour-Leeway)); err != nil {
		t.Fatalf("at nbf minus the leeway: %v", err)
	}
	for i := range verifiedMax + 10 {
		c.put(fmt.Sprint("t", i), verified{id: Identity{Sub: "x"}})
	}
	if len(c.m) > verifiedMax {
		t.Fatalf("cache grew to %d", len(c.m))
	}
}

// A configured leeway replaces the default one, fresh and cached alike,
// and RefusedFrom is the instant Verify starts refusing the token.
func TestConfigLeeway(t *testing.T) {
	exp := time.Now().Add(-2 * time.Second).Truncate(time.Second)
	tok := sign(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"sub": "a", "exp": exp.Unix()})
	def := checker(t, Config{Secret: secret})
	id, err := def.Verify(tok) // within the default 5 s
	if err != nil {
		t.Fatalf("default leeway: %v", err)
	}
	if got := def.cfg.RefusedFrom(id); !got.Equal(exp.Add(Leeway)) {
		t.Errorf("RefusedFrom %v, want %v", got, exp.Add(Leeway))
	}
	short := checker(t, Config{Secret: secret, Leeway: time.Second})
	if _, err := short.Verify(tok); err != ErrExpired {
		t.Errorf("1 s leeway, token expired 2 s ago: %v, want ErrExpired", err)
	}
	short.cache.put(tok, verified{id: id, notAfter: exp}) // as if it verified a moment ago
	if _, err := short.Verify(tok); err != ErrExpired {
		t.Errorf("1 s leeway, cached: %v, want ErrExpired", err)
	}
	if got := short.cfg.RefusedFrom(id); !got.Equal(exp.Add(time.Second)) {
		t.Errorf("RefusedFrom %v, want %v", got, exp.Add(time.Second))
	}
	if !short.cfg.RefusedFrom(Identity{Sub: "a"}).IsZero() {
		t.Error("RefusedFrom of a token without exp is not zero")
	}
}
