package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"wall/wall/redistest"
)

// The Redis Cluster tests run two instances built by run() with
// -redis-cluster on a real Redis Cluster of 3 masters and 3 replicas
// (redistest.StartCluster), with WebSocket, event-stream and long-poll
// clients on both instances.

// wallPoster posts to one wall through clients on each instance in turn,
// retrying a refused post (503, a master failing over) with the same id,
// and records what each post was stored as.
type wallPoster struct {
	t       *testing.T
	clients []*legacyClient
	n       int
	refused atomic.Int64

	mu     sync.Mutex
	posted map[uint64]string // seq -> id
	last   uint64
}

func (p *wallPoster) post(body string) {
	p.t.Helper()
	c := p.clients[p.n%len(p.clients)]
	p.n++
	id := uuid.NewString()
	deadline := time.Now().Add(20 * time.Second)
	for {
		m, status, err := c.postID(body, id)
		switch {
		case err == nil && status == http.StatusOK:
			if m.ID != id {
				p.t.Errorf("post %s answered %s", id, m.ID)
			}
			p.mu.Lock()
			if prev, dup := p.posted[m.Seq]; dup && prev != id {
				p.t.Errorf("%s: seq %d given to %s and %s", c.wall, m.Seq, prev, id)
			}
			p.posted[m.Seq], p.last = id, max(p.last, m.Seq)
			p.mu.Unlock()
			return
		case status == http.StatusServiceUnavailable && time.Now().Before(deadline):
			p.refused.Add(1)
			time.Sleep(50 * time.Millisecond)
		default:
			p.t.Errorf("post to %s via %s: %d %v", c.wall, c.base, status, err)
			return
		}
	}
}

