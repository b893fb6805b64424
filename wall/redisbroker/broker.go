// Package redisbroker is the Redis implementation of wall.Broker: it
// shares walls between instances, with Redis (one server, or a Redis
// Cluster) as the single sequencer of each wall (a Function library, see
// lua.go) and per-wall pub/sub to deliver each message, through
// wall.Wall.Apply, to the instances that serve the wall.
package redisbroker

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"wall/wall"
)

// This file holds the Broker type, its Config and tuning, and New. The
// rest of the package:
//
//	run.go       Run, which owns the broker's goroutines, and Stats
//	follow.go    which walls this instance follows: the hub's Interest calls
//	manage.go    the subscription manager: decides what is subscribed where
//	link.go      one pub/sub connection to one Redis node, as the manager sees it
//	linkloop.go  a link's goroutine, which makes its Redis calls, and its reader
//	cluster.go   what differs on a Redis Cluster: routing, topology reloads, the library
//	publish.go   Publish: sequence in Redis, wait until applied; library calls
//	durable.go   the optional wait for a replica after each post (WAIT)
//	sync.go      Sync, and how callers ask the applier for work (resync, dirty)
//	apply.go     the applier goroutine, the only writer of the hub's walls
//	reads.go     the history readers: the applier's Redis reads, per node, off its loop
//	check.go     the periodic comparison of the held walls with Redis, per node
//	resync.go    bringing one wall up to date with Redis (range, replace, restore)
//	payload.go   the sequencer's payload: encoding, parsing, rendering
//	lua.go       the Redis Function library, the single sequencer of every wall

// Tuning of the Redis broker. The waits are short because the pub/sub
// stream normally delivers within a millisecond; past them the broker reads
// the Redis history itself.
const (
	redisFillAfter   = 75 * time.Millisecond  // Publish: wait for pub/sub this long, then fill from history
	redisSyncWait    = 10 * time.Millisecond  // Sync: same, for a cursor minted by another instance
	redisLiveWait    = 250 * time.Millisecond // Publish, Sync: wait this long for a wall's subscription
	redisPingEvery   = 2 * time.Second        // pub/sub health check when a connection is idle
	redisQueueLen    = 4096                   // pub/sub messages waiting for the applier
	redisMaxBackoff  = time.Second            // between pub/sub reconnect attempts
	defaultLinger    = 30 * time.Second
	defaultBodyLimit = 16384
)

// errWallGone is the sequencer's answer when Redis lost a wall that the
// caller still holds; errWallBehind when Redis holds less of it than the
// caller (a failover lost the newest writes).
var (
	errWallGone   = errors.New("wall missing in redis")
	errWallBehind = errors.New("wall behind in redis")
)

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
	// Prefix starts every key and channel; default "wall:". Instances
	// with different prefixes on one Redis are separate clusters. It must
	// not contain braces (the wall name is the keys' hash tag).
	Prefix string
	// Timeout bounds the Redis work of one Publish or Sync; default 2s.
	Timeout time.Duration
	// ResyncInterval is the period of the light resync that compares every
	// held wall with Redis; default 1s.
	ResyncInterval time.Duration
	// Linger is how long the instance keeps following a wall after its
	// last local user left (a page viewed, a poll answered, a post made):
	// a client that comes back within it finds the wall live and cached.
	// Default 30s.
	Linger time.Duration
	// WaitReplica, when positive, makes every post wait until a replica of
	// the wall's master has it (WAIT 1, at most this long) before it is
	// answered, so that an acknowledged post survives a failover. A post
	// still unreplicated at the timeout is answered all the same (every
	// instance has delivered it), counted and logged. Zero: no wait.
	WaitReplica time.Duration
	// ObserveRedis, if set, is called after every Redis call the broker
	// makes with its name (a command, "fcall <function>", "pipeline") and
	// how long it took (metrics; see ready.go).
	ObserveRedis func(op string, d time.Duration)
}

