package server

import (
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/labstack/echo/v4"

	"wall/server/internal/admit"
	"wall/server/internal/longpoll"
	"wall/wall"
	"wall/wall/presence"
)

// Presence and stats: how many clients each wall has, on this instance
// (read from the walls: their subscribers per transport, where a
// long-poll counts as long as its keep-alive connection last polled the
// wall) and on every instance (Config.Presence: each instance's report in
// Redis, refreshed every Interval). GET /api/walls/<wall> answers for one
// wall, the admin page (admin.go) for all.

// statsInterval is how often this instance samples its post count (and,
// with Config.Presence, reports) when no presence store sets it.
const statsInterval = 2 * time.Second

// stats is what the reporter keeps between ticks.
type stats struct {
	started time.Time
	posts   atomic.Int64  // messages stored through this instance
	done    chan struct{} // closed when the reporter has ended

	mu      sync.Mutex
	samples []postSample // ring: a minute of ticks
	next    int
	full    bool
}

// postSample is the post count at a tick.
type postSample struct {
	at    time.Time
	posts int64
}

func (st *stats) init(interval time.Duration) {
	st.started = time.Now()
	st.done = make(chan struct{})
	st.samples = make([]postSample, int(time.Minute/interval)+1)
}

// sample records the post count now.
func (st *stats) sample(now time.Time) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.samples[st.next] = postSample{now, st.posts.Load()}
	st.next = (st.next + 1) % len(st.samples)
	st.full = st.full || st.next == 0
}

// postRate returns the posts per second stored through this instance
// over the last minute (since start, in the first minute).
func (st *stats) postRate(now time.Time) float64 {
	st.mu.Lock()
	oldest := postSample{st.started, 0}
	if st.full {
		oldest = st.samples[st.next]
	}
	st.mu.Unlock()
	d := now.Sub(oldest.at).Seconds()
	if d <= 0 {
		return 0
	}
	return float64(st.posts.Load()-oldest.posts) / d
}

// interval is how often the reporter ticks.
func (s *Server) statsInterval() time.Duration {
	if s.cfg.Presence != nil {
		return s.cfg.Presence.Interval()
	}
	return statsInterval
}

// runStats is the reporter: every interval it samples the post count
// and, with a presence store, writes this instance's report; at shutdown
// (the hub closing) it removes the report, so the instance stops counting
// at once. Owned by the Server: started by New, waited for by Wait.
func (s *Server) runStats() {
	defer close(s.stats.done)
	defer func() {
		if v := recover(); v != nil { // presence is not worth the process
			s.log.Error("stats reporter panicked; presence stops", "panic", v)
		}
	}()
	interval := s.statsInterval()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	failing := false
	report := func() {
		if s.cfg.Presence == nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), interval)
		err := s.cfg.Presence.Publish(ctx, s.report(time.Now()))
		cancel()
		switch {
		case err != nil && !failing:
			s.log.Warn("presence report not written; other instances miss this one's clients", "err", err)
		case err == nil && failing:
			s.log.Info("presence report written again")
		}
		failing = err != nil
	}
	report()
	for {
		select {
		case now := <-tick.C:
			s.stats.sample(now)
			report()
		case <-s.hub.Done():
			if s.cfg.Presence != nil {
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				if err := s.cfg.Presence.Remove(ctx); err != nil {
					s.log.Debug("presence report not removed; it expires", "err", err)
				}
				cancel()
			}
			return
		}
	}
}

// report returns this instance's numbers now.
func (s *Server) report(now time.Time) presence.Report {
	cs := s.hub.CacheStats()
	r := presence.Report{
		Instance: presence.Instance{Started: s.stats.started, Reported: now, Conns: s.localConns(),
			Walls: cs.Walls, PostRate: s.stats.postRate(now), CacheBytes: cs.Bytes, Budget: cs.Budget},
		ByWall: make(map[string]presence.Wall),
	}
	if s.cfg.Presence != nil {
		r.ID, r.Addr = s.cfg.Presence.ID(), s.cfg.Presence.Addr()
	}
	for _, w := range s.hub.Active() {
		if c := wallClients(w); c.Total() > 0 {
			r.ByWall[w.Name()] = presence.Wall{Counts: c, Last: w.Last()}
		}
	}
	return r
}

// localConns returns this instance's connections per transport; for
// long-polls, the keep-alive connections the engine holds.
func (s *Server) localConns() presence.Counts {
	return presence.Counts{WebSocket: s.streams.Count(wsTransport), SSE: s.streams.Count(sseTransport),
		LongPoll: s.streams.Count(longpoll.Transport)}
}

// wallClients returns w's clients on this instance per transport.
func wallClients(w *wall.Wall) presence.Counts {
	var c presence.Counts
	w.Clients(func(transport string, n int) {
		switch transport {
		case wsTransport:
			c.WebSocket += n
		case sseTransport:
			c.SSE += n
		case longpoll.Transport:
			c.LongPoll += n
		}
	})
	return c
}

// wallStats is the answer of GET /api/walls/<wall>.
type wallStats struct {
	Wall    string          `json:"wall"`
	LastSeq uint64          `json:"last_seq"`
	Epoch   string          `json:"epoch"`
	Clients presence.Counts `json:"clients"`
	// Instances is how many instances' numbers Clients sums: every live
	// one (this one included).
	Instances int `json:"instances"`
	// Partial is set when the other instances' numbers could not be read
	// (Redis away): Clients is this instance's alone.
	Partial bool `json:"partial,omitempty"`
}

// handleWallStats serves GET /api/walls/<wall>: the wall's last seq and
// epoch and its clients on every instance. It is admitted as a read
// (admit.Stats): a private wall answers only its audience.
func (s *Server) handleWallStats(c echo.Context) error {
	a, err := readArgs(c, pollArgsLimit)
	if err != nil {
		return err
	}
	a["wall"] = c.Param("wall") // the path names the wall, not the arguments
	t, aerr := s.admit.Admit(httpSource{c.Request(), a}, admit.Stats)
	if aerr != nil {
		return aerr
	}
	ctx := c.Request().Context()
	w := s.hub.Acquire(t.Wall)
	defer s.hub.Release(w)
	if herr := s.sync(ctx, w, wall.Cursor{}); herr != nil {
		return herr
	}
	at := w.Position()
	st := wallStats{Wall: t.Wall, LastSeq: at.Seq, Epoch: at.Epoch, Clients: wallClients(w), Instances: 1}
	if p := s.cfg.Presence; p != nil {
		snap, err := p.Snapshot(ctx)
		if err != nil {
			s.log.Debug("presence snapshot", "err", err)
			st.Partial = true
		} else {
			others, _, n := snap.Wall(t.Wall, p.ID())
			st.Clients.Add(others)
			st.Instances += n
		}
	}
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.Blob(http.StatusOK, jsonType, b)
}
