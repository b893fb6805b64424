package server

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"wall/assets"
	"wall/server/internal/admit"
	"wall/server/internal/identity"
	"wall/views"
	"wall/wall"
)

// The other entry paths with real tokens: the page, the form post, the
// WebSocket handshake (its status comes before any upgrade) and the
// publish API, on main's server, each request on a fresh connection.

// wsHandshake is a WebSocket handshake for target.
func wsHandshake(target string, headers ...string) string {
	return rawRequest(http.MethodGet, target, "", append([]string{"Upgrade: websocket", "Connection: Upgrade",
		"Sec-WebSocket-Version: 13", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=="}, headers...)...)
}

// ask sends req on a fresh connection and returns the answer.
func ask(e *testEnv, req string) *wireResponse {
	e.t.Helper()
	wc := e.dial()
	wc.send(req)
	r := wc.response(5 * time.Second)
	wc.c.Close()
	return r
}

// Each entry path, for a request presenting the token tok in carrier c
// (none if c is "") on the wall name ("" for the default).
var entryPaths = []struct {
	name string
	req  func(c, tok, name string) string
	ok   int // the status of an admitted request
}{
	{"page", func(c, tok, name string) string {
		target := "/"
		if name != "" {
			target = "/w/" + name
		}
		// The page's wall comes from its path; a token may come in any
		// carrier, the argument being a sign-in link's.
		a, h := present(c, tok, nil)
		if q := a.Encode(); q != "" {
			target += "?" + q
		}
		return rawRequest(http.MethodGet, target, "", h...)
	}, 200},
	{"form post", func(c, tok, name string) string {
		form := url.Values{"body": {"hi"}, "_xsrf": {testXSRF}}
		if name != "" {
			form.Set("wall", name)
		}
		form, h := present(c, tok, form, "Cookie: _xsrf="+testXSRF)
		return rawRequest(http.MethodPost, "/a/message/new", form.Encode(), h...)
	}, 200},
	{"websocket", func(c, tok, name string) string {
		args := url.Values{}
		if name != "" {
			args.Set("wall", name)
		}
		args, h := present(c, tok, args)
		return wsHandshake("/ws?"+args.Encode(), h...)
	}, 101},
	{"legacy websocket", func(c, tok, name string) string {
		args := url.Values{}
		if name != "" {
			args.Set("wall", name)
		}
		args, h := present(c, tok, args)
		return wsHandshake("/chatsocket?"+args.Encode(), h...)
	}, 101},
}

// wantEntry checks an answer: ok (and a page, a stored message or an
// upgrade) or the JSON error.
func wantEntry(t *testing.T, what string, r *wireResponse, ok, code int, msg string) {
	t.Helper()
	if code == 200 {
		code = ok
	}
	if r.Status != code {
		t.Errorf("%s: %v, want %d %q", what, r, code, msg)
		return
	}
	switch {
	case code >= 400:
		wantError(t, r, code, msg)
	case code == 101:
		if r.Header.Get("Sec-WebSocket-Accept") != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
			t.Errorf("%s: upgrade %s", what, r.Head)
		}
	case strings.HasPrefix(r.Header.Get("Content-Type"), "text/html"):
		if !bytes.Contains(r.Body, []byte("<html")) {
			t.Errorf("%s: page %q", what, r.Body)
		}
	default:
		if m := decodeMsg(t, r.Body); m.Body != "hi" {
			t.Errorf("%s: posted %+v", what, m)
		}
	}
}

// A valid token in any carrier is admitted on every entry path; a bad
// one is a 401 saying what is wrong with it, before any upgrade, and a
// refused post stores nothing.
func TestIdentityEntryTokens(t *testing.T) {
	e := newMainEnv(t, idConfig(identity.AnonymousPost), 200)
	for _, ep := range entryPaths {
		t.Run(ep.name, func(t *testing.T) {
			for _, tc := range tokenCases(t) {
				for _, c := range carriers {
					before := messagesOn(e, wall.DefaultWall)
					r := ask(e, ep.req(c, tc.token, ""))
					wantEntry(t, tc.name+" in "+c, r, ep.ok, tc.code, tc.msg)
					stored := messagesOn(e, wall.DefaultWall) - before
					if want := b2i(ep.name == "form post" && tc.code == 200); stored != want {
						t.Errorf("%s in %s: %d messages stored, want %d", tc.name, c, stored, want)
					}
				}
			}
		})
	}
}

// messagesOn counts the messages cached on the wall name.
func messagesOn(e *testEnv, name string) int {
	if w := e.hub.Lookup(name); w != nil {
		return len(w.Messages())
	}
	return 0
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Private walls on every entry path: the owner is admitted, another
// token gets 403, an anonymous client 401, on every prefix with and
// without a facility and the listed walls.
func TestIdentityEntryPrivate(t *testing.T) {
	e := newMainEnv(t, idConfig(identity.AnonymousPost), 200)
	for _, ep := range entryPaths {
		t.Run(ep.name, func(t *testing.T) {
			for _, pc := range privateCases {
				for _, who := range whoCases(t) {
					before := messagesOn(e, pc.wall)
					code, msg := wantFor(pc.owner, who.name)
					r := ask(e, ep.req(who.carrier, who.token, pc.wall))
					wantEntry(t, pc.wall+" as "+who.name+" via "+who.carrier, r, ep.ok, code, msg)
					if code != 200 && messagesOn(e, pc.wall) != before {
						t.Errorf("%s as %q: a refused request stored a message", pc.wall, who.name)
					}
				}
			}
		})
	}
}

// A form post whose token is in the Authorization header needs no XSRF
// token (no cross-site form can send that header); one whose token is in
// the form or the cookie does, and so does one when tokens are off.
func TestIdentityPostXSRF(t *testing.T) {
	on := newMainEnv(t, idConfig(identity.AnonymousPost), 10)
	off := newMainEnv(t, Config{}, 10)
	for _, tc := range []struct {
		e       *testEnv
		carrier string
		code    int
	}{
		{on, "header", 200},
		{on, "arg", 403},
		{on, "cookie", 403},
		{off, "header", 403},
	} {
		form, h := present(tc.carrier, maryToken(t), url.Values{"body": {"hi"}, "wall": {"user:mary"}})
		if tc.e == off {
			form.Set("wall", "main")
		}
		r := ask(tc.e, rawRequest(http.MethodPost, "/a/message/new", form.Encode(), h...))
		if tc.code == 200 {
			if r.Status != 200 || decodeMsg(t, r.Body).Body != "hi" {
				t.Errorf("%s: %v", tc.carrier, r)
			}
			continue
		}
		wantError(t, r, tc.code, "'_xsrf' argument missing from POST")
	}
}

// The publish API is the backend: it reads no client token (a bad one in
// the query or the cookie changes nothing), takes only its own bearer
// token in Authorization (a user's token there is refused), and reaches
// private walls.
func TestIdentityPublishUnaffected(t *testing.T) {
	e := newMainEnv(t, idConfig(identity.AnonymousNone), 10)
	for _, pc := range append(privateCases, struct{ wall, owner string }{"main", ""}) {
		body := `{"wall": "` + pc.wall + `", "body": "to ` + pc.wall + `"}`
		r := ask(e, rawRequest(http.MethodPost, "/api/publish?token=garbage", body, "Content-Type: application/json",
			"Authorization: Bearer "+idPublish, "Cookie: "+admit.TokenCookie+"=garbage"))
		if r.Status != 200 || decodeMsg(t, r.Body).Body != "to "+pc.wall {
			t.Errorf("publish to %s: %v", pc.wall, r)
		}
		r = ask(e, rawRequest(http.MethodPost, "/api/publish", body, "Content-Type: application/json",
			"Authorization: Bearer "+maryToken(t)))
		wantError(t, r, 401, "missing or wrong bearer token")
	}
}

// -anonymous read: anonymous clients read (page, WebSocket) but may not
// post; -anonymous none: anonymous clients get the page only. A token
// lifts both.
func TestIdentityEntryAnonymousModes(t *testing.T) {
	for _, tc := range []struct {
		mode identity.Mode
		want map[string]string // entry path → the anonymous client's refusal, "" admitted
	}{
		{identity.AnonymousRead, map[string]string{"form post": msgReadOnly}},
		{identity.AnonymousNone, map[string]string{"form post": msgNeedToken, "websocket": msgNeedToken, "legacy websocket": msgNeedToken}},
	} {
		t.Run(tc.mode.String(), func(t *testing.T) {
			e := newMainEnv(t, idConfig(tc.mode), 10)
			for _, ep := range entryPaths {
				code, msg := 200, tc.want[ep.name]
				if msg != "" {
					code = 401
				}
				wantEntry(t, ep.name+" anonymous", ask(e, ep.req("", "", "")), ep.ok, code, msg)
				for _, c := range carriers {
					wantEntry(t, ep.name+" via "+c, ask(e, ep.req(c, bobToken(t), "")), ep.ok, 200, "")
				}
			}
		})
	}
}

// Without a token secret, tokens are not looked at: a bad one in any
// carrier changes nothing on any entry path.
func TestIdentityEntryTokensOff(t *testing.T) {
	e := newMainEnv(t, Config{}, 200)
	for _, ep := range entryPaths {
		for _, tc := range tokenCases(t) {
			for _, c := range carriers {
				wantEntry(t, ep.name+": "+tc.name+" via "+c, ask(e, ep.req(c, tc.token, "")), ep.ok, 200, "")
			}
		}
		wantEntry(t, ep.name+" on user:mary", ask(e, ep.req("header", maryToken(t), "user:mary")), ep.ok, 401, msgPrivateAnon)
	}
}

// The request log, at debug level, shows the token argument redacted.
func TestIdentityLogRedacted(t *testing.T) {
	var logs bytes.Buffer
	hub := wall.NewHub(10)
	defer hub.Close()
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	broker := wall.NewMemoryBroker(hub)
	srv, err := New(idConfig(identity.AnonymousPost), log, hub, broker, views.FS, assets.FS)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := broker.Publish(t.Context(), wall.Post{Wall: "user:mary", ID: "3f2a8c1e-5b7d-4e9a-8c6f-1d2e3f4a5b6c", Body: "hello"}); err != nil {
		t.Fatal(err)
	}
	tok := maryToken(t)
	rec := httptest.NewRecorder()
	srv.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/a/message/updates?wall=user:mary&cursor=0&token="+tok, nil))
	if rec.Code != 200 {
		t.Fatalf("poll: %d %s", rec.Code, rec.Body)
	}
	rec = httptest.NewRecorder()
	srv.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/a/message/updates?wall=user:bob&token="+tok, nil))
	if rec.Code != 403 {
		t.Fatalf("poll: %d %s", rec.Code, rec.Body)
	}
	if out := logs.String(); strings.Contains(out, tok) || strings.Count(out, "token=REDACTED") != 2 {
		t.Errorf("log:\n%s", out)
	}
}

// A configuration the identity package refuses makes New fail.
func TestIdentityConfigRefused(t *testing.T) {
	hub := wall.NewHub(10)
	defer hub.Close()
	_, err := New(Config{Identity: identity.Config{Secret: []byte("short")}},
		slog.New(slog.NewTextHandler(io.Discard, nil)), hub, wall.NewMemoryBroker(hub), views.FS, assets.FS)
	if err == nil || !strings.Contains(err.Error(), "at least 32") {
		t.Fatalf("New: %v", err)
	}
}
