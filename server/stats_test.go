package server

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"wall/server/internal/identity"
	"wall/wall/presence"
)

// getStats reads GET /api/walls/<name> with the token, if any, in an
// Authorization header.
func (e *testEnv) getStats(name, token string) (int, wallStats, string) {
	e.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, e.url+"/api/walls/"+url.PathEscape(name), nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	code, b := e.do(req)
	var st wallStats
	if code == http.StatusOK {
		if err := json.Unmarshal(b, &st); err != nil {
			e.t.Fatalf("stats body %s: %v", b, err)
		}
	}
	return code, st, string(b)
}

// waitClients waits until the wall's stats show want.
func (e *testEnv) waitClients(name string, want presence.Counts) wallStats {
	e.t.Helper()
	var st wallStats
	waitFor(e.t, fmt.Sprintf("clients of %s to be %+v", name, want), 5*time.Second, func() bool {
		var code int
		code, st, _ = e.getStats(name, "")
		return code == http.StatusOK && st.Clients == want
	})
	return st
}

// TestWallStatsLocal: GET /api/walls/<wall> without Redis counts this
// instance's clients of the wall per transport — WebSockets, event
// streams, and long-polls whose keep-alive connection last polled the
// wall, between polls too — with its last seq and epoch, and the counts
// drop as clients leave.
func TestWallStatsLocal(t *testing.T) {
	e := newMainEnv(t, Config{}, 10)
	m := e.post("room", "hello")
	var wss []*websocket.Conn
	for range 2 {
		c, _, err := websocket.DefaultDialer.Dial("ws://"+e.addr+"/ws?wall=room", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		wss = append(wss, c)
	}
	sse := e.openSSE("/sse?wall=room")
	p := pollPath{name: "engine-first", engine: true}
	var polls []*pollCall
	for range 3 {
		c := e.startPoll(p, pollReq(http.MethodGet, url.Values{"wall": {"room"}, "cursor": {m.Cursor}}))
		c.parked()
		polls = append(polls, c)
	}
	st := e.waitClients("room", presence.Counts{WebSocket: 2, SSE: 1, LongPoll: 3})
	if st.Wall != "room" || st.LastSeq != 1 || st.Epoch == "" || !strings.HasSuffix(m.Cursor, "."+st.Epoch) ||
		st.Instances != 1 || st.Partial {
		t.Fatalf("stats %+v, message %+v", st, m)
	}
	// A post answers the polls; their connections, kept alive for the
	// next poll, still count.
	e.post("room", "wake")
	for _, c := range polls {
		wantMessages(t, c.answer())
	}
	if _, st, _ := e.getStats("room", ""); st.Clients.LongPoll != 3 || st.LastSeq != 2 {
		t.Fatalf("between polls: %+v", st)
	}
	if _, other, _ := e.getStats("elsewhere", ""); other.Clients.Total() != 0 || other.LastSeq != 0 {
		t.Fatalf("a wall without clients: %+v", other)
	}
	wss[0].Close()
	polls[0].wc.c.Close()
	sse.c.Close()
	e.waitClients("room", presence.Counts{WebSocket: 1, LongPoll: 2})
}

// TestWallStatsAdmission: /api/walls is admitted as a read on every
// wall: a private wall answers its audience only (401 anonymous, 403 for
// another token), -anonymous none wants a token everywhere, a bad name
// is a 400.
func TestWallStatsAdmission(t *testing.T) {
	e := newTestEnv(t, idConfig(identity.AnonymousPost), 10)
	mary, bob := maryToken(t), bobToken(t)
	for _, tc := range []struct {
		wall, token string
		code        int
		msg         string
	}{
		{"main", "", 200, ""},
		{"user:mary", "", 401, msgPrivateAnon},
		{"user:mary", bob, 403, msgPrivateOther},
		{"user:mary", mary, 200, ""},
		{"staff", "", 401, msgPrivateAnon},
		{"staff", mary, 403, msgPrivateOther},
		{"staff", bob, 200, ""},
		{"main", "not.a.token", 401, ""},
		{"a b", "", 400, ""},
	} {
		code, st, body := e.getStats(tc.wall, tc.token)
		if code != tc.code || (tc.msg != "" && !strings.Contains(body, tc.msg)) || (code == 200 && st.Wall != tc.wall) {
			t.Errorf("%s with token %.8q: %d %s, want %d %s", tc.wall, tc.token, code, body, tc.code, tc.msg)
		}
	}
	// The token as an argument, as a browser's EventSource would send it.
	if code, _ := e.get("/api/walls/user:mary?token=" + mary); code != 200 {
		t.Errorf("token argument: %d", code)
	}
	none := newTestEnv(t, idConfig(identity.AnonymousNone), 10)
	if code, _, body := none.getStats("main", ""); code != 401 || !strings.Contains(body, msgNeedToken) {
		t.Errorf("-anonymous none, no token: %d %s", code, body)
	}
	if code, _, _ := none.getStats("main", mary); code != 200 {
		t.Errorf("-anonymous none, a token: %d", code)
	}
}

// TestAdmin: the admin page needs the admin token (HTTP Basic password,
// any user, any case of the scheme; or Bearer): 401 with a Basic
// challenge without it, 404 when no token is configured. It lists the
// walls with clients, and private ones only by their prefix.
func TestAdmin(t *testing.T) {
	if code, _ := newTestEnv(t, Config{}, 10).get("/admin"); code != http.StatusNotFound {
		t.Fatalf("no admin token: %d, want 404", code)
	}
	cfg := idConfig(identity.AnonymousPost)
	cfg.AdminToken = "admin-secret"
	e := newTestEnv(t, cfg, 10)
	e.publish("user:mary", "private")
	for _, path := range []string{"/ws?wall=room", "/ws?wall=user:mary&token=" + maryToken(t)} {
		c, _, err := websocket.DefaultDialer.Dial(e.wsURL(path), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	e.subscribed("room", 1)
	e.subscribed("user:mary", 1)
	basic := func(user, pass string) string {
		return base64.StdEncoding.EncodeToString([]byte(user + ":" + pass))
	}
	for _, tc := range []struct {
		auth string
		code int
	}{
		{"", 401},
		{"Basic " + basic("admin", "wrong"), 401},
		{"Basic " + basic("admin", "admin-secret") + "x", 401},
		{"Bearer " + idPublish, 401},
		{"Basic " + basic("admin", "admin-secret"), 200},
		{"basic " + basic("", "admin-secret"), 200},
		{"BEARER admin-secret", 200},
	} {
		req, _ := http.NewRequest(http.MethodGet, e.url+"/admin", nil)
		if tc.auth != "" {
			req.Header.Set("Authorization", tc.auth)
		}
		resp, err := e.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		page := string(b)
		switch {
		case resp.StatusCode != tc.code:
			t.Errorf("Authorization %q: %d, want %d", tc.auth, resp.StatusCode, tc.code)
		case tc.code == 401 && !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Basic "):
			t.Errorf("401 without a Basic challenge: %q", resp.Header.Get("WWW-Authenticate"))
		case tc.code == 200:
			if !strings.Contains(page, "<td>room</td>") || !strings.Contains(page, "user:… (1 private wall)") ||
				strings.Contains(page, "mary") || strings.Contains(page, "<script") {
				t.Errorf("admin page:\n%s", page)
			}
			if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
				t.Errorf("Cache-Control %q", cc)
			}
		}
	}
}
