package server

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"time"
	"wall/server/internal/identity"
)

const retryID = "11111111-2222-4333-8444-555555555555"

// TestFormPostIdempotent: a form post's id makes its retry store nothing
// and answer the stored message; a bad id is a 400 that stores nothing.
func TestFormPostIdempotent(t *testing.T) {
	e := newTestEnv(t, Config{}, 10)
	post := func(id, body string) (int, []byte) {
		return e.postForm("/a/message/new", url.Values{"body": {body}, "id": {id}, "wall": {"w"}})
	}
	code, first := post(retryID, "once")
	if code != 200 {
		t.Fatalf("%d %s", code, first)
	}
	m := decodeMsg(t, first)
	if m.ID != retryID || m.Seq != 1 || m.Time == 0 || m.User != "" {
		t.Fatalf("stored %+v", m)
	}
	code, again := post(retryID, "once, retried")
	if code != 200 || string(again) != string(first) {
		t.Fatalf("retry: %d %s, want the stored %s", code, again, first)
	}
	for _, bad := range []string{"11111111-2222-4333-8444-55555555555X", "AAAAAAAA-2222-4333-8444-555555555555", "1", "11111111-2222-1333-8444-555555555555"} {
		if code, body := post(bad, "x"); code != 400 || !strings.Contains(string(body), "lowercase UUID4") {
			t.Errorf("id %q: %d %s", bad, code, body)
		}
	}
	if l := e.hub.Lookup("w").Last(); l != 1 {
		t.Fatalf("last %d after a retry and bad ids, want 1", l)
	}
}

// TestWSPostIdempotent: a frame with an id is acknowledged by its message;
// a retry's stored message goes to the sender alone; errors name the id.
func TestWSPostIdempotent(t *testing.T) {
	e := newTestEnv(t, Config{}, 10)
	sender := e.mustDialWS("/ws?wall=w", "w", 1)
	other := e.mustDialWS("/ws?wall=w", "w", 2)
	send := func(v any) {
		t.Helper()
		if err := sender.WriteJSON(v); err != nil {
			t.Fatal(err)
		}
	}
	send(map[string]string{"body": "hello", "id": retryID})
	ack := readWSMsg(t, sender)
	if ack.ID != retryID || ack.Seq != 1 || ack.Body != "hello" {
		t.Fatalf("ack %+v", ack)
	}
	if got := readWSMsg(t, other); got != ack {
		t.Fatalf("other subscriber got %+v, want %+v", got, ack)
	}
	send(map[string]string{"body": "hello again", "id": retryID})
	if got := readWSMsg(t, sender); got != ack {
		t.Fatalf("retry acknowledged with %+v, want the stored %+v", got, ack)
	}
	for _, tc := range []struct {
		frame any
		err   string
		id    string
	}{
		{map[string]any{"body": "x", "id": "NOPE"}, "id must be a lowercase UUID4", "NOPE"},
		{map[string]any{"body": "x", "id": 7}, "id must be a lowercase UUID4", ""},
		{map[string]any{"body": " ", "id": "aaaaaaaa-2222-4333-8444-555555555555"}, "body is empty", "aaaaaaaa-2222-4333-8444-555555555555"},
		{map[string]any{"id": "bbbbbbbb-2222-4333-8444-555555555555"}, `frame needs a string "body"`, "bbbbbbbb-2222-4333-8444-555555555555"},
	} {
		send(tc.frame)
		var got struct {
			Error, ID string
			Status    int
		}
		if err := json.Unmarshal(readFrame(t, sender, 5*time.Second), &got); err != nil {
			t.Fatal(err)
		}
		if got.Error != tc.err || got.ID != tc.id || got.Status != 400 {
			t.Errorf("frame %v answered %+v, want error %q id %q status 400", tc.frame, got, tc.err, tc.id)
		}
	}
	// The other subscriber saw the message once and nothing since.
	send(map[string]string{"body": "last"})
	if got := readWSMsg(t, other); got.Seq != 2 || got.Body != "last" {
		t.Fatalf("other subscriber then got %+v, want seq 2", got)
	}
	if l := e.hub.Lookup("w").Last(); l != 2 {
		t.Fatalf("last %d, want 2", l)
	}
}

// TestWSHeartbeat: heartbeat=1 adds a text frame to every ping; without
// it a client sees no new frames (legacy /chatsocket clients).
func TestWSHeartbeat(t *testing.T) {
	e := newTestEnv(t, Config{PingInterval: 100 * time.Millisecond}, 10)
	hb := e.mustDialWS("/ws?wall=w&heartbeat=1", "w", 1)
	pinged := make(chan struct{}, 10)
	hb.SetPingHandler(func(string) error { pinged <- struct{}{}; return nil })
	for i := 0; i < 2; i++ {
		if b := readFrame(t, hb, 5*time.Second); string(b) != `{"heartbeat": true}` {
			t.Fatalf("frame %s, want a heartbeat", b)
		}
	}
	if len(pinged) == 0 {
		t.Fatal("no ping came with the heartbeats")
	}
	legacy := e.mustDialWS("/chatsocket?wall=w", "w", 2)
	legacy.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	if _, b, err := legacy.ReadMessage(); err == nil {
		t.Fatalf("a client without heartbeat=1 got %s", b)
	} else if ne, ok := err.(interface{ Timeout() bool }); !ok || !ne.Timeout() {
		t.Fatalf("read: %v", err)
	}
}

