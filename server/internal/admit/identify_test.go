package admit

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"wall/server/internal/identity"
)

var testSecret = []byte("0123456789abcdef0123456789abcdef")

// token signs claims with golang-jwt, as a deployer's backend would.
func token(t testing.TB, m jwt.SigningMethod, key any, c jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(m, c).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// badTokens are a token wrong in each way, and what the client is told.
func badTokens(t testing.TB) []struct{ name, token, msg string } {
	now := time.Now().Unix()
	good := token(t, jwt.SigningMethodHS256, testSecret, jwt.MapClaims{"sub": "mary"})
	enc := base64.RawURLEncoding.EncodeToString
	return []struct{ name, token, msg string }{
		{"malformed", "not-a-token", "malformed token"},
		{"bad signature", tamper(good), "bad token signature"},
		{"other secret", token(t, jwt.SigningMethodHS256, []byte(strings.Repeat("k", 32)), jwt.MapClaims{"sub": "mary"}), "bad token signature"},
		{"alg none", enc([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + enc([]byte(`{"sub":"mary"}`)) + ".", "token must be signed with HS256"},
		{"HS512", token(t, jwt.SigningMethodHS512, testSecret, jwt.MapClaims{"sub": "mary"}), "token must be signed with HS256"},
		{"expired", token(t, jwt.SigningMethodHS256, testSecret, jwt.MapClaims{"sub": "mary", "exp": now - 60}), "token expired"},
		{"not yet valid", token(t, jwt.SigningMethodHS256, testSecret, jwt.MapClaims{"sub": "mary", "nbf": now + 60}), "token not yet valid"},
		{"no sub", token(t, jwt.SigningMethodHS256, testSecret, jwt.MapClaims{"groups": []string{"g"}}), "token has no sub"},
		{"groups not an array", token(t, jwt.SigningMethodHS256, testSecret, jwt.MapClaims{"sub": "mary", "groups": "g"}), identity.ErrClaims.Error()},
	}
}

// tamper changes a character in the middle of tok's signature to another
// base64url one.
func tamper(tok string) string {
	i := len(tok) - 10
	c := byte('A')
	if tok[i] == 'A' {
		c = 'B'
	}
	return tok[:i] + string(c) + tok[i+1:]
}

// withToken is a GET source with the token in one carrier.
func withToken(carrier, tok string, args map[string]string) source {
	s := source{method: "GET", args: map[string]string{}, headers: map[string]string{}, cookies: map[string]string{}}
	for k, v := range args {
		s.args[k] = v
	}
	switch carrier {
	case "arg":
		s.args["token"] = tok
	case "header":
		s.headers["Authorization"] = "Bearer " + tok
	case "cookie":
		s.cookies[TokenCookie] = tok
	}
	return s
}

var carriers = []string{"arg", "header", "cookie"}

// cursoredKinds and the rest: every kind a client request comes as.
var clientKinds = []Kind{Page, Post, Poll, Socket, Stream, Stats}

// admitAs admits src as kind k, filling in the XSRF a Post needs.
func admitAs(a *Admitter, src source, k Kind) (Ticket, *Error) {
	if k == Post {
		src.method = "POST"
		if src.args == nil {
			src.args = map[string]string{}
		}
		if src.cookies == nil {
			src.cookies = map[string]string{}
		}
		tok := EncodeXSRF([]byte("0123456789abcdef"))
		src.args[XSRFCookie], src.cookies[XSRFCookie] = tok, tok
	}
	return a.Admit(src, k)
}

// A bad token is a 401 saying what is wrong, in every carrier, on every
// kind of client request, before the wall is even looked at.
func TestAdmitBadTokens(t *testing.T) {
	a := New(Config{PublishToken: "pub", Identity: identity.Config{Secret: testSecret}})
	for _, bt := range badTokens(t) {
		for _, carrier := range carriers {
			for _, k := range clientKinds {
				for _, w := range []string{"main", "a b"} {
					_, err := admitAs(a, withToken(carrier, bt.token, map[string]string{"wall": w}), k)
					if err == nil || err.Status != http.StatusUnauthorized || err.Message != bt.msg {
						t.Errorf("%s in %s, %s, wall %q: %v, want 401 %q", bt.name, carrier, k, w, err, bt.msg)
					}
				}
			}
		}
	}
}

// A good token gives the ticket its holder, whichever carrier it came
// in; the first carrier that has one wins, good or bad.
func TestAdmitCarriers(t *testing.T) {
	a := New(Config{Identity: identity.Config{Secret: testSecret}})
	mary := token(t, jwt.SigningMethodHS256, testSecret, jwt.MapClaims{"sub": "mary", "groups": []string{"g"}, "sid": "s"})
	bob := token(t, jwt.SigningMethodHS256, testSecret, jwt.MapClaims{"sub": "bob"})
	const bad = "x.y.z"
	for _, tc := range []struct {
		name   string
		arg    *string
		header string
		cookie *string
		who    string // "" anonymous; "401" refused
	}{
		{name: "none", who: ""},
		{name: "arg", arg: &mary, who: "mary"},
		{name: "header", header: "Bearer " + mary, who: "mary"},
		{name: "header, lower-case scheme", header: "bearer " + mary, who: "mary"},
		{name: "header, spaces", header: "Bearer   " + mary, who: "mary"},
		{name: "cookie", cookie: &mary, who: "mary"},
		{name: "arg before header", arg: &mary, header: "Bearer " + bob, who: "mary"},
		{name: "arg before cookie", arg: &bob, cookie: &mary, who: "bob"},
		{name: "header before cookie", header: "Bearer " + bob, cookie: &mary, who: "bob"},
		{name: "bad arg wins", arg: ptr(bad), header: "Bearer " + mary, cookie: &mary, who: "401"},
		{name: "bad header wins", header: "Bearer " + bad, cookie: &mary, who: "401"},
		{name: "good arg wins over bad", arg: &mary, header: "Bearer " + bad, cookie: ptr(bad), who: "mary"},
		{name: "empty arg is no token", arg: ptr(""), header: "Bearer " + mary, who: "mary"},
		{name: "empty bearer is no token", header: "Bearer ", cookie: &mary, who: "mary"},
		{name: "empty cookie is no token", cookie: ptr(""), who: ""},
		{name: "other scheme is no token", header: "Basic " + mary, cookie: &bob, who: "bob"},
		{name: "bare header is no token", header: mary, who: ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := withToken("", "", nil)
			if tc.arg != nil {
				src.args["token"] = *tc.arg
			}
			if tc.header != "" {
				src.headers["Authorization"] = tc.header
			}
			if tc.cookie != nil {
				src.cookies[TokenCookie] = *tc.cookie
			}
			for _, k := range clientKinds {
				tk, err := admitAs(a, src, k)
				switch {
				case tc.who == "401" && (err == nil || err.Status != 401):
					t.Errorf("%s: %v %+v, want 401", k, err, tk.Who)
				case tc.who != "401" && (err != nil || tk.Who.Sub != tc.who || !tk.MayPost):
					t.Errorf("%s: %v %+v, want %q", k, err, tk, tc.who)
				}
			}
		})
	}
	tk, _ := a.Admit(withToken("cookie", mary, nil), Poll)
	if tk.Who.Sid != "s" || len(tk.Who.Groups) != 1 || tk.Who.Groups[0] != "g" {
		t.Errorf("identity %+v", tk.Who)
	}
}

func ptr[T any](v T) *T { return &v }

// The anonymous modes: post (the default) allows all, read refuses posts
// and makes sockets read-only, none refuses all but the page. A token
// lifts every restriction.
func TestAdmitAnonymousModes(t *testing.T) {
	mary := token(t, jwt.SigningMethodHS256, testSecret, jwt.MapClaims{"sub": "mary"})
	for _, tc := range []struct {
		mode   identity.Mode
		secret []byte
		want   map[Kind]string // status, or "ro" for admitted with MayPost false
	}{
		{identity.AnonymousPost, testSecret, map[Kind]string{Page: "ok", Post: "ok", Poll: "ok", Socket: "ok", Stream: "ok", Stats: "ok"}},
		{identity.AnonymousPost, nil, map[Kind]string{Page: "ok", Post: "ok", Poll: "ok", Socket: "ok", Stream: "ok", Stats: "ok"}},
		{identity.AnonymousRead, testSecret, map[Kind]string{Page: "ro", Post: "401", Poll: "ro", Socket: "ro", Stream: "ro", Stats: "ro"}},
		{identity.AnonymousRead, nil, map[Kind]string{Page: "ro", Post: "401", Poll: "ro", Socket: "ro", Stream: "ro", Stats: "ro"}},
		{identity.AnonymousNone, testSecret, map[Kind]string{Page: "ro", Post: "401", Poll: "401", Socket: "401", Stream: "401", Stats: "401"}},
	} {
		a := New(Config{PublishToken: "pub", Identity: identity.Config{Secret: tc.secret, Anonymous: tc.mode}})
		for _, k := range clientKinds {
			tk, err := admitAs(a, source{method: "GET"}, k)
			got := "ok"
			switch {
			case err != nil:
				got = fmt.Sprint(err.Status)
			case !tk.MayPost:
				got = "ro"
			}
			if got != tc.want[k] {
				t.Errorf("-anonymous %v, secret %v, %s: %s (%v), want %s", tc.mode, tc.secret != nil, k, got, err, tc.want[k])
			}
			if err != nil && (err.Message != "a token is required" && err.Message != "anonymous clients may only read: a token is required to post") {
				t.Errorf("message %q", err.Message)
			}
			if tc.secret == nil {
				continue
			}
			if tk, err := admitAs(a, withToken("header", mary, nil), k); err != nil || !tk.MayPost || tk.Who.Sub != "mary" {
				t.Errorf("-anonymous %v, %s with a token: %v %+v", tc.mode, k, err, tk)
			}
		}
		// The publish API is the backend: no mode applies to it.
		if tk, err := a.Admit(source{method: "POST", headers: map[string]string{"Authorization": "Bearer pub"}}, Publish); err != nil || !tk.MayPost {
			t.Errorf("-anonymous %v: publish %v", tc.mode, err)
		}
	}
}

// Private walls: each prefix, with and without a facility, and the
// listed walls through the walls claim: the audience is admitted, any
// other token gets 403, an anonymous client 401, on every kind.
func TestAdmitPrivateWalls(t *testing.T) {
	a := New(Config{PublishToken: "pub", Identity: identity.Config{Secret: testSecret, PrivateWalls: []string{"staff", "ops:*"}}})
	mary := token(t, jwt.SigningMethodHS256, testSecret, jwt.MapClaims{"sub": "mary", "groups": []string{"chatters"}, "sid": "s1"})
	bob := token(t, jwt.SigningMethodHS256, testSecret, jwt.MapClaims{"sub": "bob", "groups": []string{"other"}, "sid": "s2", "walls": []string{"staff", "ops:*"}})
	for _, tc := range []struct {
		wall  string
		owner string // "mary", "bob", or "" (public)
	}{
		{"main", ""},
		{"user:mary", "mary"},
		{"user:mary:orders", "mary"},
		{"group:chatters", "mary"},
		{"group:chatters:orders", "mary"},
		{"session:s1", "mary"},
		{"session:s1:orders", "mary"},
		{"user:bob", "bob"},
		{"staff", "bob"},
		{"ops:", "bob"},
		{"ops:db", "bob"},
		{"ops", ""},
	} {
		for _, k := range clientKinds {
			for _, who := range []string{"mary", "bob", ""} {
				src := source{method: "GET", args: map[string]string{"wall": tc.wall}}
				switch who {
				case "mary":
					src = withToken("cookie", mary, src.args)
				case "bob":
					src = withToken("arg", bob, src.args)
				}
				tk, err := admitAs(a, src, k)
				want := 0
				switch {
				case tc.owner == "" || tc.owner == who:
				case who == "":
					want = 401
				default:
					want = 403
				}
				switch {
				case want == 0 && (err != nil || tk.Wall != tc.wall || !tk.MayPost || tk.Who.Sub != who):
					t.Errorf("%s as %q on %q: %v %+v, want admitted", k, who, tc.wall, err, tk)
				case want == 401 && (err == nil || *err != Error{Status: 401, Message: "this wall is private: a token is required"}):
					t.Errorf("%s as %q on %q: %v, want 401", k, who, tc.wall, err)
				case want == 403 && (err == nil || *err != Error{Status: 403, Message: "this wall is private: this token may not use it"}):
					t.Errorf("%s as %q on %q: %v, want 403", k, who, tc.wall, err)
				}
			}
		}
		// The publish API reaches every wall, and reads no client token.
		src := withToken("arg", "garbage", map[string]string{"wall": tc.wall})
		src.method, src.headers["Authorization"] = "POST", "Bearer pub"
		if tk, err := a.Admit(src, Publish); err != nil || tk.Wall != tc.wall || !tk.Who.Anonymous() {
			t.Errorf("publish to %q: %v %+v", tc.wall, err, tk)
		}
	}
}

// Without a token secret, tokens are not looked at (a bad one is no
// error, a good one no identity), and the prefix walls are no one's.
func TestAdmitNoSecret(t *testing.T) {
	a := New(Config{})
	mary := token(t, jwt.SigningMethodHS256, testSecret, jwt.MapClaims{"sub": "mary"})
	for _, tok := range []string{"garbage", mary} {
		for _, carrier := range carriers {
			for _, k := range clientKinds {
				tk, err := admitAs(a, withToken(carrier, tok, nil), k)
				if err != nil || !tk.Who.Anonymous() || !tk.MayPost {
					t.Errorf("%s in %s: %v %+v", k, carrier, err, tk)
				}
				_, err = admitAs(a, withToken(carrier, tok, map[string]string{"wall": "user:mary"}), k)
				if err == nil || err.Status != 401 {
					t.Errorf("%s in %s to user:mary: %v, want 401", k, carrier, err)
				}
			}
		}
	}
}

// A POST whose token came in the Authorization header needs no XSRF
// token (no cross-site form can send that header); one whose token came
// in the argument or the cookie does, and so does any POST when tokens
// are off.
func TestAdmitXSRFWithTokens(t *testing.T) {
	mary := token(t, jwt.SigningMethodHS256, testSecret, jwt.MapClaims{"sub": "mary"})
	on := New(Config{Identity: identity.Config{Secret: testSecret}})
	off := New(Config{})
	for _, tc := range []struct {
		name string
		a    *Admitter
		src  source
		want int
	}{
		{"header token, no XSRF", on, withToken("header", mary, nil), 0},
		{"bad header token, no XSRF", on, withToken("header", "x.y.z", nil), 401},
		{"arg token, no XSRF", on, withToken("arg", mary, nil), 403},
		{"cookie token, no XSRF", on, withToken("cookie", mary, nil), 403},
		{"arg wins over header: XSRF", on, func() source {
			s := withToken("header", mary, nil)
			s.args["token"] = mary
			return s
		}(), 403},
		{"bad cookie token, no XSRF: XSRF first", on, withToken("cookie", "x.y.z", nil), 403},
		{"tokens off, header: XSRF", off, withToken("header", mary, nil), 403},
	} {
		for _, k := range []Kind{Post, Poll} {
			src := tc.src
			src.method = "POST"
			_, err := tc.a.Admit(src, k)
			if (tc.want == 0) != (err == nil) || (err != nil && err.Status != tc.want) {
				t.Errorf("%s, %s: %v, want %d", tc.name, k, err, tc.want)
			}
		}
	}
}

// An invalid identity configuration is a programming error past
// server.New's check.
func TestNewPanicsOnBadIdentity(t *testing.T) {
	defer func() {
		if v := recover(); v == nil || !strings.Contains(fmt.Sprint(v), "at least 32") {
			t.Fatalf("recovered %v", v)
		}
	}()
	New(Config{Identity: identity.Config{Secret: []byte("short")}})
}
