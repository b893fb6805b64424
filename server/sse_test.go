package server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"wall/server/internal/outbound"
	"wall/wall"
)

// sseStream is an event stream read off the wire: its response head was
// checked by openSSE, and next reads it block by block.
type sseStream struct {
	*wireConn
	head *wireResponse
}

// sseBlock is what a stream sends up to a blank line: an event, or only
// comments and a retry: field.
type sseBlock struct {
	ID       *string // nil: no id: field
	Event    string
	Data     *string // nil: no data: field
	Retry    string
	Comments []string
	Raw      string
}

func (b sseBlock) String() string { return fmt.Sprintf("%q", b.Raw) }

// isPing reports whether b is only the keepalive comment.
func (b sseBlock) isPing() bool {
	return b.ID == nil && b.Data == nil && b.Event == "" && b.Retry == "" &&
		len(b.Comments) == 1 && b.Comments[0] == "ping"
}

// sseRequest is GET target with headers, as a client sends it.
func sseRequest(target string, headers ...string) string {
	return rawRequest(http.MethodGet, target, "", headers...)
}

// openSSE opens an event stream on a new connection; see startSSE.
func (e *testEnv) openSSE(target string, headers ...string) *sseStream {
	e.t.Helper()
	return openSSE(e.t, e.addr, target, headers...)
}

// openSSE opens an event stream to addr for test t (a subtest's).
func openSSE(t *testing.T, addr, target string, headers ...string) *sseStream {
	t.Helper()
	wc := dialWire(t, addr)
	wc.send(sseRequest(target, headers...))
	return startSSE(t, wc)
}

// startSSE reads a stream's response head from wc, which must announce
// an event stream framed by the connection's close, and its first block,
// which must be the retry: hint alone.
func startSSE(t *testing.T, wc *wireConn) *sseStream {
	t.Helper()
	// Read as the answer to HEAD: the head only, the stream is left.
	r := wc.responseTo(http.MethodHead, 5*time.Second)
	h := r.Header
	if r.Proto != "HTTP/1.1" || r.Status != http.StatusOK || h.Get("Content-Type") != "text/event-stream; charset=utf-8" ||
		h.Get("Cache-Control") != "no-cache" || h.Get("X-Accel-Buffering") != "no" || !r.Closes() ||
		h.Get("Date") == "" || len(h.Values("Content-Length")) != 0 || len(h.Values("Transfer-Encoding")) != 0 ||
		len(h.Values("Content-Encoding")) != 0 {
		t.Fatalf("stream head:\n%s", r.Head)
	}
	s := &sseStream{wireConn: wc, head: r}
	if b := s.next(5 * time.Second); b.Retry != strconv.FormatInt(sseRetry.Milliseconds(), 10) || b.Raw != "retry: 2000\n\n" {
		t.Fatalf("first block %v, want the retry: hint", b)
	}
	return s
}

// next reads one block within d. It is strict: lines end with a bare
// LF, every field is "name: value" with a name the server uses, and
// fields are not repeated.
func (s *sseStream) next(d time.Duration) sseBlock {
	s.t.Helper()
	b, err := s.read(d)
	if err != nil {
		s.t.Fatalf("reading an event: %v (read %v)", err, b)
	}
	return b
}

// read is next, returning the error.
func (s *sseStream) read(d time.Duration) (b sseBlock, err error) {
	s.c.SetReadDeadline(time.Now().Add(d))
	var raw strings.Builder
	defer func() { b.Raw = raw.String() }()
	for {
		line, err := s.br.ReadString('\n')
		raw.WriteString(line)
		if err != nil {
			return b, err
		}
		line = line[:len(line)-1]
		if strings.Contains(line, "\r") {
			return b, fmt.Errorf("CR in line %q", line)
		}
		if line == "" {
			if raw.Len() == 1 {
				return b, errors.New("empty block")
			}
			return b, nil
		}
		if c, ok := strings.CutPrefix(line, ":"); ok {
			b.Comments = append(b.Comments, strings.TrimPrefix(c, " "))
			continue
		}
		name, value, ok := strings.Cut(line, ": ")
		if !ok {
			return b, fmt.Errorf("line %q is not a field", line)
		}
		switch {
		case name == "id" && b.ID == nil:
			b.ID = &value
		case name == "data" && b.Data == nil:
			b.Data = &value
		case name == "event" && b.Event == "":
			b.Event = value
		case name == "retry" && b.Retry == "":
			b.Retry = value
		default:
			return b, fmt.Errorf("line %q: unknown or repeated field", line)
		}
	}
}

