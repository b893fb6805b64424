package server

import (
	"encoding/base64"
	"net/http"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"wall/server/internal/admit"
	"wall/server/internal/identity"
)

// The identity tests run real tokens, minted with golang-jwt as a
// deployer's backend would, through every entry path, and read the
// answers off the wire.

// idSecret is the deployment's token secret in these tests.
var idSecret = []byte("wall-identity-test-secret-0123456789")

// idPublish is the publish API's bearer token in these tests.
const idPublish = "publish-secret"

// Refusals of admission, as the client reads them.
const (
	msgPrivateAnon  = "this wall is private: a token is required"
	msgPrivateOther = "this wall is private: this token may not use it"
	msgNeedToken    = "a token is required"
	msgReadOnly     = "anonymous clients may only read: a token is required to post"
)

// idConfig is a deployment with tokens, anonymous mode mode and the
// private walls "staff" and "ops:*".
func idConfig(mode identity.Mode) Config {
	return Config{PublishToken: idPublish, Identity: identity.Config{
		Secret: idSecret, Anonymous: mode, PrivateWalls: []string{"staff", "ops:*"}}}
}

// signed is a token signed with golang-jwt.
func signed(t testing.TB, m jwt.SigningMethod, key any, c jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(m, c).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// The two users: mary (group chatters, session s1) and bob (group other,
// session s2, granted the listed private walls by his walls claim).
func maryToken(t testing.TB) string {
	return signed(t, jwt.SigningMethodHS256, idSecret, jwt.MapClaims{
		"sub": "mary", "groups": []string{"chatters"}, "sid": "s1", "exp": time.Now().Add(time.Hour).Unix()})
}

func bobToken(t testing.TB) string {
	return signed(t, jwt.SigningMethodHS256, idSecret, jwt.MapClaims{
		"sub": "bob", "groups": []string{"other"}, "sid": "s2", "walls": []string{"staff", "ops:*"}})
}

// tokenCase is a token and what a request presenting it gets on a
// public wall: 200, or 401 with msg.
type tokenCase struct {
	name, token string
	code        int
	msg         string
}

// tokenCases are a valid token and one wrong in each way.
func tokenCases(t testing.TB) []tokenCase {
	now := time.Now().Unix()
	good := maryToken(t)
	enc := base64.RawURLEncoding.EncodeToString
	i := len(good) - 10 // a character inside the signature
	c := "A"
	if good[i] == 'A' {
		c = "B"
	}
	return []tokenCase{
		{"valid", good, 200, ""},
		{"malformed", "not.a-token", 401, "malformed token"},
		{"badly signed", good[:i] + c + good[i+1:], 401, "bad token signature"},
		{"alg none", enc([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + enc([]byte(`{"sub":"mary"}`)) + ".", 401, "token must be signed with HS256"},
		{"HS384", signed(t, jwt.SigningMethodHS384, idSecret, jwt.MapClaims{"sub": "mary"}), 401, "token must be signed with HS256"},
		{"expired", signed(t, jwt.SigningMethodHS256, idSecret, jwt.MapClaims{"sub": "mary", "exp": now - 60}), 401, "token expired"},
		{"not yet valid", signed(t, jwt.SigningMethodHS256, idSecret, jwt.MapClaims{"sub": "mary", "nbf": now + 60}), 401, "token not yet valid"},
	}
}

// carriers are the places a client presents its token in.
var carriers = []string{"arg", "header", "cookie"}

// present adds tok to a request's args and headers in carrier c.
func present(c, tok string, args url.Values, headers ...string) (url.Values, []string) {
	a := url.Values{}
	for k, v := range args {
		a[k] = v
	}
	h := append([]string(nil), headers...)
	switch c {
	case "arg":
		a.Set("token", tok)
	case "header":
		h = append(h, "Authorization: Bearer "+tok)
	case "cookie":
		h = append(h, "Cookie: "+admit.TokenCookie+"="+tok)
	}
	return a, h
}

// privateCases are private walls and who owns each.
var privateCases = []struct{ wall, owner string }{
	{"user:mary", "mary"},
	{"user:mary:orders", "mary"},
	{"group:chatters", "mary"},
	{"group:chatters:orders", "mary"},
	{"session:s1", "mary"},
	{"session:s1:orders", "mary"},
	{"staff", "bob"},
	{"ops:db", "bob"},
}

// whoCase is a client: its token ("" anonymous) and carrier.
type whoCase struct{ name, token, carrier string }

// whoCases are mary and bob in every carrier, and an anonymous client.
func whoCases(t testing.TB) []whoCase {
	var out []whoCase
	for _, c := range carriers {
		out = append(out, whoCase{"mary", maryToken(t), c}, whoCase{"bob", bobToken(t), c})
	}
	return append(out, whoCase{"", "", ""})
}

// wantFor is what who gets on a wall owned by owner ("" public): 200,
// 403 for another token, 401 for an anonymous client.
func wantFor(owner, who string) (int, string) {
	switch {
	case owner == "" || owner == who:
		return 200, ""
	case who == "":
		return 401, msgPrivateAnon
	}
	return 403, msgPrivateOther
}

// idPoller sends polls over path p: each on a connection of its own,
// except on the re-poll path, where every poll goes on one connection the
// engine holds and must be read, admitted and answered by the engine, a
// refusal included.
type idPoller struct {
	e    *testEnv
	p    pollPath
	wc   *wireConn
	hold []string // headers of the poll that has the engine hold wc (a token, for -anonymous none)
}

func (ip *idPoller) poll(req string) *wireResponse {
	ip.e.t.Helper()
	if !ip.p.repoll {
		return ip.e.pollOver(ip.p, req)
	}
	if ip.wc == nil {
		ip.wc = ip.e.dial()
		holdWith(ip.e, ip.wc, ip.hold...)
	}
	st := ip.e.statsOf(ip.wc)
	n := st.started.Load()
	r := ip.e.startPollOn(ip.p, ip.wc, req).answer()
	if st.started.Load() != n {
		ip.e.t.Errorf("re-poll handed back to net/http: %v", r)
	}
	if r.Closes() {
		ip.e.t.Fatalf("the engine closes the connection after %v", r)
	}
	return r
}

// holdWith is testEnv.hold for one connection, its poll sent with
// headers: the engine takes over a poll that waits, which is then
// answered; it reads the connection's next requests itself.
func holdWith(e *testEnv, wc *wireConn, headers ...string) {
	e.t.Helper()
	cursor := "0"
	if w := e.hub.Lookup("hold"); w != nil {
		cursor = strconv.FormatUint(w.Last(), 10)
	}
	st := e.statsOf(wc)
	n := st.started.Load()
	wc.send(pollReq(http.MethodGet, url.Values{"wall": {"hold"}, "cursor": {cursor}}, headers...))
	waitFor(e.t, "the engine to take over a poll", 5*time.Second, func() bool {
		return st.started.Load() == n+1 && st.done.Load() == n+1
	})
	e.publish("hold", "wake")
	if r := wc.response(5 * time.Second); r.Status != http.StatusOK || r.Closes() {
		e.t.Fatalf("hold: %v", r)
	}
}

// wantAnswer checks a poll's answer: messages for 200, else the error.
func wantAnswer(t *testing.T, r *wireResponse, code int, msg string) {
	t.Helper()
	if code == 200 {
		wantMessages(t, r)
		return
	}
	wantError(t, r, code, msg)
}

// Polls, GET and POST, on every path: a valid token in any carrier is
// admitted, a bad one is a 401 saying what is wrong with it.
func TestIdentityPollTokens(t *testing.T) {
	forEachPathMethod(t, func(t *testing.T, p pollPath, method string) {
		e := p.env(t, idConfig(identity.AnonymousPost), 10)
		e.publish("main", "hello")
		ip := &idPoller{e: e, p: p}
		for _, tc := range tokenCases(t) {
			for _, c := range carriers {
				args, h := present(c, tc.token, url.Values{"cursor": {"0"}})
				r := ip.poll(pollReq(method, args, h...))
				if r.Status != tc.code {
					t.Errorf("%s in %s: %v, want %d", tc.name, c, r, tc.code)
					continue
				}
				wantAnswer(t, r, tc.code, tc.msg)
			}
		}
		// An anonymous poll, for comparison, and one on a wall name that
		// is wrong: identity comes first.
		wantMessages(t, ip.poll(pollReq(method, url.Values{"cursor": {"0"}})))
		args, h := present("arg", "garbage", url.Values{"wall": {"a b"}})
		wantError(t, ip.poll(pollReq(method, args, h...)), 401, "malformed token")
	})
}

// Polls on private walls, on every path: the owner is answered, another
// token gets 403, an anonymous client 401; every prefix, with and without
// a facility, and the listed walls through the walls claim.
func TestIdentityPollPrivate(t *testing.T) {
	forEachPathMethod(t, func(t *testing.T, p pollPath, method string) {
		e := p.env(t, idConfig(identity.AnonymousPost), 10)
		ip := &idPoller{e: e, p: p}
		for _, pc := range append(privateCases, struct{ wall, owner string }{"ops", ""}) {
			m := e.publish(pc.wall, "for "+pc.wall)
			for _, who := range whoCases(t) {
				args, h := present(who.carrier, who.token, url.Values{"wall": {pc.wall}, "cursor": {"0"}})
				r := ip.poll(pollReq(method, args, h...))
				code, msg := wantFor(pc.owner, who.name)
				if r.Status != code {
					t.Errorf("%q via %q on %s: %v, want %d", who.name, who.carrier, pc.wall, r, code)
					continue
				}
				wantAnswer(t, r, code, msg)
				if code == 200 {
					if got := decodePoll(t, r.Body); (*got.Messages)[0].ID != m.ID {
						t.Errorf("%s: answer %s", pc.wall, r.Body)
					}
				}
			}
		}
	})
}

// A POST poll whose token is in the Authorization header needs no XSRF
// token; one whose token is in the form or the cookie does.
func TestIdentityPollXSRF(t *testing.T) {
	forEachPath(t, func(t *testing.T, p pollPath) {
		e := p.env(t, idConfig(identity.AnonymousPost), 10)
		e.publish("user:mary", "hello")
		ip := &idPoller{e: e, p: p}
		for _, c := range carriers {
			form, h := present(c, maryToken(t), url.Values{"wall": {"user:mary"}, "cursor": {"0"}})
			r := ip.poll(rawRequest(http.MethodPost, "/a/message/updates", form.Encode(), h...))
			if c == "header" {
				wantMessages(t, r)
			} else {
				wantError(t, r, 403, "'_xsrf' argument missing from POST")
			}
		}
	})
}

// The owner's poll on a private wall waits where its path has it wait
// (in its handler, parked by the engine after net/http admitted it, or
// read and admitted by the engine on a held connection) and is answered
// by the next message.
func TestIdentityPollWaits(t *testing.T) {
	forEachPathMethod(t, func(t *testing.T, p pollPath, method string) {
		e := p.env(t, idConfig(identity.AnonymousPost), 10)
		for _, c := range carriers {
			m1 := e.publish("user:mary:orders", "one")
			args, h := present(c, maryToken(t), url.Values{"wall": {"user:mary:orders"}, "cursor": {strconv.FormatUint(m1.Seq, 10)}})
			call := e.startPoll(p, pollReq(method, args, h...))
			call.waiting()
			m2 := e.publish("user:mary:orders", "two")
			if got := wantMessages(t, call.answer()); len(*got.Messages) != 1 || (*got.Messages)[0].ID != m2.ID {
				t.Errorf("%s: got %+v", c, *got.Messages)
			}
		}
	})
}

// A connection carries no identity from one request to the next: on
// the same keep-alive connection, mary's poll on her wall waits and is
// answered, then a poll with no token is a 401, bob's a 403 and mary's
// again a 200. On main's server the first poll waits in the engine, which
// reads, admits and answers the rest itself.
func TestIdentityKeepAliveCarriesNoIdentity(t *testing.T) {
	forEachPathMethod(t, func(t *testing.T, p pollPath, method string) {
		e := p.env(t, idConfig(identity.AnonymousPost), 10)
		m1 := e.publish("user:mary", "one")
		wc := e.pollConn(p)
		args, h := present("header", maryToken(t), url.Values{"wall": {"user:mary"}, "cursor": {strconv.FormatUint(m1.Seq, 10)}})
		call := e.startPollOn(p, wc, pollReq(method, args, h...))
		call.waiting()
		e.publish("user:mary", "two")
		wantMessages(t, call.answer())

		// The next requests of the connection: the engine's re-polls on
		// main's server, net/http's keep-alive requests otherwise.
		next := pollPath{name: p.name, engine: p.engine, repoll: p.engine}
		ip := &idPoller{e: e, p: next, wc: wc}
		if !p.engine {
			ip.p, ip.wc = p, nil
		}
		send := func(args url.Values, headers ...string) *wireResponse {
			if !p.engine { // the same connection, through net/http
				return e.startPollOn(p, wc, pollReq(method, args, headers...)).answer()
			}
			return ip.poll(pollReq(method, args, headers...))
		}
		base := url.Values{"wall": {"user:mary"}, "cursor": {"0"}}
		wantError(t, send(base), 401, msgPrivateAnon)
		args, h = present("cookie", bobToken(t), base)
		wantError(t, send(args, h...), 403, msgPrivateOther)
		args, h = present("arg", maryToken(t), base)
		if got := wantMessages(t, send(args, h...)); len(*got.Messages) != 2 {
			t.Errorf("mary's poll: %+v", *got.Messages)
		}
		wantError(t, send(base), 401, msgPrivateAnon)
	})
}

// With -anonymous none, polls need a token on every path; with read,
// anonymous polls (GET and POST) are reads and are answered.
func TestIdentityPollAnonymousModes(t *testing.T) {
	forEachPathMethod(t, func(t *testing.T, p pollPath, method string) {
		for _, mode := range []identity.Mode{identity.AnonymousRead, identity.AnonymousNone} {
			e := p.env(t, idConfig(mode), 10)
			e.publish("main", "hello")
			ip := &idPoller{e: e, p: p, hold: []string{"Authorization: Bearer " + maryToken(t)}}
			r := ip.poll(pollReq(method, url.Values{"cursor": {"0"}}))
			if mode == identity.AnonymousNone {
				wantError(t, r, 401, msgNeedToken)
			} else {
				wantMessages(t, r)
			}
			for _, c := range carriers {
				args, h := present(c, bobToken(t), url.Values{"cursor": {"0"}})
				wantMessages(t, ip.poll(pollReq(method, args, h...)))
			}
		}
	})
}

// Without a token secret, tokens are not looked at: a bad one in any
// carrier is no error, and the prefix walls are out of everyone's reach.
func TestIdentityPollTokensOff(t *testing.T) {
	forEachPathMethod(t, func(t *testing.T, p pollPath, method string) {
		e := p.env(t, Config{}, 10)
		e.publish("main", "hello")
		ip := &idPoller{e: e, p: p}
		for _, tc := range tokenCases(t) {
			for _, c := range carriers {
				args, h := present(c, tc.token, url.Values{"cursor": {"0"}})
				wantMessages(t, ip.poll(pollReq(method, args, h...)))
				args, h = present(c, tc.token, url.Values{"wall": {"user:mary"}, "cursor": {"0"}})
				wantError(t, ip.poll(pollReq(method, args, h...)), 401, msgPrivateAnon)
			}
		}
	})
}

// The request log never shows a token argument's value.
func TestRedactToken(t *testing.T) {
	for uri, want := range map[string]string{
		"/a/message/updates":                      "/a/message/updates",
		"/a/message/updates?cursor=1":             "/a/message/updates?cursor=1",
		"/ws?token=abc.def.ghi&wall=x":            "/ws?token=REDACTED&wall=x",
		"/ws?wall=x&token=abc":                    "/ws?wall=x&token=REDACTED",
		"/ws?t%6Fken=abc&token=d&&tokens=e&token": "/ws?t%6Fken=REDACTED&token=REDACTED&&tokens=e&token=REDACTED",
		"/sse?x=token%3Dabc":                      "/sse?x=token%3Dabc",
	} {
		if got := redactToken(uri); got != want {
			t.Errorf("redactToken(%q) = %q, want %q", uri, got, want)
		}
	}
}