// Broker shares walls between instances through Redis. Redis is the
// single sequencer of each wall: the Function wall_publish assigns the next
// seq, appends the message to the wall's bounded history and publishes it
// on the wall's channel, <prefix>{<wall>}:events, in one atomic step and
// one round trip. On a Redis Cluster the wall's keys and channel share one
// slot, and the message goes out by SPUBLISH from the node that owns it.
//
// An instance follows only the walls it serves (see follow.go): it
// subscribes to a wall's channel when the wall gains a local user, reads
// the history it lacks once the subscription is confirmed, and drops both
// the subscription and the cache Linger after the last user left. Every
// instance that follows a wall, the publisher included, applies its
// messages through one applier goroutine, in seq order; gaps (a dropped
// pub/sub connection, an overflowing queue, a Redis restart or failover)
// are filled from the history.
//
// A backend publishes into a wall with one command (the id is made up when
// omitted; the library is loaded by any running instance):
//
//	redis-cli FCALL wall_publish 1 'wall:{main}' 'hello from the backend'
//
// (redis-cli -c on a cluster). The key is the prefix plus the wall name in
// braces; optional arguments after the body are an id (a lowercase UUID4)
// and the history size. The reply is the seq, the epoch and the id. The
// body is cleaned like any post by each instance on receipt.
//
// Ownership: Run owns the applier and the subscription manager. Only the
// applier writes to the hub's walls (their epochs included); Publish and
// Sync ask it for a resync and wait for the result. Only the manager
// decides what is subscribed where.
//
// The applier makes no Redis call. The reads that catch a wall up (its
// first use here, a gap, a dirty mark, a resync request, the periodic
// check) run on history readers: goroutines the applier starts, at most 4
// at a time per Redis node, each node's in the order asked, which hand
// their outcome back to the applier to apply; Run waits for them. While a
// wall's read is in flight the applier writes nothing to it and holds its
// pub/sub messages, applied after the read's outcome (dropped by seq if
// the read brought them); it starts no second read of the wall, but one
// more after it if something asked meanwhile. So one order per wall holds,
// and a Redis node that stalls without failing (a partitioned master on a
// cluster) delays the walls of its slots only: the others' messages are
// applied as they come, and their reads run in their own nodes' lanes. See
// reads.go.
//
// Nor does the manager. It owns one goroutine per link (one per Redis node
// on a cluster, one on a single Redis: the same code) and gives it orders
// on an unbounded queue, never waiting: open a new connection, subscribe a
// wall, unsubscribe one, close the connection. The link's goroutine carries
// them out in order, each call bounded by Config.Timeout, starts the reader
// of each connection once its first subscribe went out, and reports
// failures; the readers report confirmations, drops and errors; both
// through one channel to the manager, which tags every connection with a
// generation and ignores what comes from an older one. When the manager
// closes a connection it drops the orders for it still queued. Reloads of
// the cluster's slot map that the manager waits for (a node dropped a
// subscription, or answered MOVED) run on a goroutine of their own, one at
// a time; the walls concerned are routed again when one that started after
// they asked has ended. So a wall's subscription is still live only once
// its node confirmed it on the link's current connection, each confirmation
// still marks the wall dirty, and a node that stalls without failing holds
// only its own link's goroutine: the walls of the other nodes are
// subscribed, confirmed and dropped as they come. See manage.go and
// linkloop.go.
//
// A panic in any of these goroutines is not survived: they hold the order
// of every wall, and a wall the applier left mid-update (or a poison entry
// in the Redis history, met again on every resync) gives no state to
// restart from that is known to be consistent. The panic is logged at
// error with its stack and the loop's name, the other loops are stopped,
// and Run returns an error, so the process shuts down gracefully and
// exits non-zero; meanwhile Publish and Sync answer ErrUnavailable.
type Broker struct {
	client  redis.UniversalClient
	cluster *redis.ClusterClient // client, on a Redis Cluster; nil on a single Redis
	hub     *wall.Hub
	cfg     Config
	log     *slog.Logger
	lib     string // library source, loaded on start and whenever missing

	msgs  chan *redisEvent // readers -> applier; never blocked on
	reqs  chan resyncReq   // Publish/Sync -> applier
	kick  chan struct{}    // 1-buffered: dirty walls are waiting
	dirty struct {
		sync.Mutex
		walls map[string]struct{}
	}

	fol     follows        // which walls this instance follows; see follow.go
	subKick chan struct{}  // 1-buffered: the manager has walls to subscribe
	linkEv  chan linkEvent // readers -> manager

	mu sync.Mutex // guards emptyAt

	// emptyAt remembers, under mu, when a Sync last found a wall empty in
	// Redis too. Within ResyncInterval of that, a Sync of the same empty
	// wall is skipped: anything posted since arrives by pub/sub, or by the
	// periodic check that covers every wall this instance holds. A burst of
	// subscribers to a new wall then costs one Redis read, not one each.
	emptyAt map[string]time.Time

	// stopped is closed when Run's goroutines have ended.
	stopped chan struct{}

	applied  atomic.Uint64 // messages applied to the hub's walls; see Stats
	received atomic.Uint64 // messages received by pub/sub; see Stats

	unreplicated      atomic.Uint64 // posts answered before a replica had them; see WaitReplica
	unreplicatedLogAt atomic.Int64  // Unix ns of the last warning about them

	dropPubSub atomic.Bool // tests: the readers lose every message, as if their connections were down

	// subscribeDelay, when set by a test before Run, delays every
	// subscribe a link's goroutine sends: a slow subscription, to test
	// that nothing published meanwhile is lost.
	subscribeDelay time.Duration

	// readHook, when set by a test before Run, is called by a history
	// reader before each catch-up read, with the wall's name; it sleeps to
	// make that wall's read slow.
	readHook func(wallName string)

	health health // the link to Redis, for Ready and ObserveRedis (ready.go)

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
// it the hub's Interest (replacing any other), so it follows the walls
// this instance serves. client is a *redis.ClusterClient on a Redis
// Cluster, anything else talks to a single Redis. Start it with Run.
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
	if cfg.Linger <= 0 {
		cfg.Linger = defaultLinger
	}
	cluster, _ := client.(*redis.ClusterClient)
	b := &Broker{
		client:  client,
		cluster: cluster,
		hub:     hub,
		cfg:     cfg,
		log:     cfg.Log.With("broker", "redis"),
		lib:     redisLibraryCode(cfg.History, cfg.BodyLimit, cluster != nil),
		msgs:    make(chan *redisEvent, redisQueueLen),
		reqs:    make(chan resyncReq),
		kick:    make(chan struct{}, 1),
		subKick: make(chan struct{}, 1),
		linkEv:  make(chan linkEvent, 256),
		emptyAt: make(map[string]time.Time),
		stopped: make(chan struct{}),
	}
	b.dirty.walls = make(map[string]struct{})
	b.fol.walls = make(map[string]*follow)
	b.fol.pending = make(map[string]struct{})
	b.health.install(client, cfg.ObserveRedis)
	hub.SetInterest(b)
	return b
}

// key returns the key that the library functions take for a wall.
func (b *Broker) key(wallName string) string { return b.cfg.Prefix + "{" + wallName + "}" }

// channel returns the wall's pub/sub channel, in the slot of its keys.
func (b *Broker) channel(wallName string) string { return b.key(wallName) + ":events" }

// wallOf returns the wall whose channel ch is, or "".
func (b *Broker) wallOf(ch string) string {
	name, ok := strings.CutPrefix(ch, b.cfg.Prefix+"{")
	if !ok {
		return ""
	}
	name, _ = strings.CutSuffix(name, "}:events")
	return name
}

func unavailable(err error) error { return fmt.Errorf("%w: %w", wall.ErrUnavailable, err) }
