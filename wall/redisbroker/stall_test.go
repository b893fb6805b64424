package redisbroker

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"wall/wall"
	"wall/wall/redistest"
)

// TestRedisBrokerClusterStalledMaster: one master of a 3-master cluster
// stalls (CLIENT PAUSE ALL: it neither answers nor fails over) while
// instance A starts following a dozen new walls on it, each with a
// subscriber and a stream's Sync, which read the history there, and while
// A's periodic check asks every master. Messages that instance B posts
// meanwhile to walls on the two other masters reach A's subscribers at
// once, and walls on them that A starts following after the stalled ones
// get their history: all before the pause ends, so the reads stuck on the
// stalled master delay only its walls. Once it answers again, those walls catch up on A:
// every message once, in order, on every subscriber of both instances,
// without a reset.
func TestRedisBrokerClusterStalledMaster(t *testing.T) {
	const (
		stalledWalls = 12
		pause        = 6 * time.Second
		perWall      = 5
	)
	c := redistest.StartCluster(t, 3, 0)
	cfg := Config{ResyncInterval: 200 * time.Millisecond}
	a := startNodeWith(t, c.Client(), 500, cfg)
	b := startNodeWith(t, c.Client(), 500, cfg)
	stalled := c.Nodes()[0]

	// Walls on the stalled master (the first followed by both instances
	// before the pause, the others new to A during it) and walls on the
	// other two.
	var onStalled, healthy []string
	others := map[string]bool{}
	for i := 0; len(onStalled) < stalledWalls+1 || len(others) < 2; i++ {
		name := fmt.Sprintf("st%d", i)
		m, err := c.MasterOf("t:{" + name + "}")
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case m == stalled && len(onStalled) < stalledWalls+1:
			onStalled = append(onStalled, name)
		case m != stalled && len(healthy) < 8:
			healthy = append(healthy, name)
			others[m.Addr()] = true
		}
	}
	old, fresh := onStalled[0], onStalled[1:]
	healthy, freshHealthy := healthy[:len(healthy)-2], healthy[len(healthy)-2:]

	recs := map[string][]*recorder{} // wall -> A's and B's subscribers
	posted := map[string]uint64{}
	for _, w := range append([]string{old}, healthy...) {
		recs[w] = []*recorder{subscribe(a.hub, w), subscribe(b.hub, w)}
		postNext(t, b, posted, w)
	}
	for _, w := range append(fresh, freshHealthy...) {
		recs[w] = []*recorder{nil, subscribe(b.hub, w)}
		for range perWall {
			postNext(t, b, posted, w)
		}
	}
	for _, w := range append([]string{old}, healthy...) {
		eventually(t, 5*time.Second, "A applied "+w, func() bool { return a.hub.Wall(w).Last() == posted[w] })
	}

	c.Pause(stalled, pause)
	pausedAt := time.Now()

	// A gets a stream on each fresh wall: held, subscribed, synced, as
	// server/stream.go opens one. Every Sync reads the history: first of
	// the walls on the stalled master (each waits for its read, or gives
	// up, as a client would), then, once those reads are queued, of walls
	// on the other masters.
	var syncs sync.WaitGroup
	stream := func(w string) {
		recs[w][0] = subscribe(a.hub, w)
		syncs.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			_ = a.b.Sync(ctx, w, wall.Cursor{})
		})
	}
	for _, w := range fresh {
		stream(w)
	}
	time.Sleep(400 * time.Millisecond) // past Sync's wait for the subscription: the reads are asked for
	askedAt := time.Now()
	for _, w := range freshHealthy {
		stream(w)
	}
	for _, w := range healthy {
		for range perWall {
			postNext(t, b, posted, w)
		}
	}
	// Well within one read timeout (2 s, redistest's clients): nothing on
	// the healthy masters waited for a read of the stalled one.
	eventually(t, 1500*time.Millisecond, "A's subscribers to the healthy walls got B's posts and their history while the master is stalled", func() bool {
		for _, w := range append(healthy, freshHealthy...) {
			r := recs[w][0]
			r.mu.Lock()
			n := uint64(len(r.seqs))
			r.mu.Unlock()
			if n < posted[w] {
				return false
			}
		}
		return true
	})
	if time.Since(pausedAt) >= pause {
		t.Fatalf("the healthy walls were served %v after the pause began, not during its %v", time.Since(pausedAt), pause)
	}
	t.Logf("healthy walls delivered on A %v after they were asked for, %v into the %v pause", time.Since(askedAt), time.Since(pausedAt), pause)
	for _, w := range fresh {
		if got := a.hub.Wall(w).Last(); got != 0 {
			t.Fatalf("%s on A holds seq %d while its master is paused: the pause did not hold", w, got)
		}
	}

	syncs.Wait()
	for time.Since(pausedAt) < pause {
		time.Sleep(50 * time.Millisecond)
	}
	for _, w := range onStalled {
		postRetrying(t, b, w, w+" after", 10*time.Second)
		posted[w]++
	}
	nodes := []*redisNode{a, b}
	for _, w := range append(append(onStalled, healthy...), freshHealthy...) {
		checkWall(t, w, nodes, recs[w], posted[w])
	}
}