// event reads the next block that is not a keepalive comment.
func (s *sseStream) event(d time.Duration) sseBlock {
	s.t.Helper()
	for {
		if b := s.next(d); !b.isPing() {
			return b
		}
	}
}

// message reads the next event, which must be a message: its data the
// message JSON, its id the message's cursor.
func (s *sseStream) message() testMsg {
	s.t.Helper()
	b := s.event(5 * time.Second)
	if b.Data == nil || b.ID == nil || b.Event != "" {
		s.t.Fatalf("block %v is not a message event", b)
	}
	m := decodeMsg(s.t, []byte(*b.Data))
	if m.ID == "" || m.Seq == 0 || *b.ID != m.Cursor || m.Cursor != cursorOf(m) {
		s.t.Fatalf("block %v: not a message with its cursor as id", b)
	}
	return m
}

// notice reads the next event, which must be a notice (no id) whose data
// is want.
func (s *sseStream) notice(want string) {
	s.t.Helper()
	if b := s.event(5 * time.Second); b.ID != nil || b.Event != "" || b.Data == nil || *b.Data != want {
		s.t.Fatalf("block %v, want a notice %s", b, want)
	}
}

// sseCount returns the number of event streams the server holds.
func (e *testEnv) sseCount() int { return e.srv.streams.Count(sseTransport) }

// The stream on every path a request can come by (a plain handler, main's
// server, a connection the long-poll engine held and handed back):
// catch-up from the cursor, each event's data the very bytes of the
// message's WebSocket frame payload and its id the cursor, then live
// messages; a hang-up leaves nothing.
func TestSSEStream(t *testing.T) {
	forEachPath(t, func(t *testing.T, p pollPath) {
		e := p.env(t, Config{}, 10)
		var sent []*wall.Message
		for i := range 3 {
			sent = append(sent, e.publish("s", "seed "+strconv.Itoa(i)))
		}
		wc := e.pollConn(p)
		wc.send(sseRequest("/sse?wall=s&cursor=1", "Accept-Encoding: gzip", "Accept: text/event-stream"))
		s := startSSE(t, wc)
		e.subscribed("s", 1)
		waitFor(t, "the stream to be counted", 5*time.Second, func() bool { return e.sseCount() == 1 })
		sent = append(sent, e.publish("s", "live"))
		for _, m := range sent[1:] {
			want := "id: " + m.Cursor().String() + "\ndata: " + string(m.JSON) + "\n\n"
			if b := s.event(5 * time.Second); b.Raw != want || !bytes.Equal(m.Frame[len(m.Frame)-len(m.JSON):], m.JSON) {
				t.Fatalf("event %v, want %q", b, want)
			}
		}
		wc.c.Close()
		e.subscribed("s", 0)
		waitFor(t, "the stream to leave the registry", 5*time.Second, func() bool { return e.sseCount() == 0 })
	})
}

// Without a cursor a stream has live messages only, and every message
// posted after its head arrived.
func TestSSESubscribedAtHead(t *testing.T) {
	e := newTestEnv(t, Config{}, 10)
	e.publish("hs", "before")
	for i := range 20 {
		s := e.openSSE("/sse?wall=hs")
		m := e.publish("hs", "after the head")
		if got := s.message(); got.ID != m.ID {
			t.Fatalf("stream %d: got %+v, want the message posted after the head", i, got)
		}
		s.c.Close()
	}
}

