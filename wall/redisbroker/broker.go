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
	"runtime/debug"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"wall/wall"
)

// This file holds the Broker type, its Config and tuning, New, the
// Interest calls from the hub (which walls this instance serves) and Run,
// which owns the broker's two goroutines. The rest of the package:
//
//	publish.go   Publish: sequence in Redis, wait until applied; library calls
//	sync.go      Sync, and how callers ask the applier for work (resync, dirty)
//	readloop.go  the pub/sub reader goroutine
//	apply.go     the applier goroutine, the only writer of the hub's walls
//	resync.go    bringing one wall up to date with Redis (range, replace, restore)
//	payload.go   the sequencer's payload: encoding, parsing, rendering
//	lua.go       the Redis Function library, the single sequencer of every wall

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

// errStopped is Publish's and Sync's answer (wrapped in ErrUnavailable)
// once Run's goroutines have ended: nothing would apply a message.
var errStopped = errors.New("redis broker stopped")

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
	// ObserveRedis, if set, is called after every Redis call the broker
	// makes with its name (a command, "fcall <function>", "pipeline") and
	// how long it took (metrics; see ready.go).
	ObserveRedis func(op string, d time.Duration)
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
//
// A panic in either goroutine is not survived: the two hold the order of
// every wall, and a wall the applier left mid-update (or a poison entry in
// the Redis history, met again on every resync) gives no state to restart
// from that is known to be consistent. The panic is logged at error with
// its stack and the loop's name, the other loop is stopped, and Run
// returns an error, so the process shuts down gracefully and exits
// non-zero; meanwhile Publish and Sync answer ErrUnavailable.
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

	// stopped is closed when Run's goroutines have ended.
	stopped chan struct{}

	health health // the link to Redis, for Ready and ObserveRedis (ready.go)

	dropPubSub atomic.Bool // tests: the reader loses every message, as if its connection were down

	// panicHook, when set by a test before Run, is called by the reader
	// ("reader") for every pub/sub message and by the applier ("applier")
	// before applying one; it panics to test the loops' recovery.
	panicHook func(loop string)
}

var (
	_ wall.Broker   = (*Broker)(nil)
	_ wall.Interest = (*Broker)(nil)
)

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
		stopped: make(chan struct{}),
	}
	b.dirty.walls = make(map[string]struct{})
	b.served.walls = make(map[string]struct{})
	b.health.install(client, cfg.ObserveRedis)
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

// Run subscribes and applies messages until ctx is done; call it once. It
// owns the pub/sub reader and the applier goroutines and returns after both
// ended: nil when ctx ended them, an error when one of them panicked (see
// Broker).
func (b *Broker) Run(ctx context.Context) error {
	defer close(b.stopped)
	if err := b.loadLibrary(ctx); err != nil && ctx.Err() == nil {
		b.log.Warn("redis not ready; will retry", "err", err) // reloaded on first use
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		mu     sync.Mutex
		failed error
	)
	// guard is the root of each loop's goroutine: it turns a panic into
	// the log line and Run's error, and stops the other loop.
	guard := func(loop string, run func(context.Context)) func() {
		return func() {
			defer func() {
				v := recover()
				if v == nil {
					return
				}
				b.log.Error("redis broker loop panicked; stopping the broker, the server shuts down",
					"loop", loop, "panic", v, "stack", string(debug.Stack()))
				mu.Lock()
				failed = errors.Join(failed, fmt.Errorf("redis broker %s panicked: %v", loop, v))
				mu.Unlock()
				cancel()
			}()
			run(ctx)
		}
	}
	var wg sync.WaitGroup
	wg.Go(guard("reader", b.readLoop))
	wg.Go(guard("applier", b.applyLoop))
	wg.Wait()
	return failed
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
