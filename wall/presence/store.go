package presence

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Defaults of Config.
const (
	DefaultPrefix   = "wall:presence:"
	DefaultInterval = 2 * time.Second
	DefaultMaxAge   = time.Second
)

// instanceField is the hash field of an instance's own numbers: a space
// starts no wall name.
const instanceField = " instance"

// forgetAfter is how long an instance that stopped reporting stays in the
// set of instances (its hash is long gone) before a writer prunes it.
const forgetAfter = 10 * time.Minute

// Config configures a Store. Zero values take the defaults.
type Config struct {
	Prefix   string        // starts every key; default DefaultPrefix
	Interval time.Duration // how often each instance reports; default DefaultInterval
	// MaxAge is how old a snapshot may be when a reader is served it;
	// default DefaultMaxAge.
	MaxAge time.Duration
	// Addr is the address this instance listens on, shown with its
	// report.
	Addr string
}

// Store reads and writes the reports in Redis. It is safe for concurrent
// use.
type Store struct {
	client redis.UniversalClient
	id     string
	cfg    Config

	fetch sync.Mutex // one snapshot fetch at a time
	mu    sync.Mutex // guards snap
	snap  *Snapshot
}

// New returns a Store over client (a single Redis or a cluster) for the
// instance id (NewID).
func New(client redis.UniversalClient, id string, cfg Config) *Store {
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultPrefix
	}
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.MaxAge <= 0 {
		cfg.MaxAge = DefaultMaxAge
	}
	return &Store{client: client, id: id, cfg: cfg}
}

// ID returns this instance's id.
func (s *Store) ID() string { return s.id }

// Addr returns the address this instance listens on (Config.Addr).
func (s *Store) Addr() string { return s.cfg.Addr }

// Interval returns how often an instance reports.
func (s *Store) Interval() time.Duration { return s.cfg.Interval }

// TTL is how long a report lives: a few intervals, so one late write
// does not make an instance vanish.
func (s *Store) TTL() time.Duration { return s.cfg.Interval * 5 / 2 }

func (s *Store) setKey() string             { return s.cfg.Prefix + "instances" }
func (s *Store) reportKey(id string) string { return s.cfg.Prefix + "{" + id + "}" }

// Publish replaces this instance's report with r (r.ID is set to the
// Store's id).
func (s *Store) Publish(ctx context.Context, r Report) error {
	r.ID = s.id
	self, err := json.Marshal(r.Instance)
	if err != nil {
		return err
	}
	fields := make([]any, 0, 2+2*len(r.ByWall))
	fields = append(fields, instanceField, self)
	for name, w := range r.ByWall {
		fields = append(fields, name, encodeWall(w))
	}
	key := s.reportKey(s.id)
	tx := s.client.TxPipeline()
	tx.Del(ctx, key)
	tx.HSet(ctx, key, fields...)
	tx.PExpire(ctx, key, s.TTL())
	if _, err := tx.Exec(ctx); err != nil {
		return fmt.Errorf("presence: writing the report: %w", err)
	}
	now := time.Now()
	p := s.client.Pipeline()
	p.ZAdd(ctx, s.setKey(), redis.Z{Score: float64(now.UnixMilli()), Member: s.id})
	p.ZRemRangeByScore(ctx, s.setKey(), "-inf", strconv.FormatInt(now.Add(-forgetAfter).UnixMilli(), 10))
	if _, err := p.Exec(ctx); err != nil {
		return fmt.Errorf("presence: listing the instance: %w", err)
	}
	return nil
}

// Remove deletes this instance's report: it no longer counts.
func (s *Store) Remove(ctx context.Context) error {
	p := s.client.Pipeline()
	p.Del(ctx, s.reportKey(s.id))
	p.ZRem(ctx, s.setKey(), s.id)
	_, err := p.Exec(ctx)
	return err
}

// Snapshot is every live instance's last report.
type Snapshot struct {
	Taken   time.Time
	Reports []Report // sorted by ID
}

// Wall sums the reports' numbers for the wall name, leaving out the
// instance skip (the caller's own, counted afresh), and returns the
// highest last seq any reported and how many reports it summed.
func (s *Snapshot) Wall(name, skip string) (c Counts, last uint64, reports int) {
	for _, r := range s.Reports {
		if r.ID == skip {
			continue
		}
		reports++
		w := r.ByWall[name]
		c.Add(w.Counts)
		last = max(last, w.Last)
	}
	return c, last, reports
}

// Snapshot returns the live instances' reports, at most MaxAge old.
func (s *Store) Snapshot(ctx context.Context) (*Snapshot, error) {
	if snap := s.cached(); snap != nil {
		return snap, nil
	}
	s.fetch.Lock()
	defer s.fetch.Unlock()
	if snap := s.cached(); snap != nil { // fetched while this one waited
		return snap, nil
	}
	snap, err := s.read(ctx)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.snap = snap
	s.mu.Unlock()
	return snap, nil
}

func (s *Store) cached() *Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.snap != nil && time.Since(s.snap.Taken) < s.cfg.MaxAge {
		return s.snap
	}
	return nil
}

// read reads the set of instances and their reports in one pipeline.
func (s *Store) read(ctx context.Context) (*Snapshot, error) {
	taken := time.Now()
	ids, err := s.client.ZRange(ctx, s.setKey(), 0, -1).Result()
	if err != nil {
		return nil, fmt.Errorf("presence: listing instances: %w", err)
	}
	snap := &Snapshot{Taken: taken}
	if len(ids) == 0 {
		return snap, nil
	}
	p := s.client.Pipeline()
	cmds := make([]*redis.MapStringStringCmd, len(ids))
	for i, id := range ids {
		cmds[i] = p.HGetAll(ctx, s.reportKey(id))
	}
	if _, err := p.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("presence: reading reports: %w", err)
	}
	for i, cmd := range cmds {
		fields := cmd.Val()
		r, ok := parseReport(fields)
		if !ok || r.ID != ids[i] {
			continue // expired: the instance stopped, or a stray entry
		}
		snap.Reports = append(snap.Reports, r)
	}
	slices.SortFunc(snap.Reports, func(a, b Report) int { return strings.Compare(a.ID, b.ID) })
	return snap, nil
}

// parseReport reads a report's hash; ok is false without the instance's
// own field (the hash expired). Malformed wall fields are skipped.
func parseReport(fields map[string]string) (r Report, ok bool) {
	self, ok := fields[instanceField]
	if !ok || json.Unmarshal([]byte(self), &r.Instance) != nil {
		return r, false
	}
	r.ByWall = make(map[string]Wall, len(fields)-1)
	for k, v := range fields {
		if k == instanceField {
			continue
		}
		if w, ok := decodeWall(v); ok {
			r.ByWall[k] = w
		}
	}
	return r, true
}
