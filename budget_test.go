package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"wall/assets"
	"wall/server"
	"wall/views"
	"wall/wall"
	"wall/wall/redistest"
)

// TestBudgetEvictionRedisCursor: with Redis, a wall the cache budget
// evicted keeps its numbering: Redis has its history. A poll with a cursor
// taken before the eviction is answered from Redis on the wall's next use
// (nothing new: a timeout, no reset), and posts continue the same epoch
// and seqs, which that cursor then reads without a gap.
func TestBudgetEvictionRedisCursor(t *testing.T) {
	rs := redistest.Start(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg := config{cacheSize: 10, redisURL: rs.URL(), server: server.Config{PollTimeout: time.Second}}
	hub := wall.NewHub(cfg.cacheSize)
	hub.SetCacheBudget(64 << 10)
	defer hub.Close()
	broker, _, closeBroker, err := newBroker(cfg, hub, log, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	defer closeBroker()
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- broker.Run(ctx) }()
	defer func() { cancel(); <-ran }()
	srv, err := server.New(cfg.server, log, hub, broker, views.FS, assets.FS)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv)
	defer func() { hub.Close(); ts.Close(); srv.Wait() }()

	post := func(name, body string) *wall.Message {
		t.Helper()
		m, _, err := broker.Publish(ctx, wall.Post{Wall: name, ID: uuid.NewString(), Body: body})
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	poll := func(cursor string) (msgs []struct{ Seq uint64 }, reset bool, missed uint64) {
		t.Helper()
		resp, err := http.Get(ts.URL + "/a/message/updates?" + url.Values{"wall": {"a"}, "cursor": {cursor}}.Encode())
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var r struct {
			Messages []struct{ Seq uint64 }
			Reset    bool
			Missed   uint64
		}
		if err := json.NewDecoder(resp.Body).Decode(&r); err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("poll: %d %v", resp.StatusCode, err)
		}
		return r.Messages, r.Reset, r.Missed
	}

	var old *wall.Message
	for i := range 3 {
		old = post("a", fmt.Sprintf("before %d", i))
	}
	for i := 0; hub.Lookup("a") != nil; i++ {
		if i > 1000 {
			t.Fatal("the idle wall was never evicted")
		}
		post(fmt.Sprintf("flood-%d", i), strings.Repeat("y", 1000))
	}
	if st := hub.CacheStats(); st.Bytes > st.Budget || st.Evicted == 0 {
		t.Fatalf("cache %+v", st)
	}
	cursor := old.Cursor().String()
	if msgs, reset, _ := poll(cursor); len(msgs) != 0 || reset {
		t.Fatalf("cursor of an evicted wall, nothing new: %d messages, reset %v; want a timeout", len(msgs), reset)
	}
	var m *wall.Message
	for i := range 2 {
		m = post("a", fmt.Sprintf("after %d", i))
	}
	if m.Seq != 5 || m.Epoch != old.Epoch {
		t.Fatalf("after eviction: seq %d epoch %q; want 5 in %q", m.Seq, m.Epoch, old.Epoch)
	}
	msgs, reset, missed := poll(cursor)
	if reset || missed != 0 || len(msgs) != 2 || msgs[0].Seq != 4 || msgs[1].Seq != 5 {
		t.Fatalf("old cursor: %+v reset %v missed %d; want seqs 4 and 5", msgs, reset, missed)
	}
}
