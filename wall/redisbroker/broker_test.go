package redisbroker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"wall/wall"
	"wall/wall/redistest"
)

// TestRedisBrokerSyncRedisDown: with Redis away, a cursor this instance cannot place is ErrUnavailable
// (the server answers 503 and the client retries), never nil, which would
// have the poll take it for unknown and answer the cache with reset. A
// cursor it can place needs no Redis.
func TestRedisBrokerSyncRedisDown(t *testing.T) {
	srv := redistest.Start(t)
	a := startNode(t, srv, 200)
	ctx := context.Background()
	var last *wall.Message
	for range 3 {
		m, err := post(t, a, "main", "m")
		if err != nil {
			t.Fatal(err)
		}
		last = m
	}
	srv.Stop()
	for _, c := range []wall.Cursor{{Set: true, Seq: last.Seq + 2}, {Set: true, ID: uuid.NewString()}} {
		if err := a.b.Sync(ctx, "main", c); !errors.Is(err, wall.ErrUnavailable) {
			t.Errorf("Sync(%v) with Redis down: %v, want ErrUnavailable", c, err)
		}
	}
	for _, c := range []wall.Cursor{{Set: true, Seq: last.Seq}, {Set: true, ID: last.ID}, {}} {
		if err := a.b.Sync(ctx, "main", c); err != nil {
			t.Errorf("Sync(%v) of a cursor this instance holds: %v", c, err)
		}
	}
}

// redisNode is one instance in a test: a hub and its Redis broker.
type redisNode struct {
	hub    *wall.Hub
	b      *Broker
	cancel context.CancelFunc
	done   chan struct{}
}

// startNode starts an instance on srv; it is stopped at cleanup.
func startNode(t testing.TB, srv *redistest.Server, cacheSize int) *redisNode {
	t.Helper()
	hub := wall.NewHub(cacheSize)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if os.Getenv("WALL_TEST_LOG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	b := New(srv.Client(), hub, Config{
		Log:            log,
		Prefix:         "t:",
		ResyncInterval: 200 * time.Millisecond,
	})
	ctx, cancel := context.WithCancel(context.Background())
	n := &redisNode{hub: hub, b: b, cancel: cancel, done: make(chan struct{})}
	go func() { _ = b.Run(ctx); close(n.done) }()
	t.Cleanup(n.stop)
	return n
}

// stop ends Run and waits for it, failing if it does not return promptly.
func (n *redisNode) stop() {
	n.cancel()
	select {
	case <-n.done:
	case <-time.After(5 * time.Second):
		panic("Broker.Run did not return after cancel")
	}
}

// recorder is a Subscriber that records the seqs it was sent.
type recorder struct {
	mu     sync.Mutex
	seqs   []uint64
	ids    []string
	resets int
}

func (r *recorder) Send(m *wall.Message) {
	r.mu.Lock()
	r.seqs = append(r.seqs, m.Seq)
	r.ids = append(r.ids, m.ID)
	r.mu.Unlock()
}

// Reset records the new cache as what the subscriber has.
func (r *recorder) Reset(msgs []*wall.Message) {
	r.mu.Lock()
	r.seqs, r.ids = r.seqs[:0], r.ids[:0]
	for _, m := range msgs {
		r.seqs = append(r.seqs, m.Seq)
		r.ids = append(r.ids, m.ID)
	}
	r.resets++
	r.mu.Unlock()
}

// checkExactlyOnce asserts the subscriber got seqs 1..n once each, in order.
func (r *recorder) checkExactlyOnce(t *testing.T, name string, n uint64) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if uint64(len(r.seqs)) != n {
		t.Errorf("%s: subscriber got %d messages, want %d", name, len(r.seqs), n)
	}
	for i, s := range r.seqs {
		if s != uint64(i+1) {
			t.Errorf("%s: subscriber message %d has seq %d (lost, duplicated or reordered)", name, i, s)
			return
		}
	}
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// sameWall asserts both walls hold seqs 1..n with the same ids in order.
func sameWall(t *testing.T, a, b *wall.Wall, n uint64) {
	t.Helper()
	ma, mb := a.Messages(), b.Messages()
	if uint64(len(ma)) != n || uint64(len(mb)) != n {
		t.Fatalf("caches hold %d and %d messages, want %d", len(ma), len(mb), n)
	}
	for i := range ma {
		if ma[i].Seq != uint64(i+1) || mb[i].Seq != uint64(i+1) || ma[i].ID != mb[i].ID || ma[i].Body != mb[i].Body {
			t.Fatalf("message %d differs: %d %s %q / %d %s %q", i, ma[i].Seq, ma[i].ID, ma[i].Body, mb[i].Seq, mb[i].ID, mb[i].Body)
		}
	}
}

