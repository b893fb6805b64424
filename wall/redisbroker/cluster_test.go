package redisbroker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"wall/wall"
	"wall/wall/redistest"
)

// postRetrying publishes one message with a client-chosen id, retrying
// while the broker answers ErrUnavailable (a master failing over), as a
// client that retries with the same id does; it returns the stored
// message and how many attempts were refused.
func postRetrying(t *testing.T, n *redisNode, wallName, body string, d time.Duration) (*wall.Message, int) {
	t.Helper()
	id := uuid.NewString()
	deadline := time.Now().Add(d)
	for refused := 0; ; refused++ {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		m, _, err := n.b.Publish(ctx, wall.Post{Wall: wallName, ID: id, Body: body})
		cancel()
		switch {
		case err == nil:
			if m.ID != id {
				t.Errorf("Publish answered %s, want %s", m.ID, id)
			}
			return m, refused
		case !errors.Is(err, wall.ErrUnavailable) || time.Now().After(deadline):
			t.Fatalf("post to %s: %v", wallName, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// checkWall asserts that every recorder saw seqs 1..n of the wall once, in
// order, with no reset, and that both instances hold the same cache.
func checkWall(t *testing.T, wallName string, nodes []*redisNode, recs []*recorder, n uint64) {
	t.Helper()
	eventually(t, 10*time.Second, "every instance applied "+wallName, func() bool {
		for _, nd := range nodes {
			if nd.hub.Wall(wallName).Last() < n {
				return false
			}
		}
		return true
	})
	for i, r := range recs {
		r.checkExactlyOnce(t, fmt.Sprintf("%s on instance %d", wallName, i), n)
		r.mu.Lock()
		if r.resets > 0 {
			t.Errorf("%s on instance %d: %d resets", wallName, i, r.resets)
		}
		r.mu.Unlock()
	}
	sameWall(t, nodes[0].hub.Wall(wallName), nodes[1].hub.Wall(wallName), n)
}

// TestRedisBrokerCluster runs two instances on a Redis Cluster of 3
// masters and 3 replicas, with subscribers on both to walls spread over
// the masters, posts alternating instances: every message once, in one
// order, on both; then the same while every node's pub/sub connections
// are killed over and over; then across the SIGKILL of the master of one
// wall until its replica takes over, with posts to every wall going on
// (retried with their id while refused): numbering continues, nothing is
// lost or repeated, and no subscriber is reset; then the same while the
// slot of a wall moves to another master.
func TestRedisBrokerCluster(t *testing.T) {
	c := redistest.StartCluster(t, 3, 1)
	cfg := Config{ResyncInterval: 200 * time.Millisecond}
	// The failover and reshard rounds post for as long as they last (a
	// few hundred messages a wall); checkWall compares whole caches, so
	// they hold every message posted.
	const cache = 4000
	nodes := []*redisNode{startNodeWith(t, c.Client(), cache, cfg), startNodeWith(t, c.Client(), cache, cfg)}
	walls := make([]string, 12)
	recs := make(map[string][]*recorder)
	masters := map[string]bool{}
	for i := range walls {
		walls[i] = fmt.Sprintf("c%d", i)
		recs[walls[i]] = []*recorder{subscribe(nodes[0].hub, walls[i]), subscribe(nodes[1].hub, walls[i])}
		m, err := c.MasterOf("t:{" + walls[i] + "}")
		if err != nil {
			t.Fatal(err)
		}
		masters[m.Addr()] = true
	}
	if len(masters) != 3 {
		t.Fatalf("the walls are on %d masters; pick names that cover all 3", len(masters))
	}
	var posted sync.Map // wall -> *atomic.Uint64
	for _, w := range walls {
		posted.Store(w, new(atomic.Uint64))
	}
	// round posts to every wall, alternating instances, one goroutine per
	// wall, k messages each or (k = 0) until stop is closed; it returns the
	// refused attempts.
	round := func(phase string, k int, stop <-chan struct{}) int {
		var refused atomic.Int64
		var wg sync.WaitGroup
		for _, w := range walls {
			wg.Go(func() {
				for i := 0; k == 0 || i < k; i++ {
					if stop != nil {
						select {
						case <-stop:
							return
						default:
						}
					}
					_, r := postRetrying(t, nodes[i%2], w, fmt.Sprintf("%s %s #%d", phase, w, i), 20*time.Second)
					refused.Add(int64(r))
					v, _ := posted.Load(w)
					v.(*atomic.Uint64).Add(1)
					if stop != nil {
						time.Sleep(5 * time.Millisecond)
					}
				}
			})
		}
		wg.Wait()
		return int(refused.Load())
	}
	check := func() {
		t.Helper()
		for _, w := range walls {
			v, _ := posted.Load(w)
			checkWall(t, w, nodes, recs[w], v.(*atomic.Uint64).Load())
		}
	}

	round("plain", 10, nil)
	check()

	// Every node's pub/sub connections killed every 20 ms while posting,
	// and before each round (once it finds connections to kill: the last
	// kill's may not be back yet).
	stop := make(chan struct{})
	killed := make(chan int)
	go func() {
		n := 0
		defer func() { killed <- n }()
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			k, _ := c.KillPubSub()
			n += k
		}
	}()
	roundKills := 0
	for range 4 {
		eventually(t, 5*time.Second, "pub/sub connections to kill", func() bool {
			k, err := c.KillPubSub()
			if err != nil {
				t.Fatal(err)
			}
			roundKills += k
			return k > 0
		})
		round("pubsub-kills", 5, nil)
	}
	close(stop)
	t.Logf("killed %d pub/sub connections, %d of them before a round", <-killed+roundKills, roundKills)
	check()

	// The master of c0 dies while every wall is posted to; its replica
	// takes over. The posters go on until a moment after the failover.
	stop = make(chan struct{})
	done := make(chan int)
	go func() { done <- round("failover", 0, stop) }()
	time.Sleep(200 * time.Millisecond)
	start := time.Now()
	old := c.KillMasterOf("t:{c0}")
	nm := c.WaitFailover("t:{c0}", old)
	took := time.Since(start)
	time.Sleep(300 * time.Millisecond)
	close(stop)
	refused := <-done
	t.Logf("failover %s -> %s in %v: %d post attempts refused meanwhile", old.Addr(), nm.Addr(), took, refused)
	round("after-failover", 5, nil)
	check()

	// Resharding: c1's slot moves to another master while every wall is
	// posted to. The old node drops the subscriptions (sunsubscribe) and
	// the instances subscribe on the new one; commands follow ASK/MOVED.
	from, err := c.MasterOf("t:{c1}")
	if err != nil {
		t.Fatal(err)
	}
	var to *redistest.Server
	for _, w := range walls {
		if m, err := c.MasterOf("t:{" + w + "}"); err == nil && m != from && m.Running() {
			to = m
			break
		}
	}
	stop = make(chan struct{})
	done = make(chan int)
	go func() { done <- round("reshard", 0, stop) }()
	time.Sleep(200 * time.Millisecond)
	c.MoveSlot("t:{c1}", to)
	time.Sleep(300 * time.Millisecond)
	close(stop)
	t.Logf("c1's slot moved %s -> %s: %d post attempts refused meanwhile", from.Addr(), to.Addr(), <-done)
	round("after-reshard", 5, nil)
	check()
	eventually(t, 5*time.Second, "both instances subscribed to c1 on its new master", func() bool {
		n, err := c.NodeClient(to).PubSubShardNumSub(context.Background(), "t:{c1}:events").Result()
		return err == nil && n["t:{c1}:events"] == 2
	})
	for _, n := range nodes {
		if st := n.b.Stats(); st.Followed != len(walls) || st.Live != len(walls) {
			t.Errorf("after the failover an instance follows %+v, want all %d walls live", st, len(walls))
		}
	}
}
