package redisbroker

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"wall/wall"
	"wall/wall/redistest"
)

// Ready follows Redis: not ready just after start, ready once settled,
// not ready while Redis is away, and after Redis comes back (empty) ready
// only once this instance has caught up, here by restoring its wall into
// Redis. Every call the broker made was observed with its name.
func TestReadyFollowsRedis(t *testing.T) {
	srv := redistest.Start(t)
	var mu sync.Mutex
	ops := map[string]int{}
	hub := wall.NewHub(50)
	b := New(srv.Client(), hub, Config{
		Log:            slog.New(slog.NewTextHandler(io.Discard, nil)),
		Prefix:         "r:",
		ResyncInterval: 100 * time.Millisecond,
		ObserveRedis: func(op string, d time.Duration) {
			if d <= 0 {
				t.Errorf("op %s observed with duration %v", op, d)
			}
			mu.Lock()
			ops[op]++
			mu.Unlock()
		},
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = b.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	if err := b.Ready(context.Background()); err == nil {
		t.Fatal("ready at once after start; want a settling time")
	}
	waitReady := func(what string) time.Duration {
		t.Helper()
		start := time.Now()
		for {
			err := b.Ready(context.Background())
			if err == nil {
				return time.Since(start)
			}
			if time.Since(start) > 10*time.Second {
				t.Fatalf("%s: not ready after 10 s: %v", what, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitReady("after start")
	if _, _, err := b.Publish(context.Background(), wall.Post{Wall: "main", ID: "", Body: "one"}); err != nil {
		t.Fatal(err)
	}

	srv.Stop()
	err := b.Ready(context.Background())
	if err == nil || !strings.Contains(err.Error(), "unreachable") {
		t.Fatalf("Ready with Redis stopped: %v", err)
	}
	srv.Start() // empty: this instance restores its wall
	if err := b.Ready(context.Background()); err == nil {
		t.Fatal("ready at once after Redis came back; want it to catch up first")
	}
	took := waitReady("after Redis came back")
	if n, err := srv.Client().Exists(context.Background(), "r:{main}:meta").Result(); err != nil || n != 1 {
		t.Fatalf("ready before the wall was restored into Redis: exists %d, %v", n, err)
	}
	t.Logf("ready %v after Redis came back", took.Round(time.Millisecond))

	mu.Lock()
	defer mu.Unlock()
	for _, op := range []string{"fcall wall_publish", "ping"} {
		if ops[op] == 0 {
			t.Errorf("no %q observed; observed %v", op, ops)
		}
	}
}