// post publishes on n and checks read-your-writes.
func post(t testing.TB, n *redisNode, wallName, body string) (*wall.Message, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	id := uuid.NewString()
	m, _, err := n.b.Publish(ctx, wall.Post{Wall: wallName, ID: id, Body: body})
	if err != nil {
		return nil, err
	}
	if m.ID != id || m.Body != body {
		t.Errorf("Publish returned %+v, want id %s body %q", m, id, body)
	}
	if !n.hub.Wall(wallName).Has(wall.Cursor{Set: true, ID: id}) {
		t.Errorf("read your writes: %s not in the posting instance's cache", id)
	}
	return m, nil
}

// postMany runs posters goroutines on each node, each posting per messages,
// and fails on any error.
func postMany(t *testing.T, nodes []*redisNode, wallName string, posters, per int) {
	t.Helper()
	var wg sync.WaitGroup
	for ni, n := range nodes {
		for p := range posters {
			wg.Go(func() {
				for i := range per {
					if _, err := post(t, n, wallName, fmt.Sprintf("n%d p%d #%d", ni, p, i)); err != nil {
						t.Errorf("post: %v", err)
						return
					}
				}
			})
		}
	}
	wg.Wait()
}

// subscribe adds a live subscriber to the wall, held as a WebSocket holds
// it (Acquire), so the instance follows the wall from now on.
func subscribe(hub *wall.Hub, wallName string) *recorder {
	r := &recorder{}
	hub.Acquire(wallName).Subscribe(r, wall.Cursor{})
	return r
}

func TestRedisBrokerTwoInstances(t *testing.T) {
	srv := redistest.Start(t)
	a, b := startNode(t, srv, 500), startNode(t, srv, 500)
	ra, rb := subscribe(a.hub, "main"), subscribe(b.hub, "main")

	postMany(t, []*redisNode{a, b}, "main", 4, 50)
	const n = 400
	eventually(t, 5*time.Second, "both instances applied 400", func() bool {
		return a.hub.Wall("main").Last() == n && b.hub.Wall("main").Last() == n
	})
	sameWall(t, a.hub.Wall("main"), b.hub.Wall("main"), n)
	ra.checkExactlyOnce(t, "a", n)
	rb.checkExactlyOnce(t, "b", n)

	// A third instance started now loads the wall from the history.
	c := startNode(t, srv, 500)
	if err := c.b.Sync(context.Background(), "main", wall.Cursor{}); err != nil {
		t.Fatal(err)
	}
	sameWall(t, a.hub.Wall("main"), c.hub.Wall("main"), n)
}

func TestRedisBrokerSync(t *testing.T) {
	srv := redistest.Start(t)
	a, b := startNode(t, srv, 200), startNode(t, srv, 200)
	ctx := context.Background()

	// B's stream is as fast as A's post, or faster: Sync right away.
	m, err := post(t, a, "main", "first")
	if err != nil {
		t.Fatal(err)
	}
	if err := b.b.Sync(ctx, "main", wall.Cursor{Set: true, Seq: m.Seq}); err != nil {
		t.Fatal(err)
	}
	if !b.hub.Wall("main").Has(wall.Cursor{Set: true, ID: m.ID}) {
		t.Fatal("seq cursor: B.Sync returned before B had the message")
	}

	// B's stream loses everything: Sync must fill from the Redis history.
	b.b.dropPubSub.Store(true)
	for _, c := range []func(*wall.Message) wall.Cursor{
		func(m *wall.Message) wall.Cursor { return wall.Cursor{Set: true, Seq: m.Seq} },
		func(m *wall.Message) wall.Cursor { return wall.Cursor{Set: true, ID: m.ID} },
	} {
		m, err := post(t, a, "main", "next")
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if err := b.b.Sync(ctx, "main", c(m)); err != nil {
			t.Fatal(err)
		}
		if !b.hub.Wall("main").Has(wall.Cursor{Set: true, ID: m.ID}) {
			t.Fatalf("cursor %v: B.Sync did not fetch the message from history", c(m))
		}
		if d := time.Since(start); d > 500*time.Millisecond {
			t.Errorf("Sync took %v", d)
		}
	}
	// An unknown cursor returns at once, leaving the wall alone.
	for _, c := range []wall.Cursor{{Set: true, ID: uuid.NewString()}, {Set: true, Seq: 99}} {
		if err := b.b.Sync(ctx, "main", c); err != nil {
			t.Fatal(err)
		}
	}
	b.b.dropPubSub.Store(false)
	sameWall(t, a.hub.Wall("main"), b.hub.Wall("main"), 3)
}

