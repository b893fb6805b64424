package server

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func publishRequestFor(body, auth string) *http.Request {
	req := httptest.NewRequest(http.MethodPost, "/api/publish", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	return req
}

func TestPublishDisabledWithoutToken(t *testing.T) {
	e := newTestEnv(t, Config{}, 10)
	for _, auth := range []string{"", "Bearer ", "Bearer x"} {
		if rec := e.serve(publishRequestFor(`{"body": "hi"}`, auth)); rec.Code != http.StatusNotFound {
			t.Errorf("auth %q: %d %s", auth, rec.Code, rec.Body)
		}
	}
	if len(e.hub.Names()) != 0 {
		t.Errorf("walls %v", e.hub.Names())
	}
}

func TestPublish(t *testing.T) {
	const token = "s3cret-token"
	const limit = 100
	for _, tc := range []struct {
		name   string
		auth   string
		body   string
		code   int
		wall   string // where the message lands
		stored string
	}{
		{name: "no token", body: `{"body": "hi"}`, code: 401},
		{name: "wrong token", auth: "Bearer nope", body: `{"body": "hi"}`, code: 401},
		{name: "token prefix", auth: "Bearer s3cret", body: `{"body": "hi"}`, code: 401},
		{name: "not bearer", auth: "Basic " + token, body: `{"body": "hi"}`, code: 401},
		{name: "bare token", auth: token, body: `{"body": "hi"}`, code: 401},
		{name: "default wall", auth: "Bearer " + token, body: `{"body": "  hi <i>x</i>\u00a0"}`, code: 200, wall: "main", stored: "hi <i>x</i>"},
		{name: "named wall", auth: "Bearer " + token, body: `{"wall": "news", "body": "hi", "extra": 1}`, code: 200, wall: "news", stored: "hi"},
		{name: "body at the limit", auth: "Bearer " + token, body: `{"body": "` + strings.Repeat("a", limit) + `"}`, code: 200, wall: "main", stored: strings.Repeat("a", limit)},
		{name: "bad JSON", auth: "Bearer " + token, body: `{"body": `, code: 400},
		{name: "not an object", auth: "Bearer " + token, body: `["hi"]`, code: 400},
		{name: "body not a string", auth: "Bearer " + token, body: `{"body": 42}`, code: 400},
		{name: "missing body", auth: "Bearer " + token, body: `{"wall": "main"}`, code: 400},
		{name: "null body", auth: "Bearer " + token, body: `{"body": null}`, code: 400},
		{name: "empty request", auth: "Bearer " + token, body: ``, code: 400},
		{name: "empty body", auth: "Bearer " + token, body: `{"body": ""}`, code: 400},
		{name: "whitespace body", auth: "Bearer " + token, body: `{"body": " \u3000 "}`, code: 400},
		{name: "invalid UTF-8", auth: "Bearer " + token, body: "{\"body\": \"a\xffb\"}", code: 400},
		{name: "body too large", auth: "Bearer " + token, body: `{"body": "` + strings.Repeat("a", limit+1) + `"}`, code: 413},
		{name: "request too large", auth: "Bearer " + token, body: `{"body": "a", "pad": "` + strings.Repeat("p", limit*6+1024) + `"}`, code: 413},
		{name: "bad wall", auth: "Bearer " + token, body: `{"wall": "no/slash", "body": "hi"}`, code: 400},
		{name: "too long wall", auth: "Bearer " + token, body: `{"wall": "` + strings.Repeat("w", 65) + `", "body": "hi"}`, code: 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newTestEnv(t, Config{PublishToken: token, BodyLimit: limit}, 10)
			rec := e.serve(publishRequestFor(tc.body, tc.auth))
			if rec.Code != tc.code {
				t.Fatalf("status %d, want %d (%s)", rec.Code, tc.code, rec.Body)
			}
			if tc.code == 401 && !strings.HasPrefix(rec.Header().Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("WWW-Authenticate %q", rec.Header().Get("WWW-Authenticate"))
			}
			if tc.code != 200 {
				if len(e.hub.Names()) != 0 {
					t.Errorf("error left walls %v", e.hub.Names())
				}
				return
			}
			if ct := rec.Header().Get("Content-Type"); ct != "application/json; charset=UTF-8" {
				t.Errorf("Content-Type %q", ct)
			}
			m := decodeMsg(t, rec.Body.Bytes())
			w := e.hub.Lookup(tc.wall)
			if w == nil {
				t.Fatalf("wall %s not created; walls %v", tc.wall, e.hub.Names())
			}
			msgs := w.Messages()
			if len(msgs) != 1 || msgs[0].ID != m.ID || msgs[0].Body != tc.stored || string(msgs[0].JSON) != rec.Body.String() {
				t.Fatalf("stored %+v, answered %s", msgs, rec.Body)
			}
			if m.Seq != 1 || !uuid4RE.MatchString(m.ID) {
				t.Errorf("message %+v", m)
			}
		})
	}
}

// A published message reaches long-pollers and WebSocket subscribers.
func TestPublishReachesSubscribers(t *testing.T) {
	e := newTestEnv(t, Config{PublishToken: "t"}, 10)
	c := e.mustDialWS("/ws?wall=news", "news", 1)
	ch := e.pollAsync(map[string][]string{"wall": {"news"}})
	e.parked(1) // the poll; a WebSocket's handler returns after the upgrade
	req, _ := http.NewRequest(http.MethodPost, e.ts.URL+"/api/publish", strings.NewReader(`{"wall": "news", "body": "extra!"}`))
	req.Header.Set("Authorization", "Bearer t")
	code, body := e.do(req)
	if code != http.StatusOK {
		t.Fatalf("%d %s", code, body)
	}
	m := decodeMsg(t, body)
	if got := readWSMsg(t, c); got != m {
		t.Errorf("WebSocket got %+v, want %+v", got, m)
	}
	p := decodePoll(t, awaitPoll(t, ch, 5*time.Second).body)
	if p.Messages == nil || len(*p.Messages) != 1 || (*p.Messages)[0] != m {
		t.Errorf("poll got %+v", p)
	}
}