// TestPublishTargets: audiences reach their private walls, each in its own
// numbering; a bad target refuses the whole request; a retry with the id
// stores nothing.
func TestPublishTargets(t *testing.T) {
	e := newTestEnv(t, Config{PublishToken: "t"}, 10)
	publish := func(body string) (int, []byte) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, e.ts.URL+"/api/publish", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer t")
		return e.do(req)
	}
	type line struct {
		Wall string `json:"wall"`
		ID   string `json:"id"`
		Seq  uint64 `json:"seq"`
	}
	decode := func(b []byte) (out struct {
		Error    string `json:"error"`
		Messages []line `json:"messages"`
	}) {
		t.Helper()
		if err := json.Unmarshal(b, &out); err != nil {
			t.Fatalf("%s: %v", b, err)
		}
		return out
	}
	if code, b := publish(`{"body": "warm-up", "users": ["john"]}`); code != 200 {
		t.Fatalf("%d %s", code, b)
	}
	req := `{"body": "shipped", "id": "` + retryID + `", "users": ["john", "mary", "john"], "groups": ["staff"], "sessions": ["s1"], "facility": "orders", "walls": ["news"]}`
	code, b := publish(req)
	if code != 200 {
		t.Fatalf("%d %s", code, b)
	}
	got := decode(b).Messages
	want := []line{{"news", retryID, 1}, {"user:john:orders", retryID, 1}, {"user:mary:orders", retryID, 1}, {"group:staff:orders", retryID, 1}, {"session:s1:orders", retryID, 1}}
	if len(got) != len(want) {
		t.Fatalf("answer %s, want %v", b, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("target %d: %+v, want %+v", i, got[i], want[i])
		}
		if m := e.hub.Lookup(want[i].Wall).Messages(); len(m) != 1 || m[0].Body != "shipped" {
			t.Errorf("%s holds %v", want[i].Wall, m)
		}
	}
	if code, b := publish(req); code != 200 || len(decode(b).Messages) != 5 || decode(b).Messages[1] != want[1] {
		t.Fatalf("retry: %d %s", code, b)
	}
	if l := e.hub.Lookup("user:john").Last(); l != 1 {
		t.Errorf("user:john last %d", l)
	}
	names := len(e.hub.Names())
	for _, bad := range []string{
		`{"body": "x", "users": ["ok", "no/slash"]}`,
		`{"body": "x", "users": [""]}`,
		`{"body": "x", "users": ["a:b"]}`,
		`{"body": "x", "groups": ["` + strings.Repeat("g", 60) + `"]}`,
		`{"body": "x", "walls": ["ok", "bad wall"]}`,
		`{"body": "x", "facility": "orders"}`,
		`{"body": "x", "users": ["mary"], "facility": "a b"}`,
		`{"body": "x", "users": "mary"}`,
		`{"body": "x", "users": ["mary"], "id": "not-a-uuid"}`,
		`{"body": "x", "users": [` + manyNames(101) + `]}`,
	} {
		if code, b := publish(bad); code != 400 {
			t.Errorf("%s: %d %s, want 400", bad, code, b)
		}
	}
	if n := len(e.hub.Names()); n != names {
		t.Errorf("refused requests opened walls: %d, had %d", n, names)
	}
	if l := e.hub.Lookup("user:mary:orders").Last(); l != 1 {
		t.Errorf("a refused request stored on user:mary:orders: last %d", l)
	}
	// Part 2's shape keeps part 2's answer: the message.
	if code, b := publish(`{"wall": "news", "body": "plain"}`); code != 200 || decodeMsg(t, b).Seq != 2 {
		t.Errorf("single wall: %d %s", code, b)
	}
}

// manyNames is n distinct quoted names, comma-separated.
func manyNames(n int) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `"u%d"`, i)
	}
	return b.String()
}

// TestAuthoredPosts: a post by a token holder carries its author on every
// entry path (form post with the token in a header, WebSocket frame); an
// anonymous one has no "user"; under -anonymous read an anonymous socket's
// frame post is refused with an error frame naming its id.
func TestAuthoredPosts(t *testing.T) {
	e := newTestEnv(t, idConfig(identity.AnonymousRead), 10)
	mary := maryToken(t)
	req := formRequest("/a/message/new", url.Values{"body": {"from a form"}, "wall": {"user:mary"}})
	req.Header.Set("Authorization", "Bearer "+mary)
	rec := e.serve(req)
	if rec.Code != 200 || decodeMsg(t, rec.Body.Bytes()).User != "mary" {
		t.Fatalf("form post: %d %s", rec.Code, rec.Body)
	}
	ws := e.mustDialWS("/ws?wall=user:mary&token="+mary, "user:mary", 1)
	if err := ws.WriteJSON(map[string]string{"body": "from a socket"}); err != nil {
		t.Fatal(err)
	}
	if m := readWSMsg(t, ws); m.User != "mary" || m.Body != "from a socket" {
		t.Fatalf("frame post stored %+v", m)
	}
	if html := e.hub.Lookup("user:mary").Messages()[1].HTML; strings.Contains(html, "mary") {
		t.Fatalf("the author is in the legacy html fragment: %s", html)
	}

	anon := e.mustDialWS("/ws?wall=main", "main", 1)
	const id = "cccccccc-2222-4333-8444-555555555555"
	if err := anon.WriteJSON(map[string]string{"body": "anonymous", "id": id}); err != nil {
		t.Fatal(err)
	}
	var got struct {
		Error, ID string
		Status    int
	}
	if err := json.Unmarshal(readFrame(t, anon, 5*time.Second), &got); err != nil || got.ID != id || got.Status != 401 || !strings.Contains(got.Error, "anonymous") {
		t.Fatalf("anonymous frame post under -anonymous read answered %+v (%v)", got, err)
	}
	if w := e.hub.Lookup("main"); w.Last() != 0 {
		t.Fatalf("an anonymous frame post was stored under -anonymous read")
	}
}
