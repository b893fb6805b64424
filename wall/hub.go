package wall

import (
	"errors"
	"fmt"
	"hash/maphash"
	"math"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// DefaultWall is the wall used when a request names none, so legacy
// clients see one wall exactly as in Tornado's demo.
const DefaultWall = "main"

// MaxNameLen is the longest wall name accepted.
const MaxNameLen = 64

// ErrBadName is returned for wall names that are empty, too long or not
// URL-safe.
var ErrBadName = errors.New("wall name must be 1-64 characters of A-Z a-z 0-9 - _ . ~ :")

// LogName is a wall's name as logs above debug level show it: the part
// after the first ':' names the owner of a private wall (user:<sub>,
// group:<name>, session:<sid>), which is personal data, so it is cut.
func LogName(name string) string {
	if i := strings.IndexByte(name, ':'); i >= 0 {
		return name[:i+1] + "…"
	}
	return name
}

// ValidName reports whether name is a valid wall name: 1–64 bytes of the
// URL-unreserved characters and ':', which separates the prefix of a
// private wall (user:<sub>, group:<name>, session:<sid>) from its owner.
func ValidName(name string) bool {
	if len(name) == 0 || len(name) > MaxNameLen {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9',
			c == '-', c == '_', c == '.', c == '~', c == ':':
		default:
			return false
		}
	}
	return true
}

// Hub is the registry of walls of one instance. Walls are created on first
// use and dropped when they hold nothing (no messages, no users), or
// evicted to keep the caches within a memory budget (budget.go). main
// builds one Hub and passes it down; there is no global registry.
type Hub struct {
	cacheSize int

	mu    sync.Mutex
	walls map[string]*Wall
	clock uint64 // counts Acquire and Release calls: the walls' recency (Wall.used)
	// epoch is given to the walls it creates (set by NewMemoryBroker;
	// empty for a Redis hub, whose walls take Redis's): see epochFor.
	epoch     string
	epochBits uint64
	epochGen  [epochBuckets]uint32 // per bucket of names: walls evicted with messages
	seed      maphash.Seed

	// The memory budget (budget.go).
	budget   atomic.Int64 // bytes; 0 is none
	bytes    atomic.Int64 // accounted
	trimAt   atomic.Int64 // bytes over which a change trims
	trimming atomic.Bool  // a goroutine is trimming
	evicted  atomic.Int64 // walls evicted by the budget
	trimmed  atomic.Int64 // messages dropped by the budget

	done      chan struct{}
	closeOnce sync.Once

	// interestMu serializes the calls to interest (see Interest) and
	// guards interest and told. It is held while calling out, so it is
	// never taken with mu held.
	interestMu sync.Mutex
	interest   Interest
	told       map[string]struct{} // walls interest was last told are active
}

// NewHub returns an empty hub whose walls cache cacheSize messages each.
func NewHub(cacheSize int) *Hub {
	h := &Hub{cacheSize: cacheSize, walls: make(map[string]*Wall), done: make(chan struct{}), seed: maphash.MakeSeed()}
	h.trimAt.Store(math.MaxInt64)
	return h
}

// CacheSize returns the per-wall cache size.
func (h *Hub) CacheSize() int { return h.cacheSize }

// Acquire returns the named wall, creating it if needed, and counts a user
// of it until Release. Callers must have validated the name. The first
// user is told to the Interest, if any, before Acquire returns.
func (h *Hub) Acquire(name string) *Wall {
	h.mu.Lock()
	w := h.getLocked(name)
	w.refs++
	h.clock++
	w.used = h.clock
	first := w.refs == 1
	h.mu.Unlock()
	if first {
		h.settle(name)
	}
	return w
}

// Release ends a use begun by Acquire and drops the wall if it is idle.
// The last user's leaving is told to the Interest, if any.
func (h *Hub) Release(w *Wall) {
	h.mu.Lock()
	w.refs--
	h.clock++
	w.used = h.clock
	last := w.refs == 0
	if w.idle() && h.walls[w.name] == w {
		h.evictLocked(w)
	}
	h.mu.Unlock()
	if last {
		h.settle(w.name)
	}
}

// Wall returns the named wall, creating it if needed, without counting a
// user: an empty wall may be dropped again at any moment. Code that applies
// to a wall uses Acquire and Release instead.
func (h *Hub) Wall(name string) *Wall {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.getLocked(name)
}

// Lookup returns the named wall, or nil if this instance does not hold it.
func (h *Hub) Lookup(name string) *Wall {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.walls[name]
}

// Len returns the number of walls this instance holds.
func (h *Hub) Len() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.walls)
}

// Names returns the names of the walls this instance holds, sorted.
func (h *Hub) Names() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	names := make([]string, 0, len(h.walls))
	for n := range h.walls {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Active returns the walls that have users now (Acquire), in no order.
func (h *Hub) Active() []*Wall {
	h.mu.Lock()
	defer h.mu.Unlock()
	var active []*Wall
	for _, w := range h.walls {
		if w.refs > 0 {
			active = append(active, w)
		}
	}
	return active
}

// getLocked returns or creates a wall. h.mu must be held.
func (h *Hub) getLocked(name string) *Wall {
	w := h.walls[name]
	if w == nil {
		w = newWall(name, h.cacheSize, h.epochFor(name))
		w.hub = h
		h.bytes.Add(wallOverhead)
		h.walls[name] = w
	}
	return w
}

// epochBuckets is how many generations epochFor keeps: a fixed table, so
// that evicting walls costs no memory per name.
const epochBuckets = 1024

// setEpoch gives the hub's walls the numbering epoch from now on (the
// in-process broker's: 16 hex digits). h.mu must be held.
func (h *Hub) setEpoch(epoch string) {
	h.epoch = epoch
	bits, err := strconv.ParseUint(epoch, 16, 64)
	if err != nil {
		bits = maphash.String(h.seed, epoch)
	}
	h.epochBits = bits
}

// epochFor returns the epoch a new wall called name takes: none for a Redis
// hub; else the hub's epoch, unless a wall whose name falls in the same
// bucket was evicted with messages (its history is gone with it): then an
// epoch derived from the bucket's generation, which moves on at every such
// eviction, so a wall created again never numbers in an epoch it used
// before. Another wall of the bucket may change epoch too, which costs its
// readers at most one needless reset. h.mu must be held.
func (h *Hub) epochFor(name string) string {
	if h.epoch == "" {
		return ""
	}
	g := h.epochGen[h.epochBucket(name)]
	if g == 0 {
		return h.epoch
	}
	// An odd multiplier: distinct generations give distinct epochs.
	return fmt.Sprintf("%016x", h.epochBits+uint64(g)*0x9e3779b97f4a7c15)
}

func (h *Hub) epochBucket(name string) int {
	return int(maphash.String(h.seed, name) % epochBuckets)
}

// Done is closed when the hub shuts down: pending polls answer and
// WebSocket connections close.
func (h *Hub) Done() <-chan struct{} { return h.done }

// Close starts the shutdown of every user of the hub. It is idempotent.
func (h *Hub) Close() {
	h.closeOnce.Do(func() { close(h.done) })
}
