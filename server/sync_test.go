package server

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"wall/wall"
)

// syncFailBroker is the in-process broker whose Sync fails while fail is
// set, as the Redis broker's does when Redis is away.
type syncFailBroker struct {
	*wall.MemoryBroker
	fail  atomic.Bool
	calls atomic.Int64 // Sync calls
}

func (b *syncFailBroker) Sync(ctx context.Context, name string, c wall.Cursor) error {
	b.calls.Add(1)
	if b.fail.Load() {
		return wall.ErrUnavailable
	}
	return b.MemoryBroker.Sync(ctx, name, c)
}

// A cursor this instance cannot place while the broker cannot tell
// whether it exists (Redis away) is a 503 the client retries, on every
// path: a poll in net/http, a keep-alive re-poll in the engine, a
// WebSocket. Answering the cache with reset instead had every client
// coming over from an instance ahead of this one see it all again. A
// cursor it can place needs no broker.
func TestSyncUnavailable(t *testing.T) {
	var sb *syncFailBroker
	e := newEngineEnvBroker(t, Config{}, 10, func(m *wall.MemoryBroker) wall.Broker {
		sb = &syncFailBroker{MemoryBroker: m}
		return sb
	})
	var last testMsg
	for i := range 3 {
		last = e.post("s", fmt.Sprint("m", i))
	}
	rc := e.dial() // a keep-alive connection, for the engine's re-polls
	sb.fail.Store(true)

	ahead := []string{"cursor=" + fmt.Sprint(last.Seq+5), "cursor=" + uuid.NewString()}
	for _, q := range ahead {
		code, body := e.get("/a/message/updates?wall=s&" + q)
		if code != http.StatusServiceUnavailable || !strings.Contains(string(body), "unavailable") {
			t.Errorf("poll %s: %d %s, want 503", q, code, body)
		}
		e.hold(rc) // back in the engine (net/http answered the last 503)
		rc.send(getPoll("wall=s&" + q))
		if resp := rc.response(5 * time.Second); resp.Status != http.StatusServiceUnavailable {
			t.Errorf("engine re-poll %s: %v, want 503", q, resp)
		}
		_, resp, err := e.dialWS("/ws?wall=s&"+q, nil)
		if err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
			status := 0
			if resp != nil {
				status = resp.StatusCode
			}
			t.Errorf("WebSocket %s: %v (status %d), want 503", q, err, status)
		}
	}
	// What the instance holds is served as usual.
	rc.send(getPoll(fmt.Sprintf("wall=s&cursor=%d", last.Seq-1)))
	if resp := rc.response(5 * time.Second); resp.Status != http.StatusOK || len(*decodePoll(t, resp.Body).Messages) != 1 {
		t.Errorf("engine re-poll of a held cursor: %v", resp)
	}
	rc.c.Close() // it stays subscribed to s between polls
	e.held(0)
	e.mustDialWS(fmt.Sprintf("/ws?wall=s&cursor=%d", last.Seq), "s", 1)

	// Once the broker can tell, a cursor unknown to it gets the cache with
	// reset, as before.
	sb.fail.Store(false)
	code, body := e.get("/a/message/updates?wall=s&" + ahead[0])
	if p := decodePoll(t, body); code != http.StatusOK || !p.Reset || len(*p.Messages) != 3 {
		t.Errorf("poll ahead of the wall with the broker back: %d %s", code, body)
	}
}