// Posts keep coming while streams open with a cursor: each sees every seq
// after its cursor exactly once, in order.
func TestSSECatchUpDuringPosts(t *testing.T) {
	// Fewer posts than sendQueueMax: no stream can be cut off as slow.
	const total = sendQueueMax - 16
	e := newTestEnv(t, Config{}, 1000)
	for range 20 {
		e.publish("", "seed")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	posterDone := make(chan error, 1)
	go func() {
		for i := range total {
			if _, _, err := e.broker.Publish(ctx, wall.Post{Wall: "main", ID: uuid.NewString(), Body: "p"}); err != nil {
				posterDone <- err
				return
			}
			if i%4 == 0 {
				time.Sleep(100 * time.Microsecond) // let streams open in between
			}
		}
		posterDone <- nil
	}()
	final := uint64(20 + total)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for k := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w := e.hub.Lookup("main")
			cursor := w.Last() - uint64(k)
			c, err := net.Dial("tcp", e.addr)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			// Half resume with Last-Event-ID, half with the argument.
			req := sseRequest("/sse?cursor=" + strconv.FormatUint(cursor, 10))
			if k%2 == 1 {
				req = sseRequest("/sse", "Last-Event-ID: "+strconv.FormatUint(cursor, 10)+"."+w.Epoch())
			}
			io.WriteString(c, req)
			body, err := readStreamHead(c)
			if err != nil {
				errs <- err
				return
			}
			for want := cursor + 1; want <= final; want++ {
				c.SetReadDeadline(time.Now().Add(10 * time.Second))
				var ev struct {
					id, data string
				}
				for ev.data == "" {
					line, err := body.ReadString('\n')
					if err != nil {
						errs <- fmt.Errorf("cursor %d: waiting for seq %d: %v", cursor, want, err)
						return
					}
					switch {
					case strings.HasPrefix(line, "id: "):
						ev.id = line[4 : len(line)-1]
					case strings.HasPrefix(line, "data: "):
						ev.data = line[6 : len(line)-1]
					}
				}
				var m testMsg
				if err := json.Unmarshal([]byte(ev.data), &m); err != nil || m.Seq != want || ev.id != m.Cursor {
					errs <- fmt.Errorf("cursor %d: event id %q data %.60s, want seq %d", cursor, ev.id, ev.data, want)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if err := <-posterDone; err != nil {
		t.Fatal(err)
	}
}

// readStreamHead reads a stream's head off c (for goroutines that must
// not call t.Fatal) and returns the reader positioned after it.
func readStreamHead(c net.Conn) (*bufio.Reader, error) {
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(c)
	r, err := readWireResponseTo(br, http.MethodHead)
	if err != nil {
		return nil, err
	}
	if r.Status != http.StatusOK {
		return nil, fmt.Errorf("stream answered %d", r.Status)
	}
	return br, nil
}

// A cursor older than the cache gets a {"missed": N} event first, an
// unknown one a {"reset": true} event (the WebSocket notices' bytes),
// then the cache; neither notice has an id.
func TestSSEGapAndReset(t *testing.T) {
	e := newTestEnv(t, Config{}, 5)
	first := e.publish("", "gone")
	for range 10 {
		e.publish("", "x") // seqs 2..11; the cache holds 7..11
	}
	for _, tc := range []struct{ cursor, notice string }{
		{"2", `{"missed":4}`},
		{"2." + first.Epoch, `{"missed":4}`},
		{first.ID, `{"reset":true}`},
		{"99", `{"reset":true}`},
		{"8.0123456789abcdef", `{"reset":true}`}, // another epoch
		{"a b\x01\"", `{"reset":true}`},          // any cursor parses; unknown is a reset
	} {
		t.Run(tc.cursor, func(t *testing.T) {
			s := openSSE(t, e.addr, "/sse?cursor="+url.QueryEscape(tc.cursor))
			s.notice(tc.notice)
			for want := uint64(7); want <= 11; want++ {
				if m := s.message(); m.Seq != want {
					t.Fatalf("seq %d, want %d", m.Seq, want)
				}
			}
			s.c.Close()
			e.subscribed("main", 0)
		})
	}

	// The wall's history is replaced under a live stream (Redis lost it):
	// a reset event, then the new cache, whose ids are of the new epoch.
	s := e.openSSE("/sse?cursor=11")
	e.subscribed("main", 1)
	epoch := wall.NewEpoch()
	var msgs []*wall.Message
	for seq := uint64(1); seq <= 3; seq++ {
		msgs = append(msgs, wall.NewMessage(uuid.NewString(), seq, epoch, "new "+strconv.FormatUint(seq, 10)))
	}
	e.hub.Wall("main").Replace(msgs, epoch)
	s.notice(`{"reset": true}`)
	for _, want := range msgs {
		if m := s.message(); m.ID != want.ID || m.Cursor != want.Cursor().String() {
			t.Fatalf("after the reset: %+v, want seq %d of epoch %s", m, want.Seq, epoch)
		}
	}
}

// On reconnect a browser sends the id of the last event it got as
// Last-Event-ID, to the URL it first opened: the header wins over the
// cursor argument; an empty header is no header.
func TestSSELastEventIDWins(t *testing.T) {
	e := newTestEnv(t, Config{}, 10)
	var sent []*wall.Message
	for range 5 {
		sent = append(sent, e.publish("", "m"))
	}
	for _, tc := range []struct {
		target, header string
		first          uint64
	}{
		{"/sse?cursor=1", "Last-Event-ID: " + sent[2].Cursor().String(), 4},
		{"/sse?cursor=" + url.QueryEscape(sent[3].Cursor().String()), "Last-Event-ID: 1", 2},
		{"/sse", "Last-Event-ID: 2", 3},
		{"/sse?cursor=3", "Last-Event-ID:", 4},
	} {
		s := e.openSSE(tc.target, tc.header)
		if m := s.message(); m.Seq != tc.first {
			t.Errorf("%s with %q: first seq %d, want %d", tc.target, tc.header, m.Seq, tc.first)
		}
		s.c.Close()
	}
}

// The same cursor string works on every transport: a WebSocket frame's
// resumes an event stream, an event's id resumes a long-poll, whose
// cursor resumes a stream, whose id resumes a WebSocket.
func TestSSECursorAcrossTransports(t *testing.T) {
	e := newTestEnv(t, Config{}, 10)
	ws := e.mustDialWS("/ws", "main", 1)
	e.publish("", "one")
	m := readWSMsg(t, ws)
	ws.Close()
	e.subscribed("main", 0)

	e.publish("", "two")
	s := e.openSSE("/sse", "Last-Event-ID: "+m.Cursor)
	if got := s.message(); got.Seq != 2 {
		t.Fatalf("stream from a frame's cursor: seq %d, want 2", got.Seq)
	}
	e.publish("", "three")
	three := s.message()
	s.c.Close()

	e.publish("", "four")
	p := e.pollNow(url.Values{"cursor": {three.Cursor}})
	if !equalSeqs(seqs(*p.Messages), []uint64{4}) || p.Reset || p.Missed != 0 {
		t.Fatalf("poll from an event's id: %+v", p)
	}
	e.publish("", "five")
	s = e.openSSE("/sse?cursor=" + url.QueryEscape(*p.Cursor))
	five := s.message()
	if five.Seq != 5 {
		t.Fatalf("stream from a poll's cursor: seq %d, want 5", five.Seq)
	}
	s.c.Close()

	e.publish("", "six")
	ws = e.mustDialWS("/ws?cursor="+url.QueryEscape(five.Cursor), "main", 1)
	if got := readWSMsg(t, ws); got.Seq != 6 {
		t.Fatalf("WebSocket from an event's id: seq %d, want 6", got.Seq)
	}
}

// At every keepalive tick a stream gets a comment, or with heartbeat=1 a
// heartbeat event; messages go on between them.
func TestSSEHeartbeats(t *testing.T) {
	const period = 160 * time.Millisecond
	e := newTestEnv(t, Config{PingInterval: period}, 10)
	for _, tc := range []struct {
		target string
		beat   func(sseBlock) bool
	}{
		{"/sse?wall=hb", sseBlock.isPing},
		{"/sse?wall=hb&heartbeat=1", func(b sseBlock) bool {
			return b.Raw == "event: heartbeat\ndata: {}\n\n"
		}},
	} {
		t.Run(tc.target, func(t *testing.T) {
			s := openSSE(t, e.addr, tc.target)
			var beats []time.Time
			var sent *wall.Message
			seen := 0
			for len(beats) < 4 {
				b := s.next(2 * period)
				switch {
				case tc.beat(b):
					beats = append(beats, time.Now())
				case sent != nil && b.ID != nil && *b.ID == sent.Cursor().String():
					seen++
				default:
					t.Fatalf("block %v, want a keepalive or the message", b)
				}
				if len(beats) == 2 && sent == nil {
					sent = e.publish("hb", "between beats")
				}
			}
			if seen != 1 {
				t.Errorf("the message came %d times between keepalives", seen)
			}
			// A stream's tick comes once per period.
			if d := beats[3].Sub(beats[0]); d < 2*period || d > 6*period {
				t.Errorf("3 periods of keepalives took %v (period %v)", d, period)
			}
			s.c.Close()
		})
	}
}

// Refusals are ordinary JSON answers, before any stream byte: a bad wall
// (400), a method other than GET (405), and after shutdown (503).
func TestSSERefusals(t *testing.T) {
	e := newTestEnv(t, Config{}, 10)
	for _, tc := range []struct {
		req    string
		method string
		code   int
	}{
		{sseRequest("/sse?wall=" + url.QueryEscape("no spaces")), http.MethodGet, http.StatusBadRequest},
		{sseRequest("/sse?wall=" + strings.Repeat("w", 65)), http.MethodGet, http.StatusBadRequest},
		{rawRequest(http.MethodPost, "/sse", "wall=main"), http.MethodPost, http.StatusMethodNotAllowed},
		{rawRequest(http.MethodHead, "/sse", ""), http.MethodHead, http.StatusMethodNotAllowed},
	} {
		wc := e.dial()
		wc.send(tc.req)
		r := wc.responseTo(tc.method, 5*time.Second)
		if tc.method == http.MethodHead {
			if r.Status != tc.code || r.Header.Get("Content-Type") == "text/event-stream; charset=utf-8" {
				t.Errorf("HEAD: %s", r.Head)
			}
		} else {
			wantError(t, r, tc.code, "")
			if ct := r.Header.Get("Content-Type"); ct != "application/json; charset=UTF-8" {
				t.Errorf("%d answer with Content-Type %q", r.Status, ct)
			}
		}
		if allow := r.Header.Get("Allow"); tc.code == http.StatusMethodNotAllowed && (!strings.Contains(allow, "GET") || strings.Contains(allow, tc.method)) {
			t.Errorf("405 with Allow %q", r.Header.Get("Allow"))
		}
	}
	if names := e.hub.Names(); len(names) != 0 || e.sseCount() != 0 {
		t.Errorf("refused streams left walls %v, %d streams", names, e.sseCount())
	}
	e.hub.Close()
	waitDone(t, "srv.Wait", 5*time.Second, e.srv.Wait)
	wc := e.dial()
	wc.send(sseRequest("/sse"))
	wantError(t, wc.response(5*time.Second), http.StatusServiceUnavailable, "server shutting down")
}

// A stream whose client stops reading is cut off when its queue
// overflows, with the slow comment if the socket takes it, while another
// keeps receiving everything; it resumes from its last event's id.
func TestSSESlowConsumer(t *testing.T) {
	const maxPosts = 3000 // ~25 MB: far more than any socket buffers
	e := newTestEnv(t, Config{}, 10)
	// The stalled client never reads, with a small receive buffer, or
	// the kernel would absorb every post.
	c, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.(*net.TCPConn).SetReadBuffer(128 << 10); err != nil {
		t.Fatal(err)
	}
	stalled := &wireConn{t: t, c: c, br: bufio.NewReader(c)}
	t.Cleanup(func() { c.Close() })
	stalled.send(sseRequest("/sse"))
	e.subscribed("main", 1)
	fast := e.openSSE("/sse")
	e.subscribed("main", 2)

	var fastGot atomic.Uint64
	fastErr := make(chan error, 1)
	go func() {
		for want := uint64(1); ; want++ {
			b, err := fast.read(20 * time.Second)
			for err == nil && b.isPing() {
				b, err = fast.read(20 * time.Second)
			}
			var m testMsg
			if err != nil || b.Data == nil || json.Unmarshal([]byte(*b.Data), &m) != nil || m.Seq != want {
				fastErr <- fmt.Errorf("block %.80s %v, want seq %d", b.Raw, err, want)
				return
			}
			fastGot.Store(want)
		}
	}()
	fastAt := func(seq uint64) {
		waitFor(t, fmt.Sprintf("the fast client to read seq %d", seq), 10*time.Second, func() bool {
			select {
			case err := <-fastErr:
				t.Fatalf("fast client: %v", err)
			default:
			}
			return fastGot.Load() >= seq
		})
	}

	big := strings.Repeat(".", 8<<10)
	start := time.Now()
	posted := uint64(0)
	for e.hub.Lookup("main").Subscribers() == 2 {
		if posted == maxPosts {
			t.Fatalf("stalled stream still subscribed after %d posts of 8 KiB", posted)
		}
		if posted%64 == 0 && posted >= 64 {
			fastAt(posted - 64)
		}
		e.publish("", big)
		posted++
	}
	t.Logf("stalled stream cut off after %d posts, %v", posted, time.Since(start))
	if d := time.Since(start); d >= writeWait {
		t.Errorf("stalled stream cut off only after %v (writeWait %v)", d, writeWait)
	}
	for range 10 {
		e.post("", "after the cut")
		posted++
	}
	fastAt(posted)
	waitFor(t, "the cut stream to leave the registry", 5*time.Second, func() bool { return e.sseCount() == 1 })

	// The stalled client reads consecutive events, then the end (the
	// slow comment, if the socket took it).
	s := startSSE(t, stalled)
	want := uint64(1)
	var last string
	for {
		b, err := s.read(5 * time.Second)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("stalled stream not closed after %d messages", want-1)
			}
			t.Logf("stalled stream read %d messages, then: %v", want-1, err)
			break
		}
		if len(b.Comments) > 0 {
			if b.Raw != ": "+closeSlowReason+"\n\n" {
				t.Fatalf("block %v, want the slow comment", b)
			}
			s.closed(5 * time.Second)
			t.Logf("stalled stream read %d messages, then the slow comment", want-1)
			break
		}
		var m testMsg
		if b.Data == nil || json.Unmarshal([]byte(*b.Data), &m) != nil || m.Seq != want {
			t.Fatalf("stalled stream: block %.80s, want seq %d", b.Raw, want)
		}
		last = *b.ID
		want++
	}
	if want > posted {
		t.Fatalf("stalled stream received all %d messages: not cut off", posted)
	}

	// It resumes from its last id: what it missed left the 10-message
	// cache, so it is told how many, then gets the cache.
	back := e.openSSE("/sse?cursor=1", "Last-Event-ID: "+last)
	back.notice(fmt.Sprintf(`{"missed":%d}`, posted-10-(want-1)))
	for seq := posted - 9; seq <= posted; seq++ {
		if m := back.message(); m.Seq != seq {
			t.Fatalf("resumed: seq %d, want %d", m.Seq, seq)
		}
	}
}

// At shutdown every stream is sent why and a retry: delay spread over a
// few seconds, then closed; Wait returns.
func TestSSEShutdown(t *testing.T) {
	e := newTestEnv(t, Config{}, 10)
	var streams []*sseStream
	for i := range 6 {
		streams = append(streams, e.openSSE(fmt.Sprintf("/sse?wall=w%d&heartbeat=%d", i%2, i%3)))
	}
	waitFor(t, "6 streams", 5*time.Second, func() bool { return e.sseCount() == 6 })
	e.hub.Close()
	for _, s := range streams {
		b := s.event(5 * time.Second)
		retry, err := strconv.Atoi(b.Retry)
		if len(b.Comments) != 1 || b.Comments[0] != "server shutting down" || b.Data != nil || err != nil ||
			retry < int(sseShutdownRetryMin.Milliseconds()) || retry >= int(sseShutdownRetryMax.Milliseconds()) {
			t.Errorf("at shutdown: %v", b)
		}
		s.closed(5 * time.Second)
	}
	waitDone(t, "srv.Wait", 5*time.Second, e.srv.Wait)
	if n := e.sseCount(); n != 0 {
		t.Errorf("%d streams left", n)
	}
}

// Clients that hang up, before their head or mid-stream, leave no
// goroutine, no subscriber, no registry entry and no wall behind.
func TestSSEHangUps(t *testing.T) {
	e := newTestEnv(t, Config{}, 10)
	e.post("warm", "up")
	s := e.openSSE("/sse?wall=warm")
	s.c.Close()
	e.subscribed("warm", 0)
	e.client.CloseIdleConnections()
	waitFor(t, "idle server", 5*time.Second, func() bool { return e.inflight.Load() == 0 && e.sseCount() == 0 })
	base := goroutineBaseline()

	for range 20 {
		nc, err := net.Dial("tcp", e.addr)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(nc, sseRequest("/sse?wall=hang"))
		nc.Close()
	}
	var streams []*sseStream
	for i := range 20 {
		streams = append(streams, e.openSSE("/sse?wall=hang2&cursor=0"))
		e.subscribed("hang2", i+1)
	}
	waitFor(t, "20 streams counted", 5*time.Second, func() bool { return e.sseCount() == 20 })
	for _, s := range streams {
		s.c.Close()
	}
	waitFor(t, "handlers to return and streams to leave", 5*time.Second, func() bool {
		return e.inflight.Load() == 0 && e.sseCount() == 0
	})
	waitGoroutines(t, base)
	for _, name := range []string{"hang", "hang2"} {
		if e.hub.Lookup(name) != nil {
			t.Errorf("wall %s kept after its clients left", name)
		}
	}
	if n := e.srv.sse.ended.Load(outbound.PeerClosed); n < 21 {
		t.Errorf("%d streams counted as ended by their peer, want at least 21", n)
	}
}

// A stream's client has nothing to say after its request: what it sends
// is read and dropped (a pipelined request is never answered), and one
// that keeps sending is cut off.
func TestSSETalkativeClient(t *testing.T) {
	e := newTestEnv(t, Config{}, 10)
	wc := e.dial()
	wc.send(sseRequest("/sse") + sseRequest("/healthz"))
	s := startSSE(t, wc)
	e.subscribed("main", 1)
	m := e.publish("", "still streaming")
	if got := s.message(); got.ID != m.ID {
		t.Fatalf("got %+v", got)
	}
	junk := strings.Repeat("x", 1024)
	for range sseMaxInbound / len(junk) * 2 {
		if _, err := io.WriteString(wc.c, junk); err != nil {
			break // cut off already
		}
	}
	e.subscribed("main", 0)
	waitFor(t, "the stream to leave the registry", 5*time.Second, func() bool { return e.sseCount() == 0 })
	if n := e.srv.sse.ended.Load(outbound.ProtocolError); n != 1 {
		t.Errorf("%d streams ended for a protocol error, want 1", n)
	}
}

// An event's id is the cursor's bytes inside the message's own JSON, and
// encoding an event allocates nothing.
func TestSSEEncoder(t *testing.T) {
	epoch := wall.NewEpoch()
	for _, seq := range []uint64{1, 9, 10, 12345, 1<<64 - 1} {
		m := wall.NewMessage(uuid.NewString(), seq, epoch, `say "cursor": "x"`)
		id := eventID(m)
		if string(id) != m.Cursor().String() {
			t.Errorf("seq %d: id %q, want %q", seq, id, m.Cursor().String())
		}
		if i := bytes.Index(m.JSON, id); i < 0 || &m.JSON[i] != &id[0] {
			t.Errorf("seq %d: id not shared with the JSON", seq)
		}
	}
	// Without an epoch the cursor is the plain seq.
	if id := eventID(wall.NewMessage(uuid.NewString(), 7, "", "b")); string(id) != "7" {
		t.Errorf("epoch-less id %q", id)
	}
	m := wall.NewMessage(uuid.NewString(), 42, epoch, "body\nwith a newline")
	enc := sseEncoder{ping: ssePing}
	bufs := make(net.Buffers, 0, 8)
	if n := testing.AllocsPerRun(100, func() { bufs = enc.AppendMessage(bufs[:0], m) }); n != 0 {
		t.Errorf("AppendMessage allocates %v times", n)
	}
	var got bytes.Buffer
	bufs.WriteTo(&got)
	if want := "id: 42." + epoch + "\ndata: " + string(m.JSON) + "\n\n"; got.String() != want || bytes.Count(m.JSON, []byte("\n")) != 0 {
		t.Errorf("event %q, want %q", got.String(), want)
	}
}
