// Package presence shares, through Redis, how many clients each instance
// has on each wall, so that any instance can answer for all of them.
//
// Every instance writes a report of its own every Interval: one hash per
// instance, replaced whole (MULTI: DEL, HSET, PEXPIRE) and expiring after
// a few intervals, holding the instance's own numbers and one field per
// wall that has clients on it. A sorted set lists the instances that
// report. A reader reads the set and every listed hash in one pipeline;
// an instance whose hash expired (it stopped without saying so) is gone
// from the answer within TTL, one that shuts down removes its hash at
// once. Readers share a snapshot at most MaxAge old, so the cost in Redis
// does not grow with the number of readers.
//
// Each instance's hash has a hash tag of its own ({<id>}), so on a Redis
// Cluster the reports spread over the nodes; the set is one key. Neither
// shares a slot with a wall's keys (the broker's wall:{<wall>}...).
package presence

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"strconv"
	"strings"
	"time"
)

// Counts are connected clients per transport.
type Counts struct {
	WebSocket int `json:"websocket"`
	SSE       int `json:"sse"`
	LongPoll  int `json:"longpoll"`
}

// Add adds o to c.
func (c *Counts) Add(o Counts) {
	c.WebSocket += o.WebSocket
	c.SSE += o.SSE
	c.LongPoll += o.LongPoll
}

// Total returns the clients of every transport.
func (c Counts) Total() int { return c.WebSocket + c.SSE + c.LongPoll }

// Instance is what an instance reports about itself.
type Instance struct {
	ID         string    `json:"id"`
	Addr       string    `json:"addr"`     // the address it listens on
	Started    time.Time `json:"started"`  // by its clock
	Reported   time.Time `json:"reported"` // by its clock
	Conns      Counts    `json:"conns"`    // its connections per transport
	Walls      int       `json:"walls"`    // walls it holds (cached or in use)
	PostRate   float64   `json:"post_rate"`
	CacheBytes int64     `json:"cache_bytes"`
	Budget     int64     `json:"cache_budget"`
}

// Wall is an instance's numbers for one wall.
type Wall struct {
	Counts
	Last uint64 // the wall's last seq as the instance has it
}

// Report is one instance's numbers: its own, and those of every wall
// that has clients on it.
type Report struct {
	Instance
	ByWall map[string]Wall
}

// NewID returns an id for this instance: the host name (or "wall") and
// eight random hex digits, so instances on one host differ.
func NewID() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "wall"
	}
	host = strings.Map(func(r rune) rune {
		if r == '{' || r == '}' || r <= ' ' || r > '~' {
			return '-'
		}
		return r
	}, host)
	var b [4]byte
	_, _ = rand.Read(b[:])
	return host + "-" + hex.EncodeToString(b[:])
}

// encodeWall writes a wall's numbers as a hash field's value:
// "<websocket> <sse> <longpoll> <last>".
func encodeWall(w Wall) string {
	b := make([]byte, 0, 24)
	b = strconv.AppendInt(b, int64(w.WebSocket), 10)
	b = append(b, ' ')
	b = strconv.AppendInt(b, int64(w.SSE), 10)
	b = append(b, ' ')
	b = strconv.AppendInt(b, int64(w.LongPoll), 10)
	b = append(b, ' ')
	b = strconv.AppendUint(b, w.Last, 10)
	return string(b)
}

// decodeWall reads what encodeWall wrote; ok is false for anything else.
func decodeWall(s string) (w Wall, ok bool) {
	f := strings.Fields(s)
	if len(f) != 4 {
		return w, false
	}
	var n [3]int
	for i := range n {
		v, err := strconv.Atoi(f[i])
		if err != nil || v < 0 {
			return w, false
		}
		n[i] = v
	}
	last, err := strconv.ParseUint(f[3], 10, 64)
	if err != nil {
		return w, false
	}
	return Wall{Counts: Counts{n[0], n[1], n[2]}, Last: last}, true
}
