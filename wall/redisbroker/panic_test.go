package redisbroker

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"wall/wall"
	"wall/wall/redistest"
)

// syncBuffer is a log destination safe for the broker's goroutines and the
// test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestRedisBrokerLoopPanic: a panic in the reader or the applier is logged
// at error with the loop's name and its stack, stops the other loop, and
// makes Run return an error (main then shuts down and exits non-zero).
// Afterwards Publish and Sync answer ErrUnavailable at once, and Publish
// sequences nothing in Redis.
func TestRedisBrokerLoopPanic(t *testing.T) {
	for _, tc := range []struct{ loop, frame string }{
		{"reader", "readLoop"},
		{"applier", "applyEvent"},
	} {
		t.Run(tc.loop, func(t *testing.T) {
			srv := redistest.Start(t)
			var logs syncBuffer
			b := New(srv.Client(), wall.NewHub(10), Config{
				Log:            slog.New(slog.NewTextHandler(&logs, nil)),
				Prefix:         "t:",
				ResyncInterval: 200 * time.Millisecond,
			})
			var panicked atomic.Bool
			b.panicHook = func(loop string) {
				if loop == tc.loop && panicked.CompareAndSwap(false, true) {
					panic("test panic in the " + loop)
				}
			}
			runErr := make(chan error, 1)
			go func() { runErr <- b.Run(context.Background()) }() // never cancelled: Run must end by itself
			ctx := context.Background()
			// Delivered by pub/sub: the hook panics in the reader, or in the
			// applier. Its outcome depends on timing; what follows does not.
			_, _, _ = b.Publish(ctx, wall.Post{Wall: "main", ID: uuid.NewString(), Body: "boom"})

			select {
			case err := <-runErr:
				want := "redis broker " + tc.loop + " panicked: test panic in the " + tc.loop
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Fatalf("Run returned %v, want an error containing %q", err, want)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("Run did not return after a panic in the " + tc.loop)
			}
			log := logs.String()
			var line string
			for l := range strings.Lines(log) {
				if strings.Contains(l, "panicked") {
					line = l
				}
			}
			for _, want := range []string{"level=ERROR", "loop=" + tc.loop, `panic="test panic in the ` + tc.loop + `"`, "stack=", tc.frame} {
				if !strings.Contains(line, want) {
					t.Errorf("panic log line lacks %q:\n%s", want, log)
				}
			}

			seqBefore, _ := srv.Client().HGet(ctx, "t:{main}:meta", "seq").Result()
			start := time.Now()
			if _, _, err := b.Publish(ctx, wall.Post{Wall: "main", ID: uuid.NewString(), Body: "after"}); !errors.Is(err, wall.ErrUnavailable) || !errors.Is(err, errStopped) {
				t.Errorf("Publish on a stopped broker: %v, want ErrUnavailable (stopped)", err)
			}
			if err := b.Sync(ctx, "main", wall.Cursor{Set: true, Seq: 99}); !errors.Is(err, wall.ErrUnavailable) {
				t.Errorf("Sync on a stopped broker: %v, want ErrUnavailable", err)
			}
			if d := time.Since(start); d > time.Second {
				t.Errorf("Publish and Sync on a stopped broker took %v; want an answer at once", d)
			}
			if seq, _ := srv.Client().HGet(ctx, "t:{main}:meta", "seq").Result(); seq != seqBefore {
				t.Errorf("Publish on a stopped broker sequenced a message: seq %q, was %q", seq, seqBefore)
			}
		})
	}
}
