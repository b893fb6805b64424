package redistest

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestCluster forms a 3+3 cluster, checks that sharded pub/sub works on it
// and that KillPubSub cuts sharded subscribers, then kills a master and
// waits for its replica to take over, and restarts the old one.
func TestCluster(t *testing.T) {
	c := StartCluster(t, 3, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cl := c.Client()
	masters := map[string]bool{}
	var mu sync.Mutex
	if err := cl.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
		mu.Lock() // called concurrently
		defer mu.Unlock()
		masters[m.Options().Addr] = true
		return nil
	}); err != nil || len(masters) != 3 {
		t.Fatalf("masters: %v %v", masters, err)
	}

	const ch = "t:{w}:events"
	node, err := cl.MasterForKey(ctx, ch)
	if err != nil {
		t.Fatal(err)
	}
	ps := node.SSubscribe(ctx, ch)
	defer ps.Close()
	if m, err := ps.ReceiveTimeout(ctx, time.Second); err != nil || m.(*redis.Subscription).Kind != "ssubscribe" {
		t.Fatalf("ssubscribe confirmation: %v %v", m, err)
	}
	if err := cl.SPublish(ctx, ch, "hello").Err(); err != nil {
		t.Fatal(err)
	}
	if m, err := ps.ReceiveTimeout(ctx, time.Second); err != nil || m.(*redis.Message).Payload != "hello" {
		t.Fatalf("smessage: %v %v", m, err)
	}
	if k, err := c.KillPubSub(); err != nil || k != 1 {
		t.Fatalf("KillPubSub killed %d (%v), want the one sharded subscriber", k, err)
	}

	old := c.KillMasterOf(ch)
	if masters[old.Addr()] != true || old.Running() {
		t.Fatalf("killed %s, not a running master", old.Addr())
	}
	start := time.Now()
	nm := c.WaitFailover(ch, old)
	t.Logf("failover of %s to %s took %v", old.Addr(), nm.Addr(), time.Since(start))
	c.Restart(old)
	if m, err := c.MasterOf(ch); err != nil || m != nm {
		t.Fatalf("after the old master rejoined, the master is %v (%v), want %s", m, err, nm.Addr())
	}
	if !strings.Contains(old.Addr(), "127.0.0.1:") {
		t.Fatal(old.Addr())
	}
}
