// Package redisbroker is the Redis implementation of wall.Broker: it
// shares walls between instances, with Redis as the single sequencer of
// each wall (a Function library, see lua.go) and pub/sub to deliver every
// message to every instance through wall.Wall.Apply.
package redisbroker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"wall/wall"
)

// Tuning of the Redis broker. The waits are short because the pub/sub
// stream normally delivers within a millisecond; past them the broker reads
// the Redis history itself.
const (
	redisFillAfter   = 75 * time.Millisecond // Publish: wait for pub/sub this long, then fill from history
	redisSyncWait    = 10 * time.Millisecond // Sync: same, for a cursor minted by another instance
	redisPingEvery   = 2 * time.Second       // pub/sub health check when the stream is idle
	redisQueueLen    = 4096                  // pub/sub messages waiting for the applier
	redisMaxBackoff  = time.Second           // between pub/sub reconnect attempts
	defaultBodyLimit = 16384
)

// errWallGone is the sequencer's answer when Redis lost a wall that the
// caller still holds.
var errWallGone = errors.New("wall missing in redis")

// Config configures a Broker. Zero values take the defaults.
type Config struct {
	// History is the number of messages per wall kept in Redis; default
	// hub.CacheSize(). Gaps up to this size are filled without loss.
	History int
	// BodyLimit is the largest body in bytes; default 16384.
	BodyLimit int
	// Log receives the broker's logs; default slog.Default().
	Log *slog.Logger
	// Prefix starts every key and the channel; default "wall:". Instances
	// with different prefixes on one Redis are separate clusters. It must
	// not contain braces (the wall name is the keys' hash tag).
	Prefix string
	// Timeout bounds the Redis work of one Publish or Sync; default 2s.
	Timeout time.Duration
	// ResyncInterval is the period of the light resync that compares every
	// held wall with Redis; default 1s.
	ResyncInterval time.Duration
}

// Broker shares walls between instances through Redis. Redis is the
// single sequencer of each wall: the Function wall_publish assigns the next
// seq, appends the message to the wall's bounded history and publishes it
// on <prefix>events, in one atomic step and one round trip. Every instance,
// the publisher included, applies messages from that stream through one
// applier goroutine, in seq order; gaps (a dropped pub/sub connection, an
// overflowing queue, a Redis restart) are filled from the history.
//
// A backend publishes into a wall with one command (the id is made up when
// omitted; the library is loaded by any running instance):
//
//	redis-cli FCALL wall_publish 1 'wall:{main}' 'hello from the backend'
//
// The key is the prefix plus the wall name in braces; optional arguments
// after the body are an id (a lowercase UUID4) and the history size. The
// reply is the seq, the epoch and the id. The body is cleaned like any post
// by each instance on receipt.
//
// Ownership: Run owns every goroutine (the pub/sub reader and the applier).
// Only the applier writes to the hub's walls (their epochs included);
// Publish and Sync ask it for a resync and wait for the result.
type Broker struct {
	client redis.UniversalClient
	hub    *wall.Hub
	cfg    Config
	log    *slog.Logger
	lib    string // library source, loaded on start and whenever missing

	msgs  chan *redisEvent // reader -> applier; never blocked on
	reqs  chan resyncReq   // Publish/Sync -> applier
	kick  chan struct{}    // 1-buffered: dirty walls are waiting
	dirty struct {
		sync.Mutex
		all   bool
		walls map[string]struct{}
	}

	mu sync.Mutex // guards emptyAt

	behind map[string]uint64 // wall -> Redis seq seen ahead at the last check; applier only

	// emptyAt remembers, under mu, when a Sync last found a wall empty in
	// Redis too. Within ResyncInterval of that, a Sync of the same empty
	// wall is skipped: anything posted since arrives by pub/sub, or by the
	// periodic check that covers every wall this instance holds. A burst of
	// subscribers to a new wall then costs one Redis read, not one each.
	emptyAt map[string]time.Time

	// served is the set of walls with local users, kept from the hub's
	// Interest calls (WallActive, WallIdle); see Served.
	served struct {
		sync.Mutex
		walls map[string]struct{}
	}

	dropPubSub atomic.Bool // tests: the reader loses every message, as if its connection were down
}

