package redisbroker

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"wall/wall"
	"wall/wall/redistest"
)

// startNodeWith starts an instance on client with cfg (its Log and Prefix
// defaulted as startNode's), after setup, if any, prepared the broker
// before Run; it is stopped at cleanup.
func startNodeWith(t testing.TB, client redis.UniversalClient, cacheSize int, cfg Config, setup ...func(*Broker)) *redisNode {
	t.Helper()
	hub := wall.NewHub(cacheSize)
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
		if os.Getenv("WALL_TEST_LOG") != "" {
			cfg.Log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
		}
	}
	if cfg.Prefix == "" {
		cfg.Prefix = "t:"
	}
	b := New(client, hub, cfg)
	for _, f := range setup {
		f(b)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n := &redisNode{hub: hub, b: b, cancel: cancel, done: make(chan struct{})}
	go func() { _ = b.Run(ctx); close(n.done) }()
	t.Cleanup(n.stop)
	return n
}

// numSub returns how many connections are subscribed to each wall's
// channel on a single Redis.
func numSub(t *testing.T, admin *redis.Client, walls ...string) map[string]int64 {
	t.Helper()
	chans := make([]string, len(walls))
	for i, w := range walls {
		chans[i] = "t:{" + w + "}:events"
	}
	got, err := admin.PubSubNumSub(context.Background(), chans...).Result()
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[string]int64, len(walls))
	for i, w := range walls {
		out[w] = got[chans[i]]
	}
	return out
}

