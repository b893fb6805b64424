package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/websocket"

	"wall/wall/redistest"
)

// sseStats counts what one event-stream subscriber went through.
type sseStats struct {
	streams   atomic.Int64 // streams opened
	resumes   atomic.Int64 // streams opened with a Last-Event-ID
	shutdowns atomic.Int64 // streams ended by their instance's shutdown
}

// sseSubscriber follows a wall over GET /sse through base as a browser's
// EventSource does: when a stream ends it reconnects to the same URL with
// the id of the last event it got as Last-Event-ID, after the retry:
// delay (capped at 300 ms to keep the test short), until stop is closed.
// Gap and reset events are recorded as failures: nothing may be lost.
func sseSubscriber(base, wallName string, rec *recorder, st *sseStats, stop <-chan struct{}, wg *sync.WaitGroup) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go func() {
			select {
			case <-stop:
				cancel()
			case <-ctx.Done():
			}
		}()
		lastID, retry := "", 50*time.Millisecond
		for ctx.Err() == nil {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/sse?wall="+wallName, nil)
			if lastID != "" {
				req.Header.Set("Last-Event-ID", lastID)
			}
			resp, err := http.DefaultTransport.RoundTrip(req)
			if err == nil && resp.StatusCode != http.StatusOK {
				resp.Body.Close()
				err = fmt.Errorf("status %d", resp.StatusCode)
			}
			if err != nil {
				select { // instance restarting: retry
				case <-ctx.Done():
				case <-time.After(50 * time.Millisecond):
				}
				continue
			}
			st.streams.Add(1)
			if lastID != "" {
				st.resumes.Add(1)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream; charset=utf-8" {
				rec.fail("stream Content-Type %q", ct)
			}
			lastID, retry = readSSE(resp.Body, rec, st, lastID, retry)
			resp.Body.Close()
			select {
			case <-ctx.Done():
			case <-time.After(min(retry, 300*time.Millisecond)):
			}
		}
	}()
}

// readSSE reads events until the stream ends and returns the last event
// id and retry: delay.
func readSSE(body io.Reader, rec *recorder, st *sseStats, lastID string, retry time.Duration) (string, time.Duration) {
	br := bufio.NewReader(body)
	var id, data string
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return lastID, retry
		}
		line = strings.TrimSuffix(line, "\n")
		switch {
		case line == "":
			if data != "" {
				handleSSEData(rec, id, data)
				if id != "" {
					lastID = id
				}
			}
			id, data = "", ""
		case line == ": server shutting down":
			st.shutdowns.Add(1)
		case strings.HasPrefix(line, "id: "):
			id = line[len("id: "):]
		case strings.HasPrefix(line, "data: "):
			data = line[len("data: "):]
		case strings.HasPrefix(line, "retry: "):
			if ms, err := strconv.Atoi(line[len("retry: "):]); err == nil {
				retry = time.Duration(ms) * time.Millisecond
			}
		}
	}
}

// handleSSEData records one event: a message, whose id must be its
// cursor, or a notice, which counts as a failure here.
func handleSSEData(rec *recorder, id, data string) {
	var m struct {
		wireMsg
		Cursor string `json:"cursor"`
		Missed uint64 `json:"missed"`
		Reset  bool   `json:"reset"`
	}
	switch err := json.Unmarshal([]byte(data), &m); {
	case err != nil:
		rec.fail("bad event data %q", data)
	case m.Missed > 0 || m.Reset:
		rec.fail("event %s", data)
	case m.ID == "" || id != m.Cursor:
		rec.fail("event id %q data %s", id, data)
	default:
		rec.add(m.wireMsg)
	}
}

// sseFollowers starts the event streams of the cluster tests on wallName:
// nginx-0…3 through nginx, a and b on each instance directly, each open
// before the next starts (so nginx's round robin spreads them). stop ends
// them and waits.
func sseFollowers(t *testing.T, wallName string) (recs map[string]*recorder, stats map[string]*sseStats, stop func()) {
	t.Helper()
	done := make(chan struct{})
	var wg sync.WaitGroup
	recs, stats = map[string]*recorder{}, map[string]*sseStats{}
	add := func(name, base string) {
		recs[name], stats[name] = &recorder{}, &sseStats{}
		sseSubscriber(base, wallName, recs[name], stats[name], done, &wg)
		waitFor(t, func() bool { return stats[name].streams.Load() == 1 }, 10*time.Second)
	}
	for i := range 4 {
		add(fmt.Sprintf("nginx-%d", i), nginxBase)
	}
	add("a", "http://"+instanceAddrs[0])
	add("b", "http://"+instanceAddrs[1])
	return recs, stats, func() { close(done); wg.Wait() }
}