func TestRedisBrokerPubSubKilled(t *testing.T) {
	srv := redistest.Start(t)
	a, b := startNode(t, srv, 500), startNode(t, srv, 500)
	ra, rb := subscribe(a.hub, "main"), subscribe(b.hub, "main")
	admin := srv.Client()

	stop := make(chan struct{})
	killed := make(chan int)
	go func() {
		n := 0
		defer func() { killed <- n }()
		for {
			select {
			case <-stop:
				return
			case <-time.After(30 * time.Millisecond):
			}
			k, _ := admin.ClientKillByFilter(context.Background(), "TYPE", "pubsub").Result()
			n += int(k)
		}
	}()
	// Posting in rounds, each after a kill of its own, so that posts meet
	// a dropped stream however fast they go (on a quick box all 400 can
	// finish before the killer's first tick). The kill is retried until
	// it finds a connection: the last kill's may not be back yet.
	roundKills := 0
	for range 4 {
		eventually(t, 5*time.Second, "a pub/sub connection to kill", func() bool {
			k, err := admin.ClientKillByFilter(context.Background(), "TYPE", "pubsub").Result()
			if err != nil {
				t.Fatal(err)
			}
			roundKills += int(k)
			return k > 0
		})
		postMany(t, []*redisNode{a, b}, "main", 2, 25)
	}
	close(stop)
	t.Logf("killed %d pub/sub connections, %d of them before a round", <-killed+roundKills, roundKills)
	const n = 400
	eventually(t, 5*time.Second, "both instances applied 400", func() bool {
		return a.hub.Wall("main").Last() == n && b.hub.Wall("main").Last() == n
	})
	sameWall(t, a.hub.Wall("main"), b.hub.Wall("main"), n)
	ra.checkExactlyOnce(t, "a", n)
	rb.checkExactlyOnce(t, "b", n)
}

// TestRedisBrokerRedisDown stops Redis: posts fail fast with
// ErrUnavailable, subscribers stay, and after the restart (empty) the walls
// are restored from the caches so numbering continues.
func TestRedisBrokerRedisDown(t *testing.T) {
	srv := redistest.Start(t)
	a, b := startNode(t, srv, 200), startNode(t, srv, 200)
	ra, rb := subscribe(a.hub, "main"), subscribe(b.hub, "main")
	postMany(t, []*redisNode{a, b}, "main", 1, 5)
	eventually(t, 2*time.Second, "10 on B", func() bool { return b.hub.Wall("main").Last() == 10 })

	srv.Stop()
	for _, n := range []*redisNode{a, b} {
		start := time.Now()
		_, _, err := n.b.Publish(context.Background(), wall.Post{Wall: "main", ID: uuid.NewString(), Body: "lost"})
		if !errors.Is(err, wall.ErrUnavailable) {
			t.Fatalf("Publish with Redis down: %v, want ErrUnavailable", err)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("Publish with Redis down took %v", d)
		}
	}
	srv.Start()

	admin := srv.Client()
	eventually(t, 5*time.Second, "the wall restored into Redis", func() bool {
		s, _ := admin.HGet(context.Background(), "t:{main}:meta", "seq").Result()
		return s == "10"
	})
	m, err := post(t, b, "main", "after the restart")
	if err != nil {
		t.Fatal(err)
	}
	if m.Seq != 11 {
		t.Fatalf("first post after the restart got seq %d, want 11", m.Seq)
	}
	eventually(t, 2*time.Second, "11 on A", func() bool { return a.hub.Wall("main").Last() == 11 })
	sameWall(t, a.hub.Wall("main"), b.hub.Wall("main"), 11)
	ra.checkExactlyOnce(t, "a", 11)
	rb.checkExactlyOnce(t, "b", 11)
}