// TestRedisBrokerFollowsServedWallsOnly: an instance with no user of a
// wall neither subscribes to it nor applies its messages; a user makes it
// follow the wall (history first, then live, each message once), and the
// linger after the last user ends with the subscription and the cache
// dropped.
func TestRedisBrokerFollowsServedWallsOnly(t *testing.T) {
	srv := redistest.Start(t)
	admin := srv.Client()
	a := startNode(t, srv, 100)
	b := startNodeWith(t, srv.Client(), 100, Config{Linger: 200 * time.Millisecond})
	walls := make([]string, 20)
	for i := range walls {
		walls[i] = fmt.Sprintf("w%d", i)
		subscribe(a.hub, walls[i])
	}
	for round := range 5 {
		for _, w := range walls {
			if _, err := post(t, a, w, fmt.Sprintf("%s #%d", w, round)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if st := b.b.Stats(); st.Followed != 0 || st.Received != 0 || st.Applied != 0 || b.hub.Len() != 0 {
		t.Fatalf("an instance without users of the walls: %+v, %d walls held", st, b.hub.Len())
	}
	for w, n := range numSub(t, admin, walls...) {
		if n != 1 {
			t.Errorf("%s has %d subscribers, want 1 (A's)", w, n)
		}
	}

	// A user on B: the wall's history, then live messages.
	wb := b.hub.Acquire("w3")
	if err := b.b.Sync(context.Background(), "w3", wall.Cursor{}); err != nil {
		t.Fatal(err)
	}
	if wb.Last() != 5 {
		t.Fatalf("B loaded w3 up to %d, want 5", wb.Last())
	}
	r := &recorder{}
	wb.Subscribe(r, wall.Cursor{Set: true, Seq: 0})
	for range 3 {
		if _, err := post(t, a, "w3", "live"); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 2*time.Second, "B got the live messages", func() bool { return wb.Last() == 8 })
	sameWall(t, a.hub.Wall("w3"), wb, 8)
	if st := b.b.Stats(); st.Followed != 1 || st.Live != 1 {
		t.Fatalf("B follows %+v, want w3 alone, live", st)
	}
	if n := numSub(t, admin, "w3")["w3"]; n != 2 {
		t.Fatalf("w3 has %d subscribers, want 2", n)
	}

	// The user leaves: after the linger B drops the wall and its channel.
	wb.Unsubscribe(r)
	b.hub.Release(wb)
	eventually(t, 3*time.Second, "B dropped w3", func() bool {
		return b.b.Stats().Followed == 0 && b.hub.Lookup("w3") == nil && numSub(t, admin, "w3")["w3"] == 1
	})
	if _, err := post(t, a, "w3", "after"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if b.hub.Lookup("w3") != nil {
		t.Fatal("B applied a message of a wall it stopped following")
	}
	// Back within the linger: the wall stays followed, nothing re-read.
	wb = b.hub.Acquire("w3")
	if err := b.b.Sync(context.Background(), "w3", wall.Cursor{}); err != nil || wb.Last() != 9 {
		t.Fatalf("B back on w3: last %d, %v", wb.Last(), err)
	}
	b.hub.Release(wb)
	wb = b.hub.Acquire("w3")
	defer b.hub.Release(wb)
	if _, err := post(t, a, "w3", "again"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 2*time.Second, "B live on w3 again", func() bool { return wb.Last() == 10 })
}

// TestRedisBrokerHandOver is the race of a wall's hand-over: a burst of
// posts flows into a wall from A while a client connects on B, which has
// to subscribe, read the history and apply the stream; when the burst is
// over the client must hold every message once, in order, within 300 ms
// (the periodic check that would mend a missed message is off). The
// client then leaves; every other time long enough for B to drop the wall
// and follow it again from scratch on the next connection. This is the
// randomized counterpart of TestRedisBrokerSubscribeBeforeRead, which
// makes the subscription slow on purpose.
func TestRedisBrokerHandOver(t *testing.T) {
	srv := redistest.Start(t)
	a := startNodeWith(t, srv.Client(), 5000, Config{ResyncInterval: time.Minute})
	b := startNodeWith(t, srv.Client(), 5000, Config{ResyncInterval: time.Minute, Linger: 20 * time.Millisecond})
	ctx := context.Background()

	var posted atomic.Uint64
	r := &recorder{}
	var last uint64
	for cycle := range 16 {
		var wg sync.WaitGroup
		for p := range 3 {
			wg.Go(func() {
				for i := range 40 {
					if _, err := post(t, a, "hand", fmt.Sprintf("c%d p%d #%d", cycle, p, i)); err != nil {
						t.Error(err)
						return
					}
					posted.Add(1)
				}
			})
		}
		// The client connects at some point of the burst, as a WebSocket
		// handler does, with its cursor.
		time.Sleep(time.Duration(cycle%4) * 5 * time.Millisecond)
		w := b.hub.Acquire("hand")
		c := wall.Cursor{Set: true, Seq: last}
		if err := b.b.Sync(ctx, "hand", c); err != nil {
			t.Fatal(err)
		}
		catchUp := w.Subscribe(r, c)
		if catchUp.Reset || catchUp.Missed > 0 {
			t.Fatalf("cycle %d: catch-up after %d is a reset or gap: %+v", cycle, last, catchUp)
		}
		r.mu.Lock()
		for _, m := range catchUp.Messages {
			r.seqs = append(r.seqs, m.Seq)
		}
		r.mu.Unlock()
		wg.Wait()
		n := posted.Load()
		deadline := time.Now().Add(300 * time.Millisecond)
		for {
			r.mu.Lock()
			got := uint64(len(r.seqs))
			r.mu.Unlock()
			if got >= n {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("cycle %d: the client has %d of %d messages 300 ms after the burst; B's wall is at %d", cycle, got, n, w.Last())
			}
			time.Sleep(5 * time.Millisecond)
		}
		r.checkExactlyOnce(t, fmt.Sprintf("cycle %d", cycle), n)
		w.Unsubscribe(r)
		b.hub.Release(w)
		last = n
		if cycle%2 == 0 {
			// Gone long enough for B to drop the wall and its channel.
			eventually(t, 2*time.Second, "B dropped the wall", func() bool { return b.hub.Lookup("hand") == nil })
		}
	}
}

// TestRedisBrokerSubscribeBeforeRead: the subscription is slow to come
// (100 ms), and a burst of posts ends before it does. The client's Sync
// waits for the subscription before it reads the history, and the
// confirmation has the applier read again: the client gets the whole
// burst, though no message comes by the stream and the periodic check is
// off.
func TestRedisBrokerSubscribeBeforeRead(t *testing.T) {
	srv := redistest.Start(t)
	a := startNodeWith(t, srv.Client(), 100, Config{ResyncInterval: time.Minute})
	b := startNodeWith(t, srv.Client(), 100, Config{ResyncInterval: time.Minute},
		func(b *Broker) { b.subscribeDelay = 100 * time.Millisecond })
	if _, err := post(t, a, "slow", "before"); err != nil {
		t.Fatal(err)
	}
	w := b.hub.Acquire("slow")
	defer b.hub.Release(w)
	burst := make(chan error, 1)
	go func() {
		for i := range 10 {
			if _, err := post(t, a, "slow", fmt.Sprintf("burst %d", i)); err != nil {
				burst <- err
				return
			}
		}
		burst <- nil
	}()
	if err := b.b.Sync(context.Background(), "slow", wall.Cursor{Set: true, Seq: 0}); err != nil {
		t.Fatal(err)
	}
	r := &recorder{}
	catchUp := w.Subscribe(r, wall.Cursor{Set: true, Seq: 0})
	r.mu.Lock()
	for _, m := range catchUp.Messages {
		r.seqs = append(r.seqs, m.Seq)
	}
	r.mu.Unlock()
	if err := <-burst; err != nil {
		t.Fatal(err)
	}
	eventually(t, 300*time.Millisecond, "the whole burst on B", func() bool { return w.Last() == 11 })
	r.checkExactlyOnce(t, "client on B", 11)
}