// Event streams on both instances and through the bundled nginx: an
// instance is stopped and restarted while messages are posted; the
// streams it held resume by Last-Event-ID (through nginx, on the other
// instance), and every stream sees every message once, in order.
func TestClusterSSEResumesAcrossAStoppedInstance(t *testing.T) {
	c := startCluster(t)
	const wallName = "sse"
	recs, stats, stopStreams := sseFollowers(t, wallName)
	defer stopStreams()

	poster := newLegacyClient(t, nginxBase, wallName)
	posted := map[uint64]string{}
	var last uint64
	post := func(k int, phase string) {
		t.Helper()
		for i := range k {
			m, status, err := poster.post(fmt.Sprintf("%s %d", phase, i))
			if err != nil || status != http.StatusOK {
				t.Fatalf("%s: post answered %d %v", phase, status, err)
			}
			if m.Seq != last+1 {
				t.Errorf("%s: post got seq %d after %d", phase, m.Seq, last)
			}
			posted[m.Seq], last = m.ID, m.Seq
		}
	}
	// Streamed as posted, not buffered by nginx: the first event arrives
	// while its stream stays open.
	post(1, "first")
	waitSeen(t, recs, last, 2*time.Second)
	post(29, "before")

	c.stopInstance(0)
	post(20, "instance-down")
	c.startInstance(0)
	post(20, "after-restart")

	waitSeen(t, recs, last, 30*time.Second)
	for name, rec := range recs {
		checkSeen(t, name, rec, posted, last)
	}
	moved := int64(0)
	for i := range 4 {
		st := stats[fmt.Sprintf("nginx-%d", i)]
		if st.shutdowns.Load() > 0 {
			moved++
			if st.resumes.Load() == 0 {
				t.Errorf("nginx-%d: stream ended at shutdown, never resumed", i)
			}
		}
	}
	if moved == 0 {
		t.Error("no stream through nginx was on the stopped instance")
	}
	if st := stats["a"]; st.shutdowns.Load() != 1 || st.resumes.Load() < 1 {
		t.Errorf("stream on the stopped instance: %d shutdowns, %d resumes", st.shutdowns.Load(), st.resumes.Load())
	}
	if st := stats["b"]; st.streams.Load() != 1 {
		t.Errorf("stream on the other instance reopened %d times", st.streams.Load()-1)
	}
	t.Logf("streams through nginx moved by the stop: %d of 4", moved)
}

