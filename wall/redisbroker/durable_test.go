package redisbroker

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"

	"wall/wall"
	"wall/wall/redistest"
)

// TestRedisBrokerWaitReplica: with WaitReplica, a post is answered once
// the replica has it; with the replica gone, after the wait, counted as
// unreplicated but answered (it is delivered all the same).
func TestRedisBrokerWaitReplica(t *testing.T) {
	srv := redistest.Start(t)
	replica := redistest.StartReplica(t, srv)
	a := startNodeWith(t, srv.Client(), 100, Config{WaitReplica: 400 * time.Millisecond})
	ctx := context.Background()
	start0 := time.Now()
	for i := range 20 {
		m, err := post(t, a, "durable", fmt.Sprintf("m%d", i))
		if err != nil {
			t.Fatal(err)
		}
		// Read from the replica right away: it had the message before
		// the post was answered.
		if _, err := replica.Client().ZScore(ctx, "t:{durable}:ids", m.ID).Result(); err != nil {
			t.Fatalf("post %d answered before the replica had it: %v", i, err)
		}
	}
	t.Logf("20 posts in %v", time.Since(start0))
	if st := a.b.Stats(); st.Unreplicated != 0 {
		t.Fatalf("%d posts unreplicated with the replica up", st.Unreplicated)
	}
	replica.Kill()
	start := time.Now()
	if _, err := post(t, a, "durable", "alone"); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 400*time.Millisecond || d > 2*time.Second {
		t.Errorf("a post without a replica took %v, want the 400 ms wait", d)
	}
	if st := a.b.Stats(); st.Unreplicated != 1 {
		t.Fatalf("Unreplicated = %d, want 1", st.Unreplicated)
	}
	// Idempotent retries of a stored id do not wait or count.
	m, _, err := a.b.Publish(ctx, wall.Post{Wall: "durable", ID: a.hub.Wall("durable").Messages()[0].ID, Body: "retry"})
	if err != nil || m.Seq != 1 || a.b.Stats().Unreplicated != 1 {
		t.Fatalf("retry: %v %v, unreplicated %d", m, err, a.b.Stats().Unreplicated)
	}
}

// TestRedisBrokerClusterWaitDurable: on a cluster with WaitReplica, posts
// acknowledged right before their master is killed are all in the
// history of the promoted replica, though no instance is left to restore
// anything from its cache.
func TestRedisBrokerClusterWaitDurable(t *testing.T) {
	c := redistest.StartCluster(t, 3, 1)
	a := startNodeWith(t, c.Client(), 500, Config{WaitReplica: time.Second})
	ctx := context.Background()
	var ids []string
	for i := range 200 {
		id := uuid.NewString()
		if _, _, err := a.b.Publish(ctx, wall.Post{Wall: "dur", ID: id, Body: fmt.Sprintf("m%d", i)}); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	a.stop() // no cache left to restore from
	old := c.KillMasterOf("t:{dur}")
	c.WaitFailover("t:{dur}", old)
	cl := c.Client()
	got, err := cl.ZRange(ctx, "t:{dur}:ids", 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(ids) {
		t.Fatalf("the promoted replica holds %d of %d acknowledged posts", len(got), len(ids))
	}
	for i := range ids {
		if got[i] != ids[i] {
			t.Fatalf("post %d: %s in the history, %s acknowledged", i, got[i], ids[i])
		}
	}
	if st := a.b.Stats(); st.Unreplicated != 0 {
		t.Fatalf("%d posts answered unreplicated", st.Unreplicated)
	}
}
