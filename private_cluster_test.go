package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"
)

// The private-wall tests run two instances with Redis behind the bundled
// nginx, with identity on, as a deployment with a backend would.

// mintToken signs an HS256 token for sub the way a backend would, with any
// JWT library (this one is golang-jwt).
func mintToken(t *testing.T, sub string, claims jwt.MapClaims) string {
	t.Helper()
	c := jwt.MapClaims{"sub": sub, "exp": time.Now().Add(time.Hour).Unix()}
	for k, v := range claims {
		c[k] = v
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString([]byte(testSecret))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// backendPublish posts to /api/publish on base and returns the status and
// the answer.
func backendPublish(t *testing.T, base, body string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, base+"/api/publish", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer backend-token")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// status returns the status of a request to base+path carrying token
// (none if empty) as a bearer header.
func status(t *testing.T, method, target, token string, form url.Values) int {
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, _ := http.NewRequest(method, target, body)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// privateWord finds the private wall's owner or message in a text.
var privateWord = regexp.MustCompile(`\b(secret|mary)\b`)

// TestClusterPrivateWalls: targeted publishes on either instance reach
// the owner's clients on both instances exactly once, in order; an
// idempotent retry on the other instance answers the same seq; nobody else
// sees a private message on any public path, in metrics or in info logs,
// and every path to the private wall refuses them.
func TestClusterPrivateWalls(t *testing.T) {
	c := startCluster(t, "-token-secret", testSecret, "-publish-token", "backend-token")
	mary, bob := mintToken(t, "mary", nil), mintToken(t, "bob", jwt.MapClaims{"groups": []string{"staff"}})
	a, b := "http://"+instanceAddrs[0], "http://"+instanceAddrs[1]
	const private = "user:mary:orders"

	stop := make(chan struct{})
	var wg sync.WaitGroup
	owner := map[string]*recorder{}
	watchers := map[string]*recorder{}
	for name, base := range map[string]string{"a": a, "b": b, "nginx": nginxBase} {
		ws, lp, es := &recorder{}, &recorder{}, &recorder{}
		owner["ws-"+name], owner["poll-"+name], owner["sse-"+name] = ws, lp, es
		// The subscribers put their wall argument in the query as is, so
		// the token rides along.
		wsSubscriber(base, private+"&token="+mary, ws, stop, &wg)
		pollSubscriber(base, private+"&token="+mary, lp, stop, &wg)
		sseSubscriber(base, private+"&token="+mary, es, &sseStats{}, stop, &wg)
		for who, tok := range map[string]string{"bob": bob, "anon": ""} {
			ws, lp, es := &recorder{}, &recorder{}, &recorder{}
			watchers["ws-"+who+"-"+name], watchers["poll-"+who+"-"+name], watchers["sse-"+who+"-"+name] = ws, lp, es
			wsSubscriber(base, "main&token="+tok, ws, stop, &wg)
			pollSubscriber(base, "main&token="+tok, lp, stop, &wg)
			sseSubscriber(base, "main&token="+tok, es, &sseStats{}, stop, &wg)
		}
	}
	defer func() { close(stop); wg.Wait() }()
	time.Sleep(300 * time.Millisecond)

	// Every path to the private wall refuses others: 403 for a token
	// that is not the owner's, 401 without one.
	for _, base := range []string{a, b, nginxBase} {
		for tok, want := range map[string]int{bob: 403, "": 401} {
			q := "?wall=" + private
			for _, r := range []struct{ method, path string }{
				{"GET", "/w/" + private}, {"GET", "/a/message/updates" + q}, {"POST", "/a/message/updates" + q},
				{"GET", "/ws" + q}, {"GET", "/sse" + q}, {"GET", "/api/walls/" + private},
			} {
				got := status(t, r.method, base+r.path, tok, nil)
				if r.method == "POST" && tok == "" && got == 403 {
					continue // refused by the XSRF check, which comes first
				}
				if got != want {
					t.Errorf("%s %s%s (token: %v): %d, want %d", r.method, base, r.path, tok != "", got, want)
				}
			}
			if got := status(t, "POST", base+"/a/message/new", tok, url.Values{"wall": {private}, "body": {"intrusion"}}); got != want && !(tok == "" && got == 403) {
				t.Errorf("form post via %s: %d, want %d", base, got, want)
			}
			d := websocket.Dialer{HandshakeTimeout: 5 * time.Second}
			u := "ws" + strings.TrimPrefix(base, "http") + "/ws?wall=" + private + "&token=" + tok
			if _, resp, err := d.Dial(u, nil); err == nil || resp == nil || resp.StatusCode != want {
				t.Errorf("WebSocket to %s via %s: %v %v, want %d", private, base, err, resp, want)
			}
		}
	}

	// The backend's targeted publishes, alternating instances, each with
	// an id, retried on the other instance.
	posted := map[uint64]string{}
	const n = 12
	for i := range n {
		on, other := a, b
		if i%2 == 1 {
			on, other = b, a
		}
		id := fmt.Sprintf("%08x-0000-4000-8000-000000000000", i+1)
		req := fmt.Sprintf(`{"users": ["mary"], "facility": "orders", "body": "secret order %d", "id": %q}`, i, id)
		code, ans := backendPublish(t, on, req)
		if code != 200 {
			t.Fatalf("publish via %s: %d %s", on, code, ans)
		}
		var got struct {
			Messages []struct {
				Wall, ID string
				Seq      uint64
			}
		}
		if err := json.Unmarshal(ans, &got); err != nil || len(got.Messages) != 1 || got.Messages[0].Wall != private || got.Messages[0].ID != id {
			t.Fatalf("publish answer %s (%v)", ans, err)
		}
		seq := got.Messages[0].Seq
		posted[seq] = id
		if code, again := backendPublish(t, other, req); code != 200 || string(again) != string(ans) {
			t.Fatalf("retry via %s: %d %s, want %s", other, code, again, ans)
		}
		// Public traffic alongside, which the watchers must see.
		if code, ans := backendPublish(t, on, fmt.Sprintf(`{"body": "public %d"}`, i)); code != 200 {
			t.Fatalf("public publish: %d %s", code, ans)
		}
	}
	// The owner posts too, authored, with the token in a header (no XSRF
	// cookie needed) and in the cookie.
	form := url.Values{"wall": {private}, "body": {"secret note from mary"}}
	req, _ := http.NewRequest("POST", b+"/a/message/new", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", "Bearer "+mary)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var m wireMsg
	json.NewDecoder(resp.Body).Decode(&m)
	resp.Body.Close()
	if resp.StatusCode != 200 || m.User != "mary" || m.Seq != n+1 {
		t.Fatalf("mary's post: %d %+v", resp.StatusCode, m)
	}
	posted[m.Seq] = m.ID
	// And redis-cli reaches the private wall by its name.
	v, err := c.redis.Client().FCall(t.Context(), "wall_publish", []string{"wall:{" + private + "}"}, "secret from redis-cli").Slice()
	if err != nil {
		t.Fatalf("FCALL wall_publish: %v", err)
	}
	posted[uint64(v[0].(int64))] = v[2].(string)

	waitSeen(t, owner, n+2, 20*time.Second)
	for name, rec := range owner {
		checkSeen(t, name, rec, posted, n+2)
	}
	time.Sleep(300 * time.Millisecond) // let anything that would leak arrive
	for name, rec := range watchers {
		msgs, errs := rec.snapshot()
		if len(errs) > 0 {
			t.Errorf("%s: %v", name, errs)
		}
		for _, m := range msgs {
			if strings.Contains(m.Body, "secret") {
				t.Errorf("%s saw a private message: %+v", name, m)
			}
		}
		if len(msgs) == 0 {
			t.Errorf("%s saw no public message either: is it connected?", name)
		}
	}
	// Public pages, metrics and info logs name neither the owner nor the
	// messages.
	for _, base := range []string{a, b} {
		for _, path := range []string{"/", "/w/main", "/metrics"} {
			resp, err := http.Get(base + path)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			// Whole words: the metrics' HELP text says "summary".
			if s := string(body); privateWord.MatchString(s) {
				t.Errorf("%s%s shows private data", base, path)
			}
		}
	}
	for i, l := range c.logs {
		if s := l.String(); strings.Contains(s, "secret") || strings.Contains(s, "mary") {
			t.Errorf("instance %d logged private data at info level:\n%s", i, s)
		}
	}
}