// TestRedisBrokerMissedWhileDown publishes with redis-cli's command while
// one instance's stream is dead: it still gets the message, without any
// further post.
func TestRedisBrokerMissedWhileDown(t *testing.T) {
	srv := redistest.Start(t)
	a, b := startNode(t, srv, 200), startNode(t, srv, 200)
	admin := srv.Client()
	subscribe(b.hub, "main")
	if _, err := post(t, a, "main", "one"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 2*time.Second, "1 on B", func() bool { return b.hub.Wall("main").Last() == 1 })

	b.b.dropPubSub.Store(true)
	// redis-cli FCALL wall_publish 1 'wall:{main}' 'hello from the backend', with the tests' prefix
	v, err := admin.FCall(context.Background(), "wall_publish", []string{"t:{main}"}, "  hello from the backend \x01").Result()
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 2*time.Second, "the backend's message on A", func() bool { return a.hub.Wall("main").Last() == 2 })
	eventually(t, 3*time.Second, "the backend's message on B", func() bool { return b.hub.Wall("main").Last() == 2 })
	b.b.dropPubSub.Store(false)
	sameWall(t, a.hub.Wall("main"), b.hub.Wall("main"), 2)
	m := b.hub.Wall("main").Messages()[1]
	if m.Body != "hello from the backend" || m.ID != v.([]any)[2] {
		t.Fatalf("backend message %+v (reply %v)", m, v)
	}
	if _, err := uuid.Parse(m.ID); err != nil || m.ID[14] != '4' {
		t.Fatalf("generated id %q is not a UUID4", m.ID)
	}

	// A new wall published from the backend appears live on the
	// instance that has a user of it, and only there.
	rn := subscribe(a.hub, "news")
	eventually(t, 2*time.Second, "A's subscription to the new wall", func() bool { return a.b.awaitLive(context.Background(), "news") })
	if _, err := admin.FCall(context.Background(), "wall_publish", []string{"t:{news}"}, "x").Result(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 2*time.Second, "the new wall on A", func() bool { rn.mu.Lock(); defer rn.mu.Unlock(); return len(rn.ids) == 1 })
	if b.hub.Lookup("news") != nil {
		t.Fatal("B holds a wall it has no user of")
	}
}

// TestRedisBrokerInstanceRestart restarts one instance while the other
// keeps posting: the new one serves the same cache.
func TestRedisBrokerInstanceRestart(t *testing.T) {
	srv := redistest.Start(t)
	a, b := startNode(t, srv, 50), startNode(t, srv, 50)
	postMany(t, []*redisNode{a, b}, "main", 1, 20)
	b.stop()
	postMany(t, []*redisNode{a}, "main", 1, 30)
	b2 := startNode(t, srv, 50)
	if err := b2.b.Sync(context.Background(), "main", wall.Cursor{}); err != nil {
		t.Fatal(err)
	}
	ma, mb := a.hub.Wall("main").Messages(), b2.hub.Wall("main").Messages()
	if len(ma) != 50 || len(mb) != 50 || ma[0].Seq != 21 || mb[49].Seq != 70 {
		t.Fatalf("caches: %d and %d messages", len(ma), len(mb))
	}
	for i := range ma {
		if ma[i].ID != mb[i].ID {
			t.Fatalf("message %d differs", i)
		}
	}
	r := subscribe(b2.hub, "main")
	if _, err := post(t, a, "main", "live"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 2*time.Second, "live message on the restarted instance", func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		return len(r.seqs) == 1 && r.seqs[0] == 71
	})
}

