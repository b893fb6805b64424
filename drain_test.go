package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/websocket"
)

// closeRecord is how one WebSocket ended.
type closeRecord struct {
	at   time.Duration // since the drain began
	code int
	hint time.Duration // the close reason's reconnect_ms
	err  error
}

// readClose reads c until it ends and says how, relative to start (which
// it reads once the connection ends).
func readClose(c *websocket.Conn, start func() time.Time) closeRecord {
	for {
		c.SetReadDeadline(time.Now().Add(30 * time.Second))
		if _, _, err := c.ReadMessage(); err != nil {
			r := closeRecord{at: time.Since(start()), err: err}
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				r.code = ce.Code
				var h struct {
					ReconnectMS int64 `json:"reconnect_ms"`
				}
				if json.Unmarshal([]byte(ce.Text), &h) == nil {
					r.hint = time.Duration(h.ReconnectMS) * time.Millisecond
				}
			}
			return r
		}
	}
}

// spread describes when closes came: quantiles and a histogram by tenth
// of the span.
func spread(at []time.Duration, span time.Duration) (q func(float64) time.Duration, tenths []int) {
	sort.Slice(at, func(i, j int) bool { return at[i] < at[j] })
	q = func(p float64) time.Duration { return at[int(p*float64(len(at)-1))].Round(time.Millisecond) }
	tenths = make([]int, 11)
	for _, d := range at {
		tenths[min(int(d*10/span), 10)]++
	}
	return q, tenths
}

// SIGTERM with a few thousand WebSockets open: every one gets close 1012
// with a reconnect hint, the closes are spread evenly over -drain-time, a
// waiting poll is answered at once, and run returns within
// -shutdown-timeout.
func TestRunDrainsThousandsOfWebSockets(t *testing.T) {
	const n, drain, shutdown = 3000, 3 * time.Second, 8 * time.Second
	base, stop := startRun(t, "-drain-time", drain.String(), "-shutdown-timeout", shutdown.String())
	u := "ws" + strings.TrimPrefix(base, "http") + "/ws?wall=drain"
	conns := make([]*websocket.Conn, n)
	var dialing sync.WaitGroup
	sem := make(chan struct{}, 64)
	errs := make(chan error, n)
	for i := range conns {
		dialing.Add(1)
		sem <- struct{}{}
		go func() {
			defer dialing.Done()
			defer func() { <-sem }()
			c, _, err := websocket.DefaultDialer.Dial(u, nil)
			if err != nil {
				errs <- err
				return
			}
			conns[i] = c
		}()
	}
	dialing.Wait()
	close(errs)
	if err := <-errs; err != nil {
		t.Fatalf("dialling %d WebSockets: %v", n, err)
	}
	var began time.Time
	var beganMu sync.Mutex
	startAt := func() time.Time { beganMu.Lock(); defer beganMu.Unlock(); return began }
	results := make(chan closeRecord, n)
	for _, c := range conns {
		go func() { defer c.Close(); results <- readClose(c, startAt) }()
	}
	polled := make(chan time.Time, 1)
	go func() {
		resp, err := http.Get(base + "/a/message/updates?wall=drain&cursor=0")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		polled <- time.Now()
	}()
	time.Sleep(300 * time.Millisecond) // the poll waits

	beganMu.Lock()
	began = time.Now()
	beganMu.Unlock()
	stopped := make(chan error, 1)
	go func() { stopped <- stop() }()
	if at := <-polled; at.Sub(began) > time.Second {
		t.Errorf("waiting poll answered %v into the drain", at.Sub(began))
	}
	var at []time.Duration
	for range n {
		r := <-results
		if r.code != websocket.CloseServiceRestart || r.hint < 500*time.Millisecond || r.hint >= 3*time.Second {
			t.Fatalf("a WebSocket ended with %v (hint %v), want 1012 with a hint in [0.5 s, 3 s)", r.err, r.hint)
		}
		at = append(at, r.at)
	}
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatalf("run returned %v", err)
		}
	case <-time.After(shutdown + 2*time.Second):
		t.Fatal("run did not return within -shutdown-timeout")
	}
	exited := time.Since(began)
	q, tenths := spread(at, drain)
	t.Logf("%d WebSockets, -drain-time %v: closes at min %v, p10 %v, p25 %v, p50 %v, p75 %v, p90 %v, max %v; per tenth of the drain %v; run returned after %v",
		n, drain, q(0), q(.1), q(.25), q(.5), q(.75), q(.9), q(1), tenths, exited.Round(time.Millisecond))
	for i, k := range tenths[:10] {
		if k < n/10/2 || k > n/10*2 {
			t.Errorf("tenth %d of the drain closed %d WebSockets, want about %d: %v", i, k, n/10, tenths)
		}
	}
	if exited > shutdown {
		t.Errorf("run returned after %v, past -shutdown-timeout %v", exited, shutdown)
	}
}

