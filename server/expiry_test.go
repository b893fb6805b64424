package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"wall/server/internal/identity"
)

// A token with exp is judged at each request, and a connection admitted
// with it ends when a request with it would be refused: streams are closed
// with token_expired, held polls are answered, and nothing stored from
// then on reaches them. The verifier's leeway is shortened so that tokens
// expire within seconds.

// expiryLeeway is the verifier's leeway in these tests.
const expiryLeeway = 500 * time.Millisecond

// expiryConfig is idConfig with the short leeway.
func expiryConfig() Config {
	cfg := idConfig(identity.AnonymousPost)
	cfg.Identity.Leeway = expiryLeeway
	return cfg
}

// expiringToken is mary's token whose exp is the first whole second at
// least d from now (exp has a precision of a second), and the instant
// from which the server refuses it: exp plus the leeway.
func expiringToken(t *testing.T, d time.Duration) (tok string, refused time.Time) {
	t.Helper()
	exp := time.Now().Add(d).Truncate(time.Second).Add(time.Second)
	tok = signed(t, jwt.SigningMethodHS256, idSecret, jwt.MapClaims{"sub": "mary", "exp": exp.Unix()})
	return tok, exp.Add(expiryLeeway)
}

// foreverToken is mary's token without exp.
func foreverToken(t *testing.T) string {
	return signed(t, jwt.SigningMethodHS256, idSecret, jwt.MapClaims{"sub": "mary"})
}

// streamRec is one thing a stream delivered and when: a message's body
// ("msg <body>"), another frame's or event's text, a close frame
// ("close <code> <reason>"), or "EOF".
type streamRec struct {
	at   time.Time
	text string
}

// bodyOf returns "msg <body>" for a message's JSON, or "".
func bodyOf(b []byte) string {
	var m struct {
		ID   string  `json:"id"`
		Body *string `json:"body"`
	}
	if json.Unmarshal(b, &m) != nil || m.ID == "" || m.Body == nil {
		return ""
	}
	return "msg " + *m.Body
}

// openWSWire opens a WebSocket on target over the wire.
func openWSWire(t *testing.T, e *testEnv, target string) *wireConn {
	t.Helper()
	wc := e.dial()
	wc.send(wsHandshake(target))
	if r := wc.response(5 * time.Second); r.Status != http.StatusSwitchingProtocols {
		t.Fatalf("handshake %s: %v", target, r)
	}
	return wc
}

// recordWS reads wc's frames until the connection ends, until, or stop
// says so, and delivers what came. A close frame is answered, as a client
// does.
func recordWS(wc *wireConn, until time.Time, stop func(streamRec) bool) <-chan []streamRec {
	ch := make(chan []streamRec, 1)
	wc.c.SetReadDeadline(until)
	go func() {
		var recs []streamRec
		defer func() { ch <- recs }()
		for {
			f, err := readWireFrame(wc.br)
			r := streamRec{at: time.Now()}
			switch {
			case errors.Is(err, io.EOF):
				r.text = "EOF"
			case err != nil:
				return
			case f.Opcode == wireOpText:
				if r.text = bodyOf(f.Payload); r.text == "" {
					r.text = string(f.Payload)
				}
			case f.Opcode == wireOpClose:
				code, reason := f.CloseCode()
				r.text = fmt.Sprintf("close %d %s", code, reason)
				wc.c.Write(clientFrame(true, wireOpClose, string(f.Payload[:2])))
			default:
				continue // a ping
			}
			recs = append(recs, r)
			if r.text == "EOF" || (stop != nil && stop(r)) {
				return
			}
		}
	}()
	return ch
}

