package wall

import (
	"errors"
	"sort"
	"strings"
	"sync"
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
// use and dropped when they hold nothing (no messages, no users). main
// builds one Hub and passes it down; there is no global registry.
type Hub struct {
	cacheSize int

	mu    sync.Mutex
	walls map[string]*Wall
	epoch string // given to the walls it creates; set by NewMemoryBroker

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
	return &Hub{cacheSize: cacheSize, walls: make(map[string]*Wall), done: make(chan struct{})}
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
	last := w.refs == 0
	if w.idle() && h.walls[w.name] == w {
		delete(h.walls, w.name)
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

// getLocked returns or creates a wall. h.mu must be held.
func (h *Hub) getLocked(name string) *Wall {
	w := h.walls[name]
	if w == nil {
		w = newWall(name, h.cacheSize, h.epoch)
		h.walls[name] = w
	}
	return w
}

// Done is closed when the hub shuts down: pending polls answer and
// WebSocket connections close.
func (h *Hub) Done() <-chan struct{} { return h.done }

// Close starts the shutdown of every user of the hub. It is idempotent.
func (h *Hub) Close() {
	h.closeOnce.Do(func() { close(h.done) })
}