// wsFollower follows a wall through base over WebSocket like the browser
// client: on close 1012 it waits the reconnect_ms the server asked for,
// then reconnects with its cursor; other ends reconnect after a short
// pause. It records messages in rec and reconnection times in reconnects.
// connected is done once its first connection is answered: it connects
// without a cursor, so it gets the messages posted after that.
func wsFollower(base, wallName string, rec *recorder, stop <-chan struct{}, wg, connected *sync.WaitGroup, reconnects chan<- time.Time) {
	wg.Add(1)
	connected.Add(1)
	go func() {
		defer wg.Done()
		first := sync.OnceFunc(connected.Done)
		defer first() // stopped before it ever connected
		wait := time.Duration(0)
		for {
			select {
			case <-stop:
				return
			case <-time.After(wait):
			}
			u := "ws" + strings.TrimPrefix(base, "http") + "/ws?wall=" + wallName
			if last := rec.last(); last > 0 {
				u += fmt.Sprintf("&cursor=%d", last)
			}
			conn, _, err := websocket.DefaultDialer.Dial(u, nil)
			if err != nil {
				wait = 100 * time.Millisecond
				continue
			}
			first()
			if wait > 0 {
				select {
				case reconnects <- time.Now():
				default:
				}
			}
			done := make(chan struct{})
			go func() {
				select {
				case <-stop:
					conn.Close()
				case <-done:
				}
			}()
			wait = 100 * time.Millisecond
			for {
				_, data, err := conn.ReadMessage()
				if err != nil {
					var ce *websocket.CloseError
					var h struct {
						ReconnectMS int64 `json:"reconnect_ms"`
					}
					if errors.As(err, &ce) && ce.Code == websocket.CloseServiceRestart && json.Unmarshal([]byte(ce.Text), &h) == nil {
						wait = time.Duration(h.ReconnectMS) * time.Millisecond
					}
					break
				}
				var m struct {
					wireMsg
					Missed uint64 `json:"missed"`
					Reset  bool   `json:"reset"`
				}
				if json.Unmarshal(data, &m) != nil || m.Missed > 0 || m.Reset {
					rec.fail("frame %s", data)
					continue
				}
				if m.ID != "" {
					rec.add(m.wireMsg)
				}
			}
			close(done)
			conn.Close()
		}
	}()
}