// TestRedisBrokerHeldWhileRead: on a single Redis, while one wall's
// catch-up read is slow, the messages posted to it meanwhile wait for the
// read and are then delivered once, in order, without a reset, and
// another wall's messages are delivered without waiting for that read.
func TestRedisBrokerHeldWhileRead(t *testing.T) {
	const readDelay = 600 * time.Millisecond
	srv := redistest.Start(t)
	cfg := Config{ResyncInterval: 200 * time.Millisecond}
	var slow atomic.Bool // armed: reads of the wall "slow" take readDelay
	a := startNodeWith(t, srv.Client(), 500, cfg, func(b *Broker) {
		b.readHook = func(w string) {
			if w == "slow" && slow.Load() {
				time.Sleep(readDelay)
			}
		}
	})
	b := startNode(t, srv, 500)
	recs := map[string][]*recorder{}
	posted := map[string]uint64{}
	for _, w := range []string{"slow", "other"} {
		recs[w] = []*recorder{subscribe(a.hub, w), subscribe(b.hub, w)}
		postNext(t, b, posted, w)
		eventually(t, 5*time.Second, "A applied "+w, func() bool { return a.hub.Wall(w).Last() == 1 })
	}

	slow.Store(true)
	a.b.markDirty("slow") // a read of the wall, slow: in flight while B posts
	time.Sleep(20 * time.Millisecond)
	readAt := time.Now()
	for range 10 {
		postNext(t, b, posted, "slow")
		postNext(t, b, posted, "other")
	}
	eventually(t, readDelay/2, "A delivered the other wall's posts during the slow wall's read", func() bool {
		r := recs["other"][0]
		r.mu.Lock()
		defer r.mu.Unlock()
		return uint64(len(r.seqs)) == posted["other"]
	})
	if d := time.Since(readAt); d >= readDelay {
		t.Fatalf("the other wall was delivered %v after the read began, not during it", d)
	}
	if got := a.hub.Wall("slow").Last(); got != 1 {
		t.Errorf("the slow wall applied seq %d while its read was in flight; want its messages held", got)
	}
	nodes := []*redisNode{a, b}
	for _, w := range []string{"slow", "other"} {
		checkWall(t, w, nodes, recs[w], posted[w])
	}
}

// postNext posts the next numbered message of wallName through n and
// counts it in posted.
func postNext(t *testing.T, n *redisNode, posted map[string]uint64, wallName string) {
	t.Helper()
	if _, err := post(t, n, wallName, fmt.Sprintf("%s #%d", wallName, posted[wallName]+1)); err != nil {
		t.Fatalf("post to %s: %v", wallName, err)
	}
	posted[wallName]++
}