// recordSSE is recordWS for an event stream: events, comments and all.
func recordSSE(s *sseStream, until time.Time, stop func(streamRec) bool) <-chan []streamRec {
	ch := make(chan []streamRec, 1)
	go func() {
		var recs []streamRec
		defer func() { ch <- recs }()
		for {
			b, err := s.read(time.Until(until))
			r := streamRec{at: time.Now(), text: b.Raw}
			switch {
			case errors.Is(err, io.EOF) && b.Raw == "":
				r.text = "EOF"
			case err != nil:
				return
			case b.isPing():
				continue
			case b.Data != nil && b.ID != nil:
				r.text = bodyOf([]byte(*b.Data))
			}
			recs = append(recs, r)
			if r.text == "EOF" || (stop != nil && stop(r)) {
				return
			}
		}
	}()
	return ch
}

// Frames and events a stream whose token expired ends with.
const (
	wsExpiredError  = `{"error":"token expired","status":401}`
	wsExpiredClose  = "close 1008 token expired"
	sseExpiredEvent = ": token expired\ndata: {\"error\": \"token expired\", \"status\": 401}\n\n"
)

// WebSocket (/ws and the legacy /chatsocket) and event streams admitted
// with a token that has exp end when the token is refused (exp plus the
// leeway), not before and within 2 s: an error frame and close 1008, or
// the error as a final event, then the connection closes; a message
// stored from that instant never reaches them, and the ends are counted
// as token_expired. Streams of a token without exp, on the same private
// wall, are untouched and get that message.
func TestExpiryStreams(t *testing.T) {
	t.Parallel()
	e := newMainEnv(t, expiryConfig(), 100)
	const name = "user:mary"
	tok, refused := expiringToken(t, time.Second)
	args := url.Values{"wall": {name}, "token": {tok}}.Encode()
	forever := url.Values{"wall": {name}, "token": {foreverToken(t)}}.Encode()

	ws := openWSWire(t, e, "/ws?"+args)
	chat := openWSWire(t, e, "/chatsocket?"+args)
	sse := e.openSSE("/sse?" + args)
	keptWS := openWSWire(t, e, "/ws?"+forever)
	keptSSE := e.openSSE("/sse?" + forever)
	e.subscribed(name, 5)
	if time.Now().After(refused.Add(-300 * time.Millisecond)) {
		t.Skip("the machine is too slow for this token's lifetime")
	}

	until := refused.Add(3 * time.Second)
	late := func(r streamRec) bool { return r.text == "msg late" }
	recs := map[string]<-chan []streamRec{
		"ws":      recordWS(ws, until, nil),
		"chat":    recordWS(chat, until, nil),
		"sse":     recordSSE(sse, until, nil),
		"kept ws": recordWS(keptWS, until, late),
		"keptSSE": recordSSE(keptSSE, until, late),
	}
	e.publish(name, "before")
	time.Sleep(time.Until(refused))
	e.publish(name, "late") // stored at the instant or after: for the kept streams only

	want := map[string][]string{
		"ws":      {"msg before", wsExpiredError, wsExpiredClose, "EOF"},
		"chat":    {"msg before", wsExpiredError, wsExpiredClose, "EOF"},
		"sse":     {"msg before", sseExpiredEvent, "EOF"},
		"kept ws": {"msg before", "msg late"},
		"keptSSE": {"msg before", "msg late"},
	}
	for what, ch := range recs {
		got := <-ch
		var texts []string
		for _, r := range got {
			texts = append(texts, r.text)
		}
		if fmt.Sprintf("%q", texts) != fmt.Sprintf("%q", want[what]) {
			t.Errorf("%s got %q, want %q", what, texts, want[what])
			continue
		}
		if len(got) > 2 && got[1].text != "msg late" { // an expired stream: its end's time
			end := got[1].at
			if end.Before(refused) || end.After(refused.Add(2*time.Second)) {
				t.Errorf("%s ended %v after the token is refused, want within [0, 2s]", what, end.Sub(refused))
			}
		}
	}
	e.subscribed(name, 2)
	waitFor(t, "the ends counted as token_expired", 5*time.Second, func() bool {
		fams := scrape(t, e.srv)
		w, _ := metricValue(fams, "wall_stream_disconnects_total", "transport", "websocket", "reason", "token_expired")
		s, _ := metricValue(fams, "wall_stream_disconnects_total", "transport", "sse", "reason", "token_expired")
		return w == 2 && s == 1
	})
}