var (
	_ wall.Broker   = (*Broker)(nil)
	_ wall.Interest = (*Broker)(nil)
)

// redisEvent is one message as published by the sequencer.
type redisEvent struct {
	wallName, epoch, id, body string
	seq                       uint64
}

// resyncReq asks the applier to bring a wall up to date with Redis (at
// least to seq target, if known). done (1-buffered) gets the outcome once
// it has tried: nil when the wall now matches Redis.
type resyncReq struct {
	wallName string
	target   uint64
	done     chan error
}

// New returns a broker that delivers into hub through client, and makes
// it the hub's Interest (replacing any other), so it knows which walls this
// instance serves. Start it with Run.
func New(client redis.UniversalClient, hub *wall.Hub, cfg Config) *Broker {
	if cfg.History <= 0 {
		cfg.History = hub.CacheSize()
	}
	if cfg.BodyLimit <= 0 {
		cfg.BodyLimit = defaultBodyLimit
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Prefix == "" {
		cfg.Prefix = "wall:"
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 2 * time.Second
	}
	if cfg.ResyncInterval <= 0 {
		cfg.ResyncInterval = time.Second
	}
	b := &Broker{
		client:  client,
		hub:     hub,
		cfg:     cfg,
		log:     cfg.Log.With("broker", "redis"),
		lib:     redisLibraryCode(cfg.History, cfg.BodyLimit),
		msgs:    make(chan *redisEvent, redisQueueLen),
		reqs:    make(chan resyncReq),
		kick:    make(chan struct{}, 1),
		emptyAt: make(map[string]time.Time),
		behind:  make(map[string]uint64),
	}
	b.dirty.walls = make(map[string]struct{})
	b.served.walls = make(map[string]struct{})
	hub.SetInterest(b)
	return b
}

// WallActive implements wall.Interest: wall name has local users.
func (b *Broker) WallActive(name string) {
	b.served.Lock()
	b.served.walls[name] = struct{}{}
	b.served.Unlock()
}

// WallIdle implements wall.Interest: wall name has no local user left.
func (b *Broker) WallIdle(name string) {
	b.served.Lock()
	delete(b.served.walls, name)
	b.served.Unlock()
}

// Served returns the walls this instance has local users of, sorted: those
// a sharded (Redis Cluster) broker must subscribe to. Every wall the hub
// holds is still checked against Redis by the periodic resync: a wall with
// cached messages and no user keeps its cache, which a returning user reads
// at once, without a sync.
func (b *Broker) Served() []string {
	b.served.Lock()
	defer b.served.Unlock()
	names := make([]string, 0, len(b.served.walls))
	for n := range b.served.walls {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// key returns the key that the library functions take for a wall.
func (b *Broker) key(wallName string) string { return b.cfg.Prefix + "{" + wallName + "}" }

func (b *Broker) channel() string { return b.cfg.Prefix + "events" }

func unavailable(err error) error { return fmt.Errorf("%w: %w", wall.ErrUnavailable, err) }

// Publish sequences the message in Redis and returns it once this
// instance's applier has applied it (read your writes). If the pub/sub
// stream does not bring it back within redisFillAfter, the applier fills
// the wall from the Redis history. Redis errors wrap ErrUnavailable; the
// sequencing step is atomic, so a failed post stored nothing.
func (b *Broker) Publish(ctx context.Context, wallName, id, body string) (*wall.Message, error) {
	if len(body) > b.cfg.BodyLimit {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", wall.ErrBodyTooLarge, len(body), b.cfg.BodyLimit)
	}
	ctx, cancel := context.WithTimeout(ctx, b.cfg.Timeout)
	defer cancel()
	w := b.hub.Acquire(wallName)
	defer b.hub.Release(w)

	held := w.Last() > 0
	seq, epoch, err := b.sequence(ctx, wallName, id, body, held)
	if errors.Is(err, errWallGone) {
		// Redis came back empty: restore the wall from this cache first so
		// numbering continues, then post.
		b.resync(ctx, wallName, 0)
		seq, epoch, err = b.sequence(ctx, wallName, id, body, true)
	}
	if err != nil {
		if errors.Is(err, wall.ErrBodyTooLarge) {
			return nil, err
		}
		return nil, unavailable(err)
	}
	if w.Epoch() != epoch {
		b.resync(ctx, wallName, 0) // the applier switches epochs before we wait on seq
	}
	wctx, wcancel := context.WithTimeout(ctx, redisFillAfter)
	m, err := w.WaitApplied(wctx, seq)
	wcancel()
	if err != nil && ctx.Err() == nil {
		b.resync(ctx, wallName, seq)
		m, err = w.WaitApplied(ctx, seq)
	}
	if err != nil {
		return nil, unavailable(fmt.Errorf("message %s sequenced as %d but not applied yet: %w", id, seq, err))
	}
	switch {
	case m == nil: // applied and already evicted by newer posts
		m = wall.NewMessage(id, seq, epoch, body)
	case id != "" && m.ID != id: // another epoch took over meanwhile
		return nil, unavailable(fmt.Errorf("message %s (seq %d) was replaced by a new epoch", id, seq))
	}
	return m, nil
}

// sequence runs wall_publish and returns the assigned seq and epoch.
func (b *Broker) sequence(ctx context.Context, wallName, id, body string, held bool) (uint64, string, error) {
	h := "0"
	if held {
		h = "1"
	}
	v, err := b.fcall(ctx, "wall_publish", wallName, body, id, b.cfg.History, h)
	if err != nil {
		msg := err.Error()
		switch {
		case strings.HasPrefix(msg, "WALLGONE"):
			return 0, "", errWallGone
		case strings.HasPrefix(msg, "TOOLARGE"):
			return 0, "", fmt.Errorf("%w: %s", wall.ErrBodyTooLarge, msg)
		}
		return 0, "", err
	}
	r, ok := v.([]any)
	if !ok || len(r) != 3 {
		return 0, "", fmt.Errorf("wall_publish: unexpected reply %v", v)
	}
	seq, _ := r[0].(int64)
	epoch, _ := r[1].(string)
	if seq <= 0 || epoch == "" {
		return 0, "", fmt.Errorf("wall_publish: unexpected reply %v", v)
	}
	return uint64(seq), epoch, nil
}

// fcall calls a library function on the wall's key, loading the library
// if Redis does not have it (first start, or Redis restarted).
func (b *Broker) fcall(ctx context.Context, fn, wallName string, args ...any) (any, error) {
	keys := []string{b.key(wallName)}
	v, err := b.client.FCall(ctx, fn, keys, args...).Result()
	if err != nil && strings.Contains(err.Error(), "Function not found") {
		if err = b.loadLibrary(ctx); err == nil {
			v, err = b.client.FCall(ctx, fn, keys, args...).Result()
		}
	}
	return v, err
}

func (b *Broker) loadLibrary(ctx context.Context) error {
	if err := b.client.FunctionLoadReplace(ctx, b.lib).Err(); err != nil {
		return fmt.Errorf("loading the wall function library: %w", err)
	}
	return nil
}

// Sync catches this instance up to cursor c, which may have been minted by
// another instance a moment ago. A seq cursor ahead of the wall waits
// briefly for the pub/sub stream, then reads the Redis history; an id
// cursor unknown here is looked up in the Redis history first; with no
// cursor, a wall this instance holds no message of is loaded from the
// history; a cursor of an epoch this instance does not hold loads the
// wall's current epoch from Redis. Sync returns nil when caught up or when
// the cursor is unknown to Redis too (the poll then answers the whole cache with reset), and
// ErrUnavailable when Redis could not tell.
func (b *Broker) Sync(ctx context.Context, wallName string, c wall.Cursor) error {
	w := b.hub.Acquire(wallName)
	defer b.hub.Release(w)
	if w.Has(c) && w.Last() > 0 {
		return nil
	}
	if !c.Set && w.Last() == 0 && b.knownEmpty(wallName) {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, b.cfg.Timeout)
	defer cancel()
	if !c.Set {
		b.resync(ctx, wallName, 0)
		b.noteEmpty(wallName, w)
		return nil
	}
	if c.Epoch != "" && c.Epoch != w.Epoch() {
		// Another numbering: Redis may hold a newer epoch than this
		// instance has loaded (it lost the wall and a peer started anew).
		// Load it; a cursor still foreign afterwards is from an epoch
		// that is gone, and the caller answers it with a reset.
		if err := b.resync(ctx, wallName, 0); err != nil {
			return unavailable(err)
		}
		if c.Epoch != w.Epoch() {
			return nil
		}
	}
	seq := c.Seq
	if c.ID != "" {
		score, err := b.client.ZScore(ctx, b.key(wallName)+":ids", c.ID).Result()
		switch {
		case errors.Is(err, redis.Nil):
			if w.Last() == 0 {
				b.resync(ctx, wallName, 0)
				b.noteEmpty(wallName, w)
			}
			return nil // unknown everywhere
		case err != nil:
			return unavailable(err)
		}
		seq = uint64(score)
	}
	if w.Last() >= seq && seq > 0 {
		return nil
	}
	wctx, wcancel := context.WithTimeout(ctx, redisSyncWait)
	_, err := w.WaitApplied(wctx, seq)
	wcancel()
	if err != nil || seq == 0 {
		// A cursor this instance cannot place, and Redis could not be
		// asked: the caller must not take it for unknown (a reset).
		if err := b.resync(ctx, wallName, seq); err != nil {
			return unavailable(err)
		}
	}
	return nil
}

// knownEmpty reports whether a Sync found wall empty in Redis within the
// last ResyncInterval.
func (b *Broker) knownEmpty(wallName string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	t, ok := b.emptyAt[wallName]
	return ok && time.Since(t) < b.cfg.ResyncInterval
}

// noteEmpty records that w is still empty after a resync.
func (b *Broker) noteEmpty(wallName string, w *wall.Wall) {
	if w.Last() != 0 {
		return
	}
	b.mu.Lock()
	b.emptyAt[wallName] = time.Now()
	b.mu.Unlock()
}

// pruneEmpty forgets the empty marks that have expired; the applier calls
// it with each periodic check, so the map holds at most the walls synced
// in one interval.
func (b *Broker) pruneEmpty() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for n, t := range b.emptyAt {
		if time.Since(t) >= b.cfg.ResyncInterval {
			delete(b.emptyAt, n)
		}
	}
}

// resync asks the applier to bring wall up to date and waits until it has
// tried, or ctx ends. It returns nil when the wall matches Redis.
func (b *Broker) resync(ctx context.Context, wallName string, target uint64) error {
	r := resyncReq{wallName: wallName, target: target, done: make(chan error, 1)}
	select {
	case b.reqs <- r:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-r.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// markDirty schedules a resync of wall ("" for every wall) without
// blocking; the reader uses it when it cannot hand a message over.
func (b *Broker) markDirty(wallName string) {
	b.dirty.Lock()
	if wallName == "" {
		b.dirty.all = true
	} else {
		b.dirty.walls[wallName] = struct{}{}
	}
	b.dirty.Unlock()
	select {
	case b.kick <- struct{}{}:
	default:
	}
}

// Run subscribes and applies messages until ctx is done. It owns the
// pub/sub reader and the applier goroutines and returns after both ended.
func (b *Broker) Run(ctx context.Context) error {
	if err := b.loadLibrary(ctx); err != nil && ctx.Err() == nil {
		b.log.Warn("redis not ready; will retry", "err", err) // reloaded on first use
	}
	var wg sync.WaitGroup
	wg.Go(func() { b.readLoop(ctx) })
	wg.Go(func() { b.applyLoop(ctx) })
	wg.Wait()
	return nil
}
