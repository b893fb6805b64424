package admit

import (
	"net/http"
	"net/netip"
	"sync"
	"time"
)

// Per-client limits. A client is an address: the peer's, or, when the peer
// is a trusted proxy, the one it names (clientAddr); an IPv6 client is its
// /64, which one host usually has whole. Two limits hold for every client:
//
//   - posts (form posts, WebSocket frame posts) go through a token bucket
//     of PostBurst tokens refilled at PostRate a second; past it, 429 with
//     Retry-After, or an error frame;
//   - held connections (WebSockets, event streams, long-polls while they
//     wait) are at most MaxConns; past it, 429.
//
// The publish API is the backend, known by its token, and is not limited.
// The table of clients is bounded: an entry that holds nothing and whose
// bucket is full is the same as none, and is dropped by a sweep once a
// minute, or sooner when the table is full.

// Limits are the per-client limits admission enforces. The zero value
// enforces none.
type Limits struct {
	// PostRate is the posts a second a client may sustain; 0 for no limit.
	PostRate float64
	// PostBurst is the posts a client may make at once; at least 1.
	PostBurst int
	// MaxConns is the connections a client may hold at once (WebSockets,
	// event streams, waiting long-polls); 0 for no limit.
	MaxConns int
	// TrustedProxies are the peers whose X-Real-IP and X-Forwarded-For
	// name the client (the bundled nginx sets both).
	TrustedProxies []netip.Prefix
}

// Messages of the limits' refusals.
const (
	MsgRateLimited  = "too many posts: slow down"
	MsgTooManyConns = "too many connections from this client"
)

// connRetry is the Retry-After of a refused connection: when one of the
// client's others ends is not known.
const connRetry = 5 * time.Second

// Bounds of the clients table.
const (
	maxClients = 1 << 17
	sweepEvery = time.Minute
)

// clients is the per-client state of the limits, under mu.
type clients struct {
	lim   Limits
	mu    sync.Mutex
	m     map[netip.Addr]*client
	swept time.Time // last sweep
}

// client is one client's bucket and held connections.
type client struct {
	tokens float64   // posts it may make now, as of at
	at     time.Time // when tokens was computed
	conns  int
}

func newClients(lim Limits) *clients {
	if lim.PostBurst < 1 {
		lim.PostBurst = 1
	}
	return &clients{lim: lim, m: make(map[netip.Addr]*client), swept: time.Now()}
}

// enabled reports whether any limit is on.
func (cs *clients) enabled() bool { return cs.lim.PostRate > 0 || cs.lim.MaxConns > 0 }

// refill brings c's bucket up to now.
func (cs *clients) refill(c *client, now time.Time) {
	c.tokens = min(float64(cs.lim.PostBurst), c.tokens+now.Sub(c.at).Seconds()*cs.lim.PostRate)
	c.at = now
}

// idle reports whether c is the same as no entry: nothing held, a full
// bucket.
func (cs *clients) idle(c *client, now time.Time) bool {
	if c.conns > 0 {
		return false
	}
	cs.refill(c, now)
	return cs.lim.PostRate <= 0 || c.tokens >= float64(cs.lim.PostBurst)
}

// get returns key's entry, made if need be, or nil if the table is full of
// clients that hold connections (the client then goes unlimited). cs.mu
// must be held.
func (cs *clients) get(key netip.Addr, now time.Time) *client {
	if c := cs.m[key]; c != nil {
		return c
	}
	if len(cs.m) >= maxClients || now.Sub(cs.swept) > sweepEvery {
		cs.sweep(now)
	}
	if len(cs.m) >= maxClients {
		return nil
	}
	c := &client{tokens: float64(cs.lim.PostBurst), at: now}
	cs.m[key] = c
	return c
}

// sweep drops the idle entries; if the table is still full, it drops
// entries that hold nothing even though their buckets are not full (those
// clients get a fresh burst). cs.mu must be held.
func (cs *clients) sweep(now time.Time) {
	cs.swept = now
	for k, c := range cs.m {
		if cs.idle(c, now) {
			delete(cs.m, k)
		}
	}
	for k, c := range cs.m {
		if len(cs.m) < maxClients*7/8 {
			break
		}
		if c.conns == 0 {
			delete(cs.m, k)
		}
	}
}

// post takes a token from key's bucket, or says how long until one is
// there.
func (cs *clients) post(key netip.Addr) *Error {
	if cs.lim.PostRate <= 0 || !key.IsValid() {
		return nil
	}
	now := time.Now()
	cs.mu.Lock()
	defer cs.mu.Unlock()
	c := cs.get(key, now)
	if c == nil {
		return nil
	}
	cs.refill(c, now)
	if c.tokens >= 1 {
		c.tokens--
		return nil
	}
	wait := time.Duration((1 - c.tokens) / cs.lim.PostRate * float64(time.Second))
	return &Error{Status: http.StatusTooManyRequests, Message: MsgRateLimited, RetryAfter: retrySeconds(wait)}
}

// hold counts a connection of key's against MaxConns.
func (cs *clients) hold(key netip.Addr) (Hold, *Error) {
	if cs.lim.MaxConns <= 0 || !key.IsValid() {
		return Hold{}, nil
	}
	cs.mu.Lock()
	defer cs.mu.Unlock()
	c := cs.get(key, time.Now())
	if c == nil {
		return Hold{}, nil
	}
	if c.conns >= cs.lim.MaxConns {
		return Hold{}, &Error{Status: http.StatusTooManyRequests, Message: MsgTooManyConns, RetryAfter: retrySeconds(connRetry)}
	}
	c.conns++
	return Hold{cs: cs, key: key}, nil
}

// retrySeconds is d as a Retry-After: whole seconds, rounded up, at least 1.
func retrySeconds(d time.Duration) int { return max(1, int((d+time.Second-1)/time.Second)) }

// Hold is a connection counted against a client's MaxConns until
// Release. The zero Hold holds nothing.
type Hold struct {
	cs  *clients
	key netip.Addr
}

// Release ends the hold; further calls do nothing. Every path that got a
// Ticket with a Hold releases it when the connection, or the poll, ends.
func (h *Hold) Release() {
	cs := h.cs
	if cs == nil {
		return
	}
	h.cs = nil
	cs.mu.Lock()
	if c := cs.m[h.key]; c != nil && c.conns > 0 {
		c.conns--
	}
	cs.mu.Unlock()
}

// Held reports whether h holds a connection.
func (h *Hold) Held() bool { return h.cs != nil }
