package presence

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"wall/wall/redistest"
)

// exercise runs the store's contract on client: reports of several
// instances are summed per wall, a report is replaced whole, one that
// stops being written expires within TTL, and Remove takes an instance
// out at once.
func exercise(t *testing.T, client redis.UniversalClient) {
	ctx := context.Background()
	cfg := Config{Interval: 200 * time.Millisecond, MaxAge: time.Nanosecond}
	stores := make([]*Store, 4)
	for i := range stores {
		stores[i] = New(client, fmt.Sprintf("host-%d", i), cfg)
	}
	for i, s := range stores {
		r := Report{Instance: Instance{Addr: fmt.Sprintf("10.0.0.%d:7000", i), Walls: 3},
			ByWall: map[string]Wall{
				"main":      {Counts: Counts{WebSocket: i + 1, SSE: 1, LongPoll: 2}, Last: uint64(10 + i)},
				"user:mary": {Counts: Counts{SSE: 1}, Last: 4},
			}}
		if err := s.Publish(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	snap, err := stores[0].Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Reports) != 4 || snap.Reports[2].ID != "host-2" || snap.Reports[2].Addr != "10.0.0.2:7000" {
		t.Fatalf("reports %+v", snap.Reports)
	}
	c, last, n := snap.Wall("main", "")
	if c != (Counts{WebSocket: 1 + 2 + 3 + 4, SSE: 4, LongPoll: 8}) || last != 13 || n != 4 {
		t.Fatalf("main: %+v last %d over %d", c, last, n)
	}
	if c, _, n := snap.Wall("main", "host-0"); c.WebSocket != 9 || n != 3 {
		t.Fatalf("main without host-0: %+v over %d", c, n)
	}
	if c, _, _ := snap.Wall("nobody", ""); c.Total() != 0 {
		t.Fatalf("a wall without clients: %+v", c)
	}

	// A report is replaced whole: a wall whose clients left is gone.
	if err := stores[1].Publish(ctx, Report{ByWall: map[string]Wall{"other": {Counts: Counts{LongPoll: 1}}}}); err != nil {
		t.Fatal(err)
	}
	// host-3 shuts down; host-2 stops writing (it crashed).
	if err := stores[3].Remove(ctx); err != nil {
		t.Fatal(err)
	}
	snap, _ = stores[0].Snapshot(ctx)
	if c, _, n := snap.Wall("main", ""); c.WebSocket != 1+3 || n != 3 {
		t.Fatalf("after a replace and a remove: main %+v over %d reports", c, n)
	}
	deadline := time.Now().Add(stores[0].TTL() + time.Second)
	for {
		for _, s := range stores[:2] { // the live ones keep reporting
			s.Publish(ctx, Report{ByWall: map[string]Wall{"main": {Counts: Counts{WebSocket: 1}}}})
		}
		snap, _ = stores[0].Snapshot(ctx)
		if len(snap.Reports) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a report not written for TTL+1s is still there: %+v", snap.Reports)
		}
		time.Sleep(cfg.Interval)
	}
	if c, _, _ := snap.Wall("main", ""); c.WebSocket != 2 {
		t.Fatalf("main from the live instances: %+v", c)
	}
}

func TestStore(t *testing.T) {
	srv := redistest.Start(t)
	client := srv.Client()
	defer client.Close()
	exercise(t, client)
}

// TestStoreCluster: the same on a Redis Cluster, where the reports sit in
// slots of their own.
func TestStoreCluster(t *testing.T) {
	c := redistest.StartCluster(t, 3, 0)
	client := c.Client()
	defer client.Close()
	exercise(t, client)
}

// TestSnapshotShared: readers within MaxAge share one snapshot.
func TestSnapshotShared(t *testing.T) {
	srv := redistest.Start(t)
	client := srv.Client()
	defer client.Close()
	ctx := context.Background()
	s := New(client, "a", Config{MaxAge: time.Hour})
	s.Publish(ctx, Report{ByWall: map[string]Wall{"w": {Counts: Counts{SSE: 1}}}})
	first, err := s.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s.Publish(ctx, Report{ByWall: map[string]Wall{"w": {Counts: Counts{SSE: 2}}}})
	if again, _ := s.Snapshot(ctx); again != first {
		t.Fatal("a snapshot within MaxAge was read again")
	}
}

func TestWallEncoding(t *testing.T) {
	w := Wall{Counts: Counts{WebSocket: 3, SSE: 0, LongPoll: 12}, Last: 1 << 40}
	if got, ok := decodeWall(encodeWall(w)); !ok || got != w {
		t.Fatalf("round trip: %+v %v", got, ok)
	}
	for _, bad := range []string{"", "1 2 3", "1 2 3 x", "-1 0 0 0", "1 2 3 4 5"} {
		if _, ok := decodeWall(bad); ok {
			t.Errorf("decodeWall(%q) accepted", bad)
		}
	}
}