// A rolling restart behind nginx, one instance after the other, each
// draining on SIGTERM while posts keep coming: every follower (WebSocket,
// honouring the reconnect hint; long-poll) sees every message once, in
// order, and the WebSockets' reconnections are spread out.
func TestClusterRollingRestartLosesNothing(t *testing.T) {
	const followers, drain = 200, 2 * time.Second
	c := startCluster(t, "-drain-time", drain.String())
	stop := make(chan struct{})
	var wg sync.WaitGroup
	recs := map[string]*recorder{}
	reconnects := make(chan time.Time, 4*followers)
	var connected sync.WaitGroup
	for i := range followers {
		rec := &recorder{}
		recs[fmt.Sprintf("ws%d", i)] = rec
		wsFollower(nginxBase, "roll", rec, stop, &wg, &connected, reconnects)
	}
	for i := range 4 {
		rec := &recorder{}
		recs[fmt.Sprintf("poll%d", i)] = rec
		pollSubscriber(nginxBase, "roll", rec, stop, &wg)
	}
	// Every WebSocket answered before the first post: without a cursor a
	// follower gets what is posted after its answer, and nothing before.
	allIn := make(chan struct{})
	go func() { connected.Wait(); close(allIn) }()
	select {
	case <-allIn:
	case <-time.After(30 * time.Second):
		t.Fatal("followers not connected in 30 s")
	}
	time.Sleep(500 * time.Millisecond) // the pollers parked
	poster := newLegacyClient(t, nginxBase, "roll")
	want := map[uint64]string{}
	var mu sync.Mutex
	posting, stopPosting := make(chan struct{}), make(chan struct{})
	postErrs := 0
	go func() {
		defer close(posting)
		for {
			select {
			case <-stopPosting:
				return
			default:
			}
			// As the client library posts: with an id, retried until
			// stored (a retry of a stored id stores nothing new).
			id := uuid.NewString()
			for {
				m, status, err := poster.postID("roll", id)
				if err == nil && status == http.StatusOK {
					mu.Lock()
					want[m.Seq] = m.ID
					mu.Unlock()
					break
				}
				mu.Lock()
				postErrs++ // nginx's keep-alive connection closed under it, or no instance reachable
				mu.Unlock()
				time.Sleep(50 * time.Millisecond)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	var restarts []time.Time
	for i := range instanceAddrs {
		time.Sleep(time.Second)
		restarts = append(restarts, time.Now())
		c.stopInstance(i)
		c.startInstance(i)
	}
	time.Sleep(time.Second)
	close(stopPosting)
	<-posting
	mu.Lock()
	n := uint64(0)
	for s := range want {
		n = max(n, s)
	}
	mu.Unlock()
	waitSeen(t, recs, n, 20*time.Second) // the last reconnections wait out their hints
	close(stop)
	wg.Wait()
	for name, rec := range recs {
		checkSeen(t, name, rec, want, n)
	}
	close(reconnects)
	var at []time.Duration
	for r := range reconnects {
		// Attribute each reconnection to the restart before it.
		start := restarts[0]
		for _, s := range restarts {
			if r.After(s) {
				start = s
			}
		}
		at = append(at, r.Sub(start))
	}
	if len(at) == 0 {
		t.Fatal("no WebSocket reconnected")
	}
	q, tenths := spread(at, drain+3*time.Second)
	if len(want) != int(n) {
		t.Errorf("%d posts stored, seqs up to %d: a retried post was stored twice", len(want), n)
	}
	t.Logf("%d messages; %d post attempts failed mid-restart (retried); %d WebSocket reconnections after the restarts began: p10 %v, p50 %v, p90 %v, max %v; per half second %v",
		n, postErrs, len(at), q(.1), q(.5), q(.9), q(1), tenths)
	if q(.9)-q(.1) < drain/2 {
		t.Errorf("reconnections bunched: p10 %v, p90 %v over a %v drain", q(.1), q(.9), drain)
	}
}

// /readyz on an instance follows Redis: 200 once settled, 503 while Redis
// is stopped, 503 again until the instance has caught up after Redis came
// back, then 200; /healthz stays 200. The instance's /metrics has the
// Redis call latencies.
func TestClusterReadyzFollowsRedis(t *testing.T) {
	c := startCluster(t)
	base := "http://" + instanceAddrs[0]
	get := func(path string) (int, string) {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	waitReady := func(what string) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for {
			code, body := get("/readyz")
			if code == http.StatusOK {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: /readyz still %d %q", what, code, body)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitReady("after start")
	if r := postAs(t, clientAt("127.0.0.1"), "hi"); r.StatusCode != http.StatusOK {
		t.Fatalf("post: %d", r.StatusCode)
	}
	c.redis.Stop()
	if code, body := get("/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "redis unreachable") {
		t.Fatalf("/readyz with Redis stopped: %d %q", code, body)
	}
	if code, _ := get("/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz with Redis stopped: %d", code)
	}
	c.redis.Start()
	if code, body := get("/readyz"); code != http.StatusServiceUnavailable {
		t.Fatalf("/readyz just after Redis came back: %d %q, want 503 until caught up", code, body)
	}
	waitReady("after Redis came back")
	_, metrics := get("/metrics")
	if !strings.Contains(metrics, `wall_redis_command_duration_seconds_count{op="fcall wall_publish"}`) ||
		!strings.Contains(metrics, `wall_redis_command_duration_seconds_count{op="ping"}`) {
		t.Fatalf("no Redis latencies in /metrics:\n%s", metrics)
	}
}