// A poll held for a token with exp, GET or POST, on every path (net/http,
// a connection the engine takes over, one it already holds) is answered
// when the token is refused, not before and within 2 s, with the
// timeout's answer (no "messages") even though a message was stored at
// that instant; the next poll on the connection with that token gets 401.
func TestExpiryPolls(t *testing.T) {
	t.Parallel()
	forEachPathMethod(t, func(t *testing.T, p pollPath, method string) {
		e := p.env(t, expiryConfig(), 100)
		const name = "user:mary"
		tok, refused := expiringToken(t, time.Second)
		cursor := strconv.FormatUint(e.publish(name, "first").Seq, 10)
		args := url.Values{"wall": {name}, "cursor": {cursor}, "token": {tok}}
		wc := e.pollConn(p)
		call := e.startPollOn(p, wc, pollReq(method, args))
		call.parked()
		time.Sleep(time.Until(refused))
		e.publish(name, "late")
		r := call.answer()
		answered := time.Now()
		if answered.Before(refused) || answered.After(refused.Add(2*time.Second)) {
			t.Errorf("answered %v after the token is refused, want within [0, 2s]", answered.Sub(refused))
		}
		var body map[string]any
		if r.Status != http.StatusOK || json.Unmarshal(r.Body, &body) != nil || body["messages"] != nil || r.Closes() {
			t.Fatalf("answer %v, want the timeout's 200 without messages, kept alive", r)
		}
		wc.send(pollReq(method, args))
		wantError(t, wc.response(5*time.Second), http.StatusUnauthorized, "token expired")
	})
}

// A poll the engine holds on a goroutine of its own (the client asked for
// Connection: close) is answered when its token is refused as well.
func TestExpiryPollSlowWait(t *testing.T) {
	t.Parallel()
	p := pollPath{name: "engine-first", engine: true}
	e := p.env(t, expiryConfig(), 100)
	const name = "user:mary"
	tok, refused := expiringToken(t, time.Second)
	cursor := strconv.FormatUint(e.publish(name, "first").Seq, 10)
	args := url.Values{"wall": {name}, "cursor": {cursor}, "token": {tok}}
	call := e.startPoll(p, pollReq(http.MethodGet, args, "Connection: close"))
	call.parked()
	time.Sleep(time.Until(refused))
	e.publish(name, "late")
	r := call.answer()
	if d := time.Since(refused); d < 0 || d > 2*time.Second {
		t.Errorf("answered %v after the token is refused, want within [0, 2s]", d)
	}
	var body map[string]any
	if r.Status != http.StatusOK || json.Unmarshal(r.Body, &body) != nil || body["messages"] != nil || !r.Closes() {
		t.Fatalf("answer %v, want the timeout's 200 without messages, closing", r)
	}
}

// A poll whose token expires after the poll timeout waits the poll
// timeout, as one without exp does: the token's exp only shortens a wait.
func TestExpiryPollLaterThanTimeout(t *testing.T) {
	t.Parallel()
	forEachPath(t, func(t *testing.T, p pollPath) {
		cfg := expiryConfig()
		cfg.PollTimeout = 500 * time.Millisecond
		e := p.env(t, cfg, 100)
		cursor := strconv.FormatUint(e.publish("user:mary", "first").Seq, 10)
		args := url.Values{"wall": {"user:mary"}, "cursor": {cursor}, "token": {maryToken(t)}} // exp in an hour
		wc := e.pollConn(p)
		start := time.Now()
		r := e.startPollOn(p, wc, pollReq(http.MethodGet, args)).answer()
		if d := time.Since(start); r.Status != http.StatusOK || d < 400*time.Millisecond || d > 3*time.Second {
			t.Errorf("answer %v after %v, want the timeout's after the 500ms poll timeout", r, d)
		}
		wc.send(pollReq(http.MethodGet, args))
		if r := wc.response(5 * time.Second); r.Status != http.StatusOK {
			t.Errorf("re-poll: %v, want 200", r)
		}
	})
}
