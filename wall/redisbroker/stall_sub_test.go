package redisbroker

import (
	"fmt"
	"testing"
	"time"

	"wall/wall/redistest"
)

// TestRedisBrokerClusterStalledSubscribe: one master of a 3-master cluster
// drops its pub/sub connections and stalls (CLIENT PAUSE ALL: no answer,
// no failover), so instance A's link to it reconnects into the pause while
// A's walls on it gain new users and have to be subscribed there. Walls on
// the two other masters that then get their first user on A, one after
// the other, are subscribed at once: each of A's new subscribers gets the
// wall's history and what instance B posts right after, well within one
// Redis timeout and all before the pause ends; and a wall there whose
// last user left is dropped when its linger ends. A checks nothing
// periodically in this test (ResyncInterval of a minute), so those
// messages came through the new subscriptions. Once the master answers
// again, every wall on both instances has every message once, in order,
// without a reset.
func TestRedisBrokerClusterStalledSubscribe(t *testing.T) {
	const (
		pause   = 6 * time.Second
		within  = 800 * time.Millisecond // per healthy wall: its first user to B's posts (Redis timeout: 2 s)
		stagger = 300 * time.Millisecond
		linger  = time.Second
	)
	c := redistest.StartCluster(t, 3, 0)
	a := startNodeWith(t, c.Client(), 500, Config{ResyncInterval: time.Minute, Linger: linger})
	b := startNodeWith(t, c.Client(), 500, Config{ResyncInterval: 200 * time.Millisecond})
	stalled := c.Nodes()[0]

	// One wall on the stalled master that A follows before the pause (its
	// link is up), five more new to A during it, and five on the others,
	// plus one there that A stops serving during the pause.
	var onStalled, healthy []string
	for i := 0; len(onStalled) < 6 || len(healthy) < 6; i++ {
		name := fmt.Sprintf("ss%d", i)
		m, err := c.MasterOf("t:{" + name + "}")
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case m == stalled && len(onStalled) < 6:
			onStalled = append(onStalled, name)
		case m != stalled && len(healthy) < 6:
			healthy = append(healthy, name)
		}
	}
	old, fresh := onStalled[0], onStalled[1:]
	leaving, healthy := healthy[0], healthy[1:]

	recs := map[string][]*recorder{} // wall -> A's and B's subscribers
	posted := map[string]uint64{}
	for _, w := range append(onStalled, healthy...) {
		recs[w] = []*recorder{nil, subscribe(b.hub, w)}
		postNext(t, b, posted, w)
		postNext(t, b, posted, w)
	}
	recs[old][0] = subscribe(a.hub, old)
	eventually(t, 5*time.Second, "A applied "+old, func() bool { return a.hub.Wall(old).Last() == posted[old] })
	used := a.hub.Acquire(leaving)
	eventually(t, 5*time.Second, "A subscribed "+leaving, func() bool { return a.b.Stats().Live == 2 })

	c.PauseKillingPubSub(stalled, pause)
	pausedAt := time.Now()
	a.hub.Release(used)                // its linger ends during the pause
	time.Sleep(100 * time.Millisecond) // A's link to the stalled master is reconnecting
	for _, w := range fresh {
		recs[w][0] = subscribe(a.hub, w)
	}

	var slowest time.Duration
	for _, w := range healthy {
		time.Sleep(stagger)
		askedAt := time.Now()
		r := subscribe(a.hub, w)
		recs[w][0] = r
		postNext(t, b, posted, w)
		postNext(t, b, posted, w)
		eventually(t, 2*pause, "A's new subscriber to "+w+" got its history and B's posts", func() bool {
			r.mu.Lock()
			defer r.mu.Unlock()
			return uint64(len(r.seqs)) == posted[w]
		})
		d := time.Since(askedAt)
		slowest = max(slowest, d)
		if d > within {
			t.Errorf("%s (on a healthy master) was delivered on A %v after its first user came, want within %v: it waited for the stalled master", w, d, within)
		}
	}
	eventually(t, 2*linger, "A dropped "+leaving+", whose linger ended", func() bool { return a.hub.Lookup(leaving) == nil })
	a.b.fol.Lock()
	_, still := a.b.fol.walls[leaving]
	a.b.fol.Unlock()
	if still {
		t.Errorf("%s: the cache was dropped, but A still follows the wall", leaving)
	}
	if since := time.Since(pausedAt); since >= pause {
		t.Fatalf("the healthy walls were served on A %v after the pause began, not during its %v", since, pause)
	}
	t.Logf("healthy walls delivered on A at most %v after their first user, %v into the %v pause", slowest, time.Since(pausedAt), pause)
	for _, w := range fresh {
		if got := a.hub.Wall(w).Last(); got != 0 {
			t.Fatalf("%s on A holds seq %d while its master is paused: the pause did not hold", w, got)
		}
	}

	for time.Since(pausedAt) < pause {
		time.Sleep(50 * time.Millisecond)
	}
	for _, w := range onStalled {
		postRetrying(t, b, w, w+" after", 10*time.Second)
		posted[w]++
	}
	for _, w := range healthy {
		postNext(t, b, posted, w)
	}
	nodes := []*redisNode{a, b}
	for _, w := range append(onStalled, healthy...) {
		checkWall(t, w, nodes, recs[w], posted[w])
	}
}
