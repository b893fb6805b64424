package redisbroker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
)

// This file holds Run, which owns the broker's goroutines, the supervisor
// that turns a panic in one of them into Run's error, and Stats.

// Stats counts the broker's work since New.
type Stats struct {
	Followed int    // walls followed now (with local users, or lingering)
	Live     int    // of those, walls whose subscription is confirmed
	Received uint64 // messages received by pub/sub
	Applied  uint64 // messages applied to the hub's walls (from pub/sub or the history)
	// Unreplicated counts the posts answered before a replica had them
	// (Config.WaitReplica set, and the wait timed out).
	Unreplicated uint64
}

// Stats returns the broker's counters.
func (b *Broker) Stats() Stats {
	s := Stats{Received: b.received.Load(), Applied: b.applied.Load(), Unreplicated: b.unreplicated.Load()}
	b.fol.Lock()
	defer b.fol.Unlock()
	s.Followed = len(b.fol.walls)
	for _, f := range b.fol.walls {
		if f.live {
			s.Live++
		}
	}
	return s
}

// Run follows walls and applies their messages until ctx is done; call it
// once. It owns the applier and the subscription manager (which owns each
// link's goroutine, each link's pub/sub readers and the topology
// reloads), and the history readers the applier starts, and returns after
// all have ended: nil when ctx ended them, an error when one of them
// panicked (see Broker).
func (b *Broker) Run(ctx context.Context) error {
	defer close(b.stopped)
	if err := b.loadLibrary(ctx); err != nil && ctx.Err() == nil {
		b.log.Warn("redis not ready; will retry", "err", err) // reloaded on first use
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sv := &supervisor{log: b.log, cancel: cancel}
	var wg, readers sync.WaitGroup
	wg.Go(sv.guard(ctx, "manager", func(ctx context.Context) { b.manageLoop(ctx, sv) }))
	wg.Go(sv.guard(ctx, "applier", func(ctx context.Context) { b.applyLoop(ctx, sv, &readers) }))
	wg.Wait()
	// The applier has ended, so it starts no reader any more; the readers
	// end with their Redis call (ctx is done: nobody takes their outcome).
	readers.Wait()
	return sv.failed()
}

// supervisor turns a panic in one of the broker's loops into a log line and
// Run's error, and stops the other loops.
type supervisor struct {
	log    *slog.Logger
	cancel context.CancelFunc

	mu  sync.Mutex
	err error
}

// guard returns the root of a loop's goroutine: run(ctx), with a panic
// logged at error with its stack and the loop's name.
func (s *supervisor) guard(ctx context.Context, loop string, run func(context.Context)) func() {
	return func() {
		defer func() {
			v := recover()
			if v == nil {
				return
			}
			s.log.Error("redis broker loop panicked; stopping the broker, the server shuts down",
				"loop", loop, "panic", v, "stack", string(debug.Stack()))
			s.mu.Lock()
			s.err = errors.Join(s.err, fmt.Errorf("redis broker %s panicked: %v", loop, v))
			s.mu.Unlock()
			s.cancel()
		}()
		run(ctx)
	}
}

func (s *supervisor) failed() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// isStopped reports whether Run's goroutines have ended.
func (b *Broker) isStopped() bool {
	select {
	case <-b.stopped:
		return true
	default:
		return false
	}
}