// TestRedisBrokerNewEpoch: Redis lost the wall and the first post after
// the loss came from a backend, before any instance restored it. The
// instances adopt the new history instead of mixing the two.
func TestRedisBrokerNewEpoch(t *testing.T) {
	srv := redistest.Start(t)
	a := startNode(t, srv, 200)
	postMany(t, []*redisNode{a}, "main", 1, 5)
	sub := &recorder{}
	a.hub.Acquire("main").Subscribe(sub, wall.Cursor{})
	a.b.dropPubSub.Store(true) // keep A from restoring on resubscribe before the backend posts
	admin := srv.Client()
	a.stop()
	if err := admin.Del(context.Background(), "t:{main}:meta", "t:{main}:log", "t:{main}:ids").Err(); err != nil {
		t.Fatal(err)
	}
	reply, err := admin.FCall(context.Background(), "wall_publish", []string{"t:{main}"}, "new era").Result()
	if err != nil {
		t.Fatal(err)
	}
	newEpoch, _ := reply.([]any)[1].(string)
	oldEpoch := a.hub.Wall("main").Epoch()
	// Restart A's broker on the same hub (its cache and epoch still hold 1..5).
	b := New(srv.Client(), a.hub, Config{Prefix: "t:", ResyncInterval: 100 * time.Millisecond,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = b.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	// A client holding the new epoch's cursor (from a peer): Sync loads
	// the epoch before the poll is answered, so it is a position, not a
	// reset (whether Sync or the broker's first resync loaded it).
	newCursor := wall.Cursor{Set: true, Seq: 1, Epoch: newEpoch}
	if err := b.Sync(ctx, "main", newCursor); err != nil {
		t.Fatal(err)
	}
	if !a.hub.Wall("main").Has(newCursor) {
		t.Fatalf("after Sync the wall (epoch %q) cannot place %+v", a.hub.Wall("main").Epoch(), newCursor)
	}
	eventually(t, 3*time.Second, "the new epoch adopted", func() bool {
		ms := a.hub.Wall("main").Messages()
		return len(ms) == 1 && ms[0].Body == "new era"
	})
	w := a.hub.Wall("main")
	if w.Epoch() == oldEpoch || w.Messages()[0].Epoch != w.Epoch() {
		t.Fatalf("epoch %q (message's %q), the old one was %q", w.Epoch(), w.Messages()[0].Epoch, oldEpoch)
	}
	if r, _ := w.Poll(wall.Cursor{Set: true, Seq: 5}); !r.Reset || len(r.Messages) != 1 {
		t.Fatalf("a plain seq past the new epoch's last: %+v, want the whole cache with reset", r)
	}
	// A cursor of the old epoch whose seq exists in the new one too.
	if r, _ := w.Poll(wall.Cursor{Set: true, Seq: 1, Epoch: oldEpoch}); !r.Reset || len(r.Messages) != 1 {
		t.Fatalf("a cursor of the old epoch: %+v, want the whole cache with reset", r)
	}
	if w.Has(wall.Cursor{Set: true, Seq: 1, Epoch: oldEpoch}) {
		t.Fatal("Has takes a cursor of the old epoch")
	}
	// A live subscriber is told, and holds the new epoch's cache.
	sub.mu.Lock()
	defer sub.mu.Unlock()
	if sub.resets != 1 || len(sub.ids) != 1 || sub.ids[0] != w.Messages()[0].ID {
		t.Fatalf("subscriber after the new epoch: %d resets, ids %v", sub.resets, sub.ids)
	}
}

func TestRedisBrokerLimitsAndPayload(t *testing.T) {
	srv := redistest.Start(t)
	a := startNode(t, srv, 200)
	if _, err := post(t, a, "other", "the library is loaded"); err != nil {
		t.Fatal(err)
	}
	big := strings.Repeat("x", defaultBodyLimit+1)
	if _, _, err := a.b.Publish(context.Background(), wall.Post{Wall: "main", ID: uuid.NewString(), Body: big}); !errors.Is(err, wall.ErrBodyTooLarge) {
		t.Fatalf("oversized Publish: %v, want ErrBodyTooLarge", err)
	}
	_, err := srv.Client().FCall(context.Background(), "wall_publish", []string{"t:{main}"}, big).Result()
	if err == nil || !strings.HasPrefix(err.Error(), "TOOLARGE") {
		t.Fatalf("oversized FCALL: %v", err)
	}
	for _, key := range []string{"main", "t:{}", "t:{a b}"} {
		if _, err := srv.Client().FCall(context.Background(), "wall_publish", []string{key}, "x").Result(); err == nil {
			t.Errorf("FCALL with key %q accepted", key)
		}
	}
	if l := a.hub.Wall("main").Last(); l != 0 {
		t.Fatalf("a refused post was stored: last %d", l)
	}

	sent := &wall.Message{ID: "id-1", Seq: 7, User: "mary ann\n%", Time: 1733260000123, Body: "two\nlines  "}
	p := encodePayload("user:mary", "e1", sent)
	e, err := parsePayload(p)
	if err != nil || e.seq != 7 || e.epoch != "e1" || e.id != "id-1" || e.wallName != "user:mary" ||
		e.body != "two\nlines  " || e.user != sent.User || e.time != sent.Time {
		t.Fatalf("payload round trip: %+v, %v", e, err)
	}
	if m := e.message(); m.Body != "two\nlines" || m.User != sent.User || m.Time != sent.Time {
		t.Fatalf("received message: body %q, user %q, time %d", m.Body, m.User, m.Time)
	}
	// A payload of an older version (no t= or u=) still parses.
	if e, err := parsePayload("3 e1 id-3 main\nold"); err != nil || e.user != "" || e.time != 0 || e.body != "old" {
		t.Fatalf("old payload: %+v, %v", e, err)
	}
	for _, bad := range []string{"", "1 e id main", "x e id main\nb", "1 e main\nb", "1 e id main t=x\nb", "1 e id main u=%zz\nb"} {
		if _, err := parsePayload(bad); err == nil {
			t.Errorf("parsePayload(%q) accepted", bad)
		}
	}
}

// BenchmarkRedisPublish posts on instance A and measures until instance B
// has applied the message (A has it when Publish returns). It reports the
// p50/p99 of that cross-instance latency. Redis work per post: one FCALL
// (HGET, HINCRBY, 2 ZADD, 2 ZREMRANGEBYRANK, PUBLISH inside the function).
func BenchmarkRedisPublish(b *testing.B) {
	srv := redistest.Start(b)
	a, o := startNode(b, srv, 200), startNode(b, srv, 200)
	ctx := context.Background()
	wb := o.hub.Wall("bench")
	body := "a benchmark message with a link http://example.com/?a=1&b=2"
	lat := make([]time.Duration, 0, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		m, _, err := a.b.Publish(ctx, wall.Post{Wall: "bench", ID: uuid.NewString(), Body: body})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := wb.WaitApplied(ctx, m.Seq); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}

// BenchmarkRedisPublishParallel posts from concurrent goroutines on A and
// B into one wall: the throughput of the sequencer and both appliers.
func BenchmarkRedisPublishParallel(b *testing.B) {
	srv := redistest.Start(b)
	nodes := []*redisNode{startNode(b, srv, 200), startNode(b, srv, 200)}
	var next atomic.Int64
	b.SetParallelism(8)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		n := nodes[next.Add(1)%2]
		for pb.Next() {
			if _, _, err := n.b.Publish(context.Background(), wall.Post{Wall: "bench", ID: uuid.NewString(), Body: "parallel"}); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// A burst of Syncs of an empty wall costs one Redis read per interval, and
// a message posted meanwhile still arrives (by pub/sub).
func TestRedisBrokerSyncEmptyWallOnce(t *testing.T) {
	srv := redistest.Start(t)
	a := startNode(t, srv, 200)
	b := startNode(t, srv, 200)
	admin := srv.Client()
	ctx := context.Background()
	if err := admin.ConfigResetStat(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	w := b.hub.Acquire("fresh")
	defer b.hub.Release(w)
	for range 50 {
		if err := b.b.Sync(ctx, "fresh", wall.Cursor{}); err != nil {
			t.Fatal(err)
		}
	}
	stats, err := admin.Info(ctx, "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	if calls := fcallCalls(stats); calls > 2 {
		t.Fatalf("50 Syncs of an empty wall made %d FCALLs", calls)
	}
	m, err := post(t, a, "fresh", "hello")
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 2*time.Second, "the post on B", func() bool { return w.Has(wall.Cursor{Set: true, ID: m.ID}) })
}

// fcallCalls reads the FCALL count from INFO commandstats.
func fcallCalls(stats string) int {
	for _, line := range strings.Split(stats, "\n") {
		if rest, ok := strings.CutPrefix(line, "cmdstat_fcall:calls="); ok {
			n, _ := strconv.Atoi(strings.SplitN(rest, ",", 2)[0])
			return n
		}
	}
	return 0
}

// TestRedisBrokerServed: the broker is the hub's Interest and knows which
// walls this instance serves (has local users of), on every path a user
// takes; a wall it only applies messages to for a peer is not served once
// that work is done.
func TestRedisBrokerServed(t *testing.T) {
	srv := redistest.Start(t)
	a, b := startNode(t, srv, 10), startNode(t, srv, 10)
	if got := a.b.Served(); len(got) != 0 {
		t.Fatalf("Served = %v before any user", got)
	}
	poller := a.hub.Acquire("polled")
	ws := a.hub.Acquire("watched")
	sub := &recorder{}
	ws.Subscribe(sub, wall.Cursor{})
	if got := a.b.Served(); !slices.Equal(got, []string{"polled", "watched"}) {
		t.Fatalf("Served = %v, want [polled watched]", got)
	}
	// A post from B reaches A's applier; a post on A to a wall nobody
	// reads there is a user only while it is served (the broker's own
	// Acquire included).
	if _, err := post(t, b, "watched", "hi"); err != nil {
		t.Fatal(err)
	}
	if _, err := post(t, a, "elsewhere", "hi"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "A applied B's post", func() bool { return ws.Last() == 1 })
	eventually(t, 5*time.Second, "A done with elsewhere", func() bool {
		return slices.Equal(a.b.Served(), []string{"polled", "watched"})
	})
	a.hub.Release(poller)
	ws.Unsubscribe(sub)
	a.hub.Release(ws)
	if got := a.b.Served(); len(got) != 0 {
		t.Fatalf("Served = %v after every user left", got)
	}
}

// TestRedisBrokerIdempotent: a retry of an id still in the wall's history
// stores nothing and answers the stored message (its seq, author and time),
// on any instance, one that never held the wall included; an id gone from
// the history is a new message.
func TestRedisBrokerIdempotent(t *testing.T) {
	srv := redistest.Start(t)
	a, b := startNode(t, srv, 4), startNode(t, srv, 4)
	rb := subscribe(b.hub, "user:mary:orders")
	ctx := context.Background()
	const id = "11111111-2222-4333-8444-555555555555"
	first, stored, err := a.b.Publish(ctx, wall.Post{Wall: "user:mary:orders", ID: id, Body: "order 1 shipped", User: "shop"})
	if err != nil || !stored || first.User != "shop" || first.Time == 0 {
		t.Fatalf("first post: stored %v, %+v, %v", stored, first, err)
	}
	if _, err := post(t, a, "user:mary:orders", "another"); err != nil {
		t.Fatal(err)
	}
	for _, n := range []*redisNode{a, b, startNode(t, srv, 4)} {
		m, stored, err := n.b.Publish(ctx, wall.Post{Wall: "user:mary:orders", ID: id, Body: "retry", User: "someone else"})
		if err != nil || stored {
			t.Fatalf("retry: stored %v, %v", stored, err)
		}
		if m.Seq != first.Seq || string(m.JSON) != string(first.JSON) {
			t.Fatalf("retry answered %s, want the stored %s", m.JSON, first.JSON)
		}
		if !n.hub.Wall("user:mary:orders").Has(m.Cursor()) {
			t.Fatal("read your writes: the answering instance has not applied the stored message")
		}
	}
	if l := a.hub.Wall("user:mary:orders").Last(); l != 2 {
		t.Fatalf("retries stored something: last %d, want 2", l)
	}
	eventually(t, 5*time.Second, "b applied both", func() bool { return b.hub.Wall("user:mary:orders").Last() == 2 })
	rb.checkExactlyOnce(t, "b", 2)

	for i := 0; i < 4; i++ { // push the id out of the history
		if _, err := post(t, b, "user:mary:orders", "filler"); err != nil {
			t.Fatal(err)
		}
	}
	m, stored, err := b.b.Publish(ctx, wall.Post{Wall: "user:mary:orders", ID: id, Body: "late"})
	if err != nil || !stored || m.Seq != 7 {
		t.Fatalf("id gone from the history: stored %v, seq %d, %v; want stored as 7", stored, m.Seq, err)
	}
}