// TestRedisClusterInstances: two instances on a Redis Cluster; on each,
// WebSocket, event-stream and long-poll clients of six walls spread over
// the three masters; posts alternate instances. Every client gets every
// message once, in one order (no gap, no reset): with the cluster intact,
// while every node's pub/sub connections are killed over and over, and
// across the SIGKILL of a master until its replica has taken over, with
// posts going on meanwhile (refused ones retried with their id).
func TestRedisClusterInstances(t *testing.T) {
	c := redistest.StartCluster(t, 3, 1)
	args := []string{"-redis-cluster", strings.Join(c.Addrs(), ","), "-poll-timeout", "5s", "-shutdown-timeout", "5s"}
	bases := []string{}
	for range 2 {
		base, _ := startRun(t, args...)
		bases = append(bases, base)
	}
	walls := make([]string, 6)
	masters := map[string]bool{}
	for i := range walls {
		walls[i] = fmt.Sprintf("rc%d", i)
		m, err := c.MasterOf("wall:{" + walls[i] + "}")
		if err != nil {
			t.Fatal(err)
		}
		masters[m.Addr()] = true
	}
	if len(masters) != 3 {
		t.Fatalf("the walls are on %d masters; pick names that cover all 3", len(masters))
	}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	recs := map[string]map[string]*recorder{} // wall -> client -> recorder
	for _, w := range walls {
		recs[w] = map[string]*recorder{}
		for i, base := range bases {
			ws, lp, sse := &recorder{}, &recorder{}, &recorder{}
			recs[w][fmt.Sprintf("ws-%d", i)] = ws
			recs[w][fmt.Sprintf("poll-%d", i)] = lp
			recs[w][fmt.Sprintf("sse-%d", i)] = sse
			wsSubscriber(base, w, ws, stop, &wg)
			pollSubscriber(base, w, lp, stop, &wg)
			sseSubscriber(base, w, sse, &sseStats{}, stop, &wg)
		}
	}
	defer func() { close(stop); wg.Wait() }()
	// Without a cursor a WebSocket or a stream gets live messages only:
	// let them connect before the first post.
	time.Sleep(500 * time.Millisecond)

	posters := map[string]*wallPoster{}
	for _, w := range walls {
		p := &wallPoster{t: t, posted: map[uint64]string{}}
		for _, base := range bases {
			p.clients = append(p.clients, newLegacyClient(t, base, w))
		}
		posters[w] = p
	}
	// round posts k messages to every wall, or (k = 0) until until is
	// closed, one goroutine per wall.
	round := func(phase string, k int, until <-chan struct{}) {
		var pwg sync.WaitGroup
		for _, w := range walls {
			pwg.Go(func() {
				for i := 0; k == 0 || i < k; i++ {
					if until != nil {
						select {
						case <-until:
							return
						case <-time.After(20 * time.Millisecond):
						}
					}
					posters[w].post(fmt.Sprintf("%s %s #%d", phase, w, i))
				}
			})
		}
		pwg.Wait()
	}
	check := func(phase string) {
		t.Helper()
		for _, w := range walls {
			p := posters[w]
			waitSeen(t, recs[w], p.last, 20*time.Second)
			for name, rec := range recs[w] {
				checkSeen(t, phase+" "+w+" "+name, rec, p.posted, p.last)
			}
		}
	}

	round("plain", 10, nil)
	check("plain")

	killStop := make(chan struct{})
	killed := make(chan int)
	go func() {
		n := 0
		defer func() { killed <- n }()
		for {
			select {
			case <-killStop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			k, _ := c.KillPubSub()
			n += k
		}
	}()
	for range 3 {
		waitFor(t, func() bool { k, _ := c.KillPubSub(); return k > 0 }, 5*time.Second)
		round("pubsub-kills", 5, nil)
	}
	close(killStop)
	t.Logf("killed %d pub/sub connections", <-killed)
	check("pubsub-kills")

	until := make(chan struct{})
	done := make(chan struct{})
	go func() { round("failover", 0, until); close(done) }()
	time.Sleep(200 * time.Millisecond)
	start := time.Now()
	old := c.KillMasterOf("wall:{rc0}")
	nm := c.WaitFailover("wall:{rc0}", old)
	took := time.Since(start)
	time.Sleep(500 * time.Millisecond)
	close(until)
	<-done
	refused := 0
	for _, p := range posters {
		refused += int(p.refused.Load())
	}
	t.Logf("failover %s -> %s in %v; %d posts refused (503) meanwhile and retried", old.Addr(), nm.Addr(), took, refused)
	round("after-failover", 5, nil)
	check("failover")

	// The same cursor means the same answer on both instances.
	for _, w := range walls {
		var bodies [2]string
		for i, base := range bases {
			resp, err := http.Get(base + "/a/message/updates?wall=" + w + "&cursor=3")
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			bodies[i] = string(b)
		}
		if bodies[0] != bodies[1] {
			t.Errorf("%s: the instances answer cursor 3 differently:\n%.300s\n%.300s", w, bodies[0], bodies[1])
		}
	}
}

// TestRedisClusterFlag: -redis-cluster and WALL_REDIS_CLUSTER take seed
// addresses or a cluster URL, -redis-wait and WALL_REDIS_WAIT a duration;
// a bad address, or both -redis and -redis-cluster, is refused at start.
func TestRedisClusterFlag(t *testing.T) {
	env := map[string]string{"WALL_REDIS_CLUSTER": "127.0.0.1:7100,127.0.0.1:7101", "WALL_REDIS_WAIT": "50ms"}
	cfg, err := parseFlags(nil, func(k string) string { return env[k] }, io.Discard)
	if err != nil || cfg.redisCluster != env["WALL_REDIS_CLUSTER"] || cfg.redisWait != 50*time.Millisecond {
		t.Fatalf("WALL_REDIS_CLUSTER, WALL_REDIS_WAIT not applied: %q %v %v", cfg.redisCluster, cfg.redisWait, err)
	}
	var help strings.Builder
	parseFlags([]string{"-help"}, func(string) string { return "" }, &help)
	for _, name := range []string{"WALL_REDIS_CLUSTER", "WALL_REDIS_WAIT"} {
		if !strings.Contains(help.String(), name) {
			t.Errorf("-help does not mention %s", name)
		}
	}
	for _, bad := range [][]string{
		{"-redis-cluster", "127.0.0.1"},
		{"-redis-cluster", "127.0.0.1:7100,"},
		{"-redis-cluster", "127.0.0.1:7100", "-redis", "redis://127.0.0.1:6379/0"},
		{"-redis-cluster", "redis://[::1"},
	} {
		args := append([]string{"-addr", "127.0.0.1:0"}, bad...)
		if err := run(context.Background(), args, func(string) string { return "" }, io.Discard, nil); err == nil || !strings.Contains(err.Error(), "-redis") {
			t.Errorf("run %q: %v, want an error naming the flag", bad, err)
		}
	}
}
