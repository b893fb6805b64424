package server

import (
	"runtime"
	"strings"
	"testing"
	"time"
)

// Polls that wait in the reactor, and connections between polls, hold no
// goroutine: fifty of them add none.
func TestEngineWaitsWithoutGoroutines(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the reactor is Linux's; elsewhere a waiting poll keeps a goroutine")
	}
	e := newEngineEnv(t, Config{})
	m := e.post("", "x")
	e.client.CloseIdleConnections()
	waitFor(t, "idle server", 5*time.Second, func() bool { return e.inflight.Load() == 0 })
	conns := make([]*wireConn, 50)
	for i := range conns {
		conns[i] = e.dial()
		e.hold(conns[i]) // answered: idle in the reactor
	}
	base := goroutineBaseline()
	for _, rc := range conns {
		rc.send(getPoll("cursor=" + m.ID))
	}
	e.waitingFast(len(conns))
	if n := runtime.NumGoroutine(); n > base+5 {
		t.Errorf("%d goroutines with %d polls waiting, %d before", n, len(conns), base)
	}
	m2 := e.post("", "y")
	for _, rc := range conns {
		if resp := rc.response(5 * time.Second); resp.Status != 200 || (*decodePoll(t, resp.Body).Messages)[0] != m2 {
			t.Fatalf("answer %d %s", resp.Status, resp.Body)
		}
	}
}

// A connection idle between polls is closed after IdleTimeout, whether
// that is shorter than PollTimeout or longer, and whether a worker or the
// reactor wrote the last answer; one that polls again in time is not.
func TestEngineIdleTimeout(t *testing.T) {
	for _, cfg := range []Config{
		{IdleTimeout: 300 * time.Millisecond},
		{IdleTimeout: 300 * time.Millisecond, PollTimeout: 100 * time.Millisecond},
	} {
		t.Run(cfg.PollTimeout.String(), func(t *testing.T) {
			e := newEngineEnv(t, cfg)
			m := e.post("", "x")

			worker := e.dial()
			e.hold(worker)
			start := time.Now()
			worker.closed(5 * time.Second)
			if d := time.Since(start); d < cfg.IdleTimeout*9/10 {
				t.Errorf("closed after %v idle", d)
			}

			inline := e.dial()
			e.hold(inline)
			inline.send(getPoll("cursor=0")) // answered at once
			if resp := inline.response(5 * time.Second); resp.Status != 200 {
				t.Fatalf("re-poll: %d", resp.Status)
			}
			start = time.Now()
			inline.closed(5 * time.Second)
			if d := time.Since(start); d < cfg.IdleTimeout*9/10 {
				t.Errorf("closed after %v idle", d)
			}

			// Waiting for messages is not idle.
			busy := e.dial()
			e.hold(busy)
			time.Sleep(cfg.IdleTimeout / 2)
			busy.send(getPoll("cursor=" + m.ID))
			e.waitingFast(1)
			time.Sleep(cfg.IdleTimeout)
			if e.srv.engine.Stats().Conns != 1 {
				t.Fatal("waiting poll cut")
			}
			e.post("", "y")
			if resp := busy.response(5 * time.Second); resp.Status != 200 || string(resp.Body) == "" {
				t.Fatalf("answer %d %s", resp.Status, resp.Body)
			}
			e.held(1)
		})
	}
}

// What the reactor does not serve on its own goroutine is served as
// before: a request in several pieces, a poll of another wall whose
// cursor must be synced, an answer the socket does not take whole, a
// request for net/http.
func TestEngineReactorHandsOver(t *testing.T) {
	e, rc, m := newSlowReaderEnv(t)
	req := getPoll("cursor=" + m.ID)
	rc.send(req[:20])
	time.Sleep(30 * time.Millisecond)
	rc.send(req[20:])
	e.waitingFast(1)
	m2 := e.post("", "y")
	if resp := rc.response(5 * time.Second); resp.Status != 200 || (*decodePoll(t, resp.Body).Messages)[0] != m2 {
		t.Fatalf("split request: %d %s", resp.Status, resp.Body)
	}

	other := e.post("other", "z") // a wall this connection has not polled
	rc.send(getPoll("wall=other&cursor=0"))
	if resp := rc.response(5 * time.Second); resp.Status != 200 || (*decodePoll(t, resp.Body).Messages)[0] != other {
		t.Fatalf("other wall: %d %s", resp.Status, resp.Body)
	}

	big := strings.Repeat("&", 1<<20) // 7 MiB of JSON with its html
	e.publish("", big)
	rc.send(getPoll("cursor=" + m2.ID)) // answered at once, and in parts
	time.Sleep(50 * time.Millisecond)
	resp := rc.response(5 * time.Second)
	if p := decodePoll(t, resp.Body); resp.Status != 200 || len(*p.Messages) != 1 || (*p.Messages)[0].Body != big {
		t.Fatalf("big answer: %d, %d bytes", resp.Status, len(resp.Body))
	}

	rc.send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp := rc.response(5 * time.Second); resp.Status != 200 || string(resp.Body) != "ok\n" {
		t.Fatalf("healthz: %d %s", resp.Status, resp.Body)
	}
}
