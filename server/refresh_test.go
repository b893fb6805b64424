package server

import (
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// A WebSocket client refreshes its connection's token with a frame
// {"token": "<jwt>"}: the connection's expiry moves to the new token's
// (or goes, for a token without exp); a refused refresh leaves the old
// one. expiryConfig's short leeway makes tokens expire within seconds.

// claimsToken signs claims with an exp the first whole second at least d
// from now, and returns the token, its exp and the instant the server
// refuses it (exp plus the leeway).
func claimsToken(t *testing.T, c jwt.MapClaims, d time.Duration) (tok string, exp, refused time.Time) {
	t.Helper()
	exp = time.Now().Add(d).Truncate(time.Second).Add(time.Second)
	c["exp"] = exp.Unix()
	return signed(t, jwt.SigningMethodHS256, idSecret, c), exp, exp.Add(expiryLeeway)
}

// sendToken sends a token frame on wc.
func sendToken(wc *wireConn, tok string) {
	wc.c.Write(clientFrame(true, wireOpText, `{"token": "`+tok+`"}`))
}

// refreshedFrame is the answer to an accepted refresh.
func refreshedFrame(exp time.Time) string {
	var n int64
	if !exp.IsZero() {
		n = exp.Unix()
	}
	return fmt.Sprintf(`{"refreshed": true, "exp": %d}`, n)
}

// texts is what recs carried.
func texts(recs []streamRec) []string {
	var out []string
	for _, r := range recs {
		out = append(out, r.text)
	}
	return out
}

// A WebSocket on mary's private wall whose 2 s token is refreshed with a
// 4 s one of hers, on /ws and /chatsocket, is answered {"refreshed": true,
// "exp": ...}, keeps getting messages past the first token's refusal, and
// ends at the second's with the token-expired error and close 1008.
func TestRefreshWSMovesExpiry(t *testing.T) {
	t.Parallel()
	for _, path := range []string{"/ws", "/chatsocket"} {
		t.Run(strings.TrimPrefix(path, "/"), func(t *testing.T) {
			t.Parallel()
			e := newMainEnv(t, expiryConfig(), 100)
			const name = "user:mary"
			first, _, refused1 := claimsToken(t, jwt.MapClaims{"sub": "mary"}, 2*time.Second)
			wc := openWSWire(t, e, path+"?"+url.Values{"wall": {name}, "token": {first}}.Encode())
			e.subscribed(name, 1)
			second, exp2, refused2 := claimsToken(t, jwt.MapClaims{"sub": "mary"}, 4*time.Second)
			rec := recordWS(wc, refused2.Add(3*time.Second), nil)
			e.publish(name, "before")
			time.Sleep(time.Second)
			if time.Now().After(refused1.Add(-500 * time.Millisecond)) {
				t.Skip("the machine is too slow for this token's lifetime")
			}
			sendToken(wc, second)
			time.Sleep(time.Until(refused1) + 300*time.Millisecond)
			e.publish(name, "after") // past the first token's refusal
			got := <-rec
			want := []string{"msg before", refreshedFrame(exp2), "msg after", wsExpiredError, wsExpiredClose, "EOF"}
			if fmt.Sprintf("%q", texts(got)) != fmt.Sprintf("%q", want) {
				t.Fatalf("got %q, want %q", texts(got), want)
			}
			if end := got[3].at; end.Before(refused2) || end.After(refused2.Add(2*time.Second)) {
				t.Errorf("ended %v after the second token is refused, want within [0, 2s]", end.Sub(refused2))
			}
		})
	}
}

// A refresh with a token without exp removes the connection's expiry: a
// message stored after the first token's refusal still arrives, and the
// connection stays open.
func TestRefreshWSRemovesExpiry(t *testing.T) {
	t.Parallel()
	e := newMainEnv(t, expiryConfig(), 100)
	const name = "user:mary"
	first, _, refused := claimsToken(t, jwt.MapClaims{"sub": "mary"}, time.Second)
	wc := openWSWire(t, e, "/ws?"+url.Values{"wall": {name}, "token": {first}}.Encode())
	e.subscribed(name, 1)
	rec := recordWS(wc, refused.Add(5*time.Second), func(r streamRec) bool { return r.text == "msg late" })
	sendToken(wc, foreverToken(t))
	time.Sleep(time.Until(refused) + 500*time.Millisecond)
	e.publish(name, "late")
	want := []string{refreshedFrame(time.Time{}), "msg late"}
	if got := texts(<-rec); fmt.Sprintf("%q", got) != fmt.Sprintf("%q", want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	e.subscribed(name, 1) // still open, still subscribed
}

// Every refused refresh is answered with an error frame on a connection
// that stays open (a post on it still goes through) and still ends at its
// old expiry: another user's token 403, a token that does not reach the
// wall 403 (a private wall its walls claim no longer names), an expired,
// malformed or badly signed token 401, a frame with a token and a body
// 400. The refusals are counted by reason.
func TestRefreshWSRefused(t *testing.T) {
	t.Parallel()
	e := newMainEnv(t, expiryConfig(), 100)
	mary := jwt.MapClaims{"sub": "mary", "walls": []string{"staff"}}
	tok, _, refused := claimsToken(t, mary, 2*time.Second)
	good := signed(t, jwt.SigningMethodHS256, idSecret, jwt.MapClaims{"sub": "mary", "walls": []string{"staff"}})
	expired := signed(t, jwt.SigningMethodHS256, idSecret, jwt.MapClaims{"sub": "mary", "walls": []string{"staff"}, "exp": time.Now().Add(-time.Minute).Unix()})
	cases := []struct{ frame, want string }{
		{`{"token": "` + signed(t, jwt.SigningMethodHS256, idSecret, jwt.MapClaims{"sub": "bob", "walls": []string{"staff"}}) + `"}`,
			`{"error":"this token is for another user than the connection's","status":403}`},
		{`{"token": "` + signed(t, jwt.SigningMethodHS256, idSecret, jwt.MapClaims{"sub": "mary"}) + `"}`,
			`{"error":"this wall is private: this token may not use it","status":403}`},
		{`{"token": "` + expired + `"}`, `{"error":"token expired","status":401}`},
		{`{"token": "not-a-token"}`, `{"error":"malformed token","status":401}`},
		{`{"token": "` + good[:len(good)-4] + `AAAA"}`, `{"error":"bad token signature","status":401}`},
		{`{"token": "` + good + `", "body": "both"}`, `{"error":"frame must be {\"body\": \"text\"} or {\"token\": \"\u003cjwt\u003e\"}","status":400}`},
		{`{"token": 5}`, `{"error":"frame must be {\"body\": \"text\"} or {\"token\": \"\u003cjwt\u003e\"}","status":400}`},
	}
	paths := []string{"/ws", "/chatsocket"}
	recs := make([]<-chan []streamRec, len(paths))
	for i, path := range paths {
		wc := openWSWire(t, e, path+"?"+url.Values{"wall": {"staff"}, "token": {tok}}.Encode())
		recs[i] = recordWS(wc, refused.Add(3*time.Second), nil)
		for _, c := range cases {
			wc.c.Write(clientFrame(true, wireOpText, c.frame))
		}
		wc.c.Write(clientFrame(true, wireOpText, `{"body": "still posting `+path+`"}`))
	}
	for i, path := range paths {
		// The error frames in order; the messages of both sockets' posts
		// come in between (the other socket's may come before this one
		// opened, or not).
		var want []string
		for _, c := range cases {
			want = append(want, c.want)
		}
		want = append(want, wsExpiredError, wsExpiredClose, "EOF")
		got := <-recs[i]
		var frames []string
		posted := false
		for _, r := range got {
			switch {
			case r.text == "msg still posting "+path:
				posted = true
			case !strings.HasPrefix(r.text, "msg "):
				frames = append(frames, r.text)
			}
		}
		if fmt.Sprintf("%q", frames) != fmt.Sprintf("%q", want) || !posted {
			t.Fatalf("%s got %q,\nwant its post and %q", path, texts(got), want)
		}
		if end := got[len(got)-3].at; end.Before(refused) || end.After(refused.Add(2*time.Second)) {
			t.Errorf("%s ended %v after its token is refused, want within [0, 2s]", path, end.Sub(refused))
		}
	}
	fams := scrape(t, e.srv)
	for reason, n := range map[string]float64{"forbidden": 4, "unauthorized": 6, "bad_request": 4} {
		if v, _ := metricValue(fams, "wall_refusals_total", "reason", reason); v != n {
			t.Errorf("wall_refusals_total{reason=%q} = %v, want %v", reason, v, n)
		}
	}
}