// Event streams on two instance processes with Redis, through the bundled
// nginx and directly: one process is killed (SIGKILL: no shutdown event,
// the streams just break) while messages are posted, then started again
// with an empty memory. Every stream resumes by Last-Event-ID — through
// nginx on the other instance, directly on the new process, which places
// the id from Redis — and sees every message once, in order, with no gap
// or reset.
func TestClusterSSEResumesAcrossSIGKILL(t *testing.T) {
	nginxBin := lookNginx(t)
	rdb := redistest.Start(t)
	args := func(i int) []string {
		return []string{"-addr", instanceAddrs[i], "-redis", rdb.URL(), "-poll-timeout", "5s", "-shutdown-timeout", "5s"}
	}
	var procs [2]*serverProcess
	for i := range procs {
		procs[i] = startProcess(t, args(i)...)
	}
	startNginx(t, nginxBin)

	const wallName = "sse-kill"
	recs, stats, stopStreams := sseFollowers(t, wallName)
	defer stopStreams()

	poster := newLegacyClient(t, nginxBase, wallName)
	posted := map[uint64]string{}
	var last uint64
	post := func(k int, phase string) {
		t.Helper()
		for i := range k {
			// With an id, retried until stored: a post may meet the
			// killed instance (nginx then tries the other).
			id := uuid.NewString()
			for try := 0; ; try++ {
				m, status, err := poster.postID(fmt.Sprintf("%s %d", phase, i), id)
				if err == nil && status == http.StatusOK {
					if m.Seq != last+1 {
						t.Errorf("%s: post got seq %d after %d", phase, m.Seq, last)
					}
					posted[m.Seq], last = m.ID, m.Seq
					break
				}
				if try == 50 {
					t.Fatalf("%s: post answered %d %v", phase, status, err)
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
	}
	post(30, "before")
	waitSeen(t, recs, last, 10*time.Second)

	signalProcessAndWait(t, procs[0], syscall.SIGKILL, 5*time.Second)
	post(20, "instance-killed")
	procs[0] = startProcess(t, args(0)...)
	post(20, "after-restart")

	waitSeen(t, recs, last, 30*time.Second)
	for name, rec := range recs {
		checkSeen(t, name, rec, posted, last)
	}
	moved := 0
	for name, st := range stats {
		if st.shutdowns.Load() != 0 {
			t.Errorf("%s: a shutdown event from a killed instance", name)
		}
		if strings.HasPrefix(name, "nginx-") && st.streams.Load() > 1 {
			moved++
			if st.resumes.Load() == 0 {
				t.Errorf("%s: stream broken by the kill, never resumed", name)
			}
		}
	}
	if moved == 0 {
		t.Error("no stream through nginx was on the killed instance")
	}
	if st := stats["a"]; st.streams.Load() < 2 || st.resumes.Load() < 1 {
		t.Errorf("stream on the killed instance: %d streams, %d resumes", st.streams.Load(), st.resumes.Load())
	}
	if st := stats["b"]; st.streams.Load() != 1 {
		t.Errorf("stream on the other instance reopened %d times", st.streams.Load()-1)
	}
	t.Logf("streams through nginx moved by the kill: %d of 4", moved)
}

// The same cursor string on every transport and every instance: a
// WebSocket frame's cursor resumes an event stream, an event's id a
// long-poll, whose cursor resumes a stream, whose id a WebSocket; each
// step on the other instance, then each through nginx.
func TestClusterSSECursorAcrossTransports(t *testing.T) {
	startCluster(t)
	a, b := "http://"+instanceAddrs[0], "http://"+instanceAddrs[1]
	poster := newLegacyClient(t, nginxBase, "xt")
	post := func() {
		t.Helper()
		if _, status, err := poster.post("m"); err != nil || status != http.StatusOK {
			t.Fatalf("post: %d %v", status, err)
		}
	}
	post()
	for _, bases := range [][2]string{{a, b}, {nginxBase, nginxBase}} {
		x, y := bases[0], bases[1]
		seq, cursor := pollFirst(t, x, "")
		post()
		seq1, c1 := wsFirst(t, y, cursor)
		post()
		seq2, c2 := sseFirst(t, x, c1)
		post()
		seq3, c3 := pollFirst(t, y, c2)
		post()
		seq4, c4 := sseFirst(t, x, c3)
		post()
		seq5, _ := wsFirst(t, y, c4)
		if got := []uint64{seq1, seq2, seq3, seq4, seq5}; got[0] != seq+1 || got[1] != seq+2 || got[2] != seq+3 || got[3] != seq+4 || got[4] != seq+5 {
			t.Errorf("%s/%s: after seq %d, seqs %v; want the next one each time", x, y, seq, got)
		}
	}
}

// wsFirst opens a WebSocket on the xt wall from cursor and returns the
// first message's seq and cursor.
func wsFirst(t *testing.T, base, cursor string) (uint64, string) {
	t.Helper()
	conn, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(base, "http")+"/ws?wall=xt&cursor="+url.QueryEscape(cursor), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, data, err := conn.ReadMessage()
	if err != nil {
		t.Fatal(err)
	}
	return firstOf(t, "frame", data)
}

// sseFirst opens an event stream on the xt wall with Last-Event-ID id
// and returns its first message's seq and its event id, which must be
// the message's cursor.
func sseFirst(t *testing.T, base, id string) (uint64, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, base+"/sse?wall=xt", nil)
	req.Header.Set("Last-Event-ID", id)
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			resp.Body.Close()
		}
	}()
	br := bufio.NewReader(resp.Body)
	var evID string
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("stream from %q: %v", id, err)
		}
		line = strings.TrimSuffix(line, "\n")
		if v, ok := strings.CutPrefix(line, "id: "); ok {
			evID = v
		}
		if v, ok := strings.CutPrefix(line, "data: "); ok {
			seq, cursor := firstOf(t, "event", []byte(v))
			if evID != cursor {
				t.Fatalf("event id %q, message cursor %q", evID, cursor)
			}
			return seq, evID
		}
	}
}

// pollFirst polls the xt wall from cursor and returns the first message's
// seq (with no cursor: the last message's) and the answer's cursor.
func pollFirst(t *testing.T, base, cursor string) (uint64, string) {
	t.Helper()
	resp, err := http.Get(base + "/a/message/updates?wall=xt&cursor=" + url.QueryEscape(cursor))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var a struct {
		Messages []json.RawMessage `json:"messages"`
		Cursor   string            `json:"cursor"`
		Reset    bool              `json:"reset"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&a); err != nil || len(a.Messages) == 0 || a.Reset {
		t.Fatalf("poll from %q: %+v %v", cursor, a, err)
	}
	first := a.Messages[0]
	if cursor == "" {
		first = a.Messages[len(a.Messages)-1]
	}
	seq, _ := firstOf(t, "poll", first)
	return seq, a.Cursor
}

// firstOf decodes a message object and returns its seq and cursor.
func firstOf(t *testing.T, what string, data []byte) (uint64, string) {
	t.Helper()
	var m struct {
		Seq    uint64 `json:"seq"`
		Cursor string `json:"cursor"`
	}
	if err := json.Unmarshal(data, &m); err != nil || m.Seq == 0 || m.Cursor == "" {
		t.Fatalf("%s %s is not a message", what, data)
	}
	return m.Seq, m.Cursor
}
