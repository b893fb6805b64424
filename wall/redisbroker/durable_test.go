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
	// A generous wait: a busy machine must not turn a slow ack into a
	// post answered unreplicated.
	a := startNodeWith(t, srv.Client(), 100, Config{WaitReplica: 3 * time.Second})
	ctx := context.Background()
	rc := replica.Client()
	for i := range 20 {
		m, err := post(t, a, "durable", fmt.Sprintf("m%d", i))
		if err != nil {
			t.Fatal(err)
		}
		// Read from the replica right away: it had the message before
		// the post was answered.
		if _, err := rc.ZScore(ctx, "t:{durable}:ids", m.ID).Result(); err != nil {
			t.Fatalf("post %d answered before the replica had it (%d unreplicated): %v", i, a.b.Stats().Unreplicated, err)
		}
	}
	if st := a.b.Stats(); st.Unreplicated != 0 {
		t.Fatalf("%d posts unreplicated with the replica up", st.Unreplicated)
	}

	replica.Kill()
	b := startNodeWith(t, srv.Client(), 100, Config{WaitReplica: 300 * time.Millisecond})
	start := time.Now()
	if _, err := post(t, b, "durable", "alone"); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Errorf("a post without a replica took %v, want the 300 ms wait", d)
	}
	if st := b.b.Stats(); st.Unreplicated != 1 {
		t.Fatalf("Unreplicated = %d, want 1", st.Unreplicated)
	}
	// An idempotent retry of a stored id stores nothing: no wait counted.
	first := b.hub.Wall("durable").Messages()[0]
	m, stored, err := b.b.Publish(ctx, wall.Post{Wall: "durable", ID: first.ID, Body: "retry"})
	if err != nil || stored || m.Seq != first.Seq || b.b.Stats().Unreplicated != 1 {
		t.Fatalf("retry: %v stored %v %v, unreplicated %d", m, stored, err, b.b.Stats().Unreplicated)
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
