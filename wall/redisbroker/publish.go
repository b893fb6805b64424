package redisbroker

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"

	"wall/wall"
)

// This file holds Publish: sequencing a post in Redis (the wall_publish
// function) and waiting until this instance's applier has applied it, and
// the calls into the Lua function library.

// Publish sequences the message in Redis and returns it once this
// instance's applier has applied it (read your writes). If the pub/sub
// stream does not bring it back within redisFillAfter, the applier fills
// the wall from the Redis history. A post whose id the wall's history
// still holds is not stored again: the stored message is returned. Redis
// errors wrap ErrUnavailable; the sequencing step is atomic, so a failed
// post stored nothing.
func (b *Broker) Publish(ctx context.Context, p wall.Post) (*wall.Message, bool, error) {
	if len(p.Body) > b.cfg.BodyLimit {
		return nil, false, fmt.Errorf("%w: %d bytes, limit %d", wall.ErrBodyTooLarge, len(p.Body), b.cfg.BodyLimit)
	}
	if b.isStopped() {
		return nil, false, unavailable(errStopped) // stored nothing: no applier would apply it
	}
	ctx, cancel := context.WithTimeout(ctx, b.cfg.Timeout)
	defer cancel()
	// Held for the post: the wall is followed, so its own message comes
	// back by pub/sub once the subscription is live.
	w := b.hub.Acquire(p.Wall)
	defer b.hub.Release(w)
	b.awaitLive(ctx, p.Wall)

	r, err := b.sequence(ctx, p, held(w))
	if errors.Is(err, errWallGone) || errors.Is(err, errWallBehind) {
		// Redis lost the wall, or its newest messages (it came back
		// empty, or failed over to a replica that missed them): restore
		// them from this cache first so numbering continues, then post.
		b.resync(ctx, p.Wall, 0)
		r, err = b.sequence(ctx, p, held(w))
	}
	if err != nil {
		if errors.Is(err, wall.ErrBodyTooLarge) {
			return nil, false, err
		}
		return nil, false, unavailable(err)
	}
	if w.Epoch() != r.epoch {
		b.resync(ctx, p.Wall, 0) // the applier switches epochs before we wait on seq
	}
	wctx, wcancel := context.WithTimeout(ctx, redisFillAfter)
	m, err := w.WaitApplied(wctx, r.seq)
	wcancel()
	if err != nil && ctx.Err() == nil {
		if rerr := b.resync(ctx, p.Wall, r.seq); errors.Is(rerr, errStopped) {
			err = rerr
		} else {
			m, err = w.WaitApplied(ctx, r.seq)
		}
	}
	if err != nil {
		return nil, false, unavailable(fmt.Errorf("message %s sequenced as %d but not applied yet: %w", r.id, r.seq, err))
	}
	switch {
	case m != nil && m.ID != r.id: // another epoch took over meanwhile
		return nil, false, unavailable(fmt.Errorf("message %s (seq %d) was replaced by a new epoch", r.id, r.seq))
	case m != nil:
	case r.stored: // applied and already evicted by newer posts
		m = wall.Build(wall.Message{ID: r.id, Seq: r.seq, Epoch: r.epoch, User: p.User, Time: r.time, Body: p.Body})
	default: // the stored original, evicted here: render it as stored
		e, perr := parsePayload(r.payload)
		if perr != nil {
			return nil, false, unavailable(fmt.Errorf("message %s: %w", r.id, perr))
		}
		m = e.message()
	}
	return m, r.stored, nil
}

// sequenced is what wall_publish answered.
type sequenced struct {
	seq     uint64
	epoch   string
	id      string
	time    int64  // Unix ms, for a new message
	stored  bool   // false: id was in the history
	payload string // the stored original's payload, when not stored
}

// held returns wall_publish's held argument for w: the position of the
// newest message this instance has applied, "0" for none.
func held(w *wall.Wall) string {
	last, epoch := w.Last(), w.Epoch()
	switch {
	case last == 0:
		return "0"
	case epoch == "":
		return "1"
	}
	return strconv.FormatUint(last, 10) + "." + epoch
}

// sequence runs wall_publish.
func (b *Broker) sequence(ctx context.Context, p wall.Post, held string) (sequenced, error) {
	var r sequenced
	v, err := b.publishCall(ctx, p.Wall, p.Body, p.ID, b.cfg.History, held, url.PathEscape(p.User))
	if err != nil {
		msg := err.Error()
		switch {
		case strings.HasPrefix(msg, "WALLGONE"):
			return r, errWallGone
		case strings.HasPrefix(msg, "WALLBEHIND"):
			return r, errWallBehind
		case strings.HasPrefix(msg, "TOOLARGE"):
			return r, fmt.Errorf("%w: %s", wall.ErrBodyTooLarge, msg)
		}
		return r, err
	}
	a, ok := v.([]any)
	if !ok || len(a) < 4 {
		return r, fmt.Errorf("wall_publish: unexpected reply %v", v)
	}
	seq, _ := a[0].(int64)
	r.epoch, _ = a[1].(string)
	r.id, _ = a[2].(string)
	stored, _ := a[3].(int64)
	if seq <= 0 || r.epoch == "" || r.id == "" {
		return r, fmt.Errorf("wall_publish: unexpected reply %v", v)
	}
	r.seq, r.stored = uint64(seq), stored == 1
	if len(a) < 5 {
		return r, fmt.Errorf("wall_publish: unexpected reply %v", v)
	}
	if s, _ := a[4].(string); r.stored {
		r.time, _ = strconv.ParseInt(s, 10, 64)
	} else {
		r.payload = s
	}
	return r, nil
}

// fcall calls a library function on the wall's key, loading the library
// if Redis does not have it (first start, Redis restarted, or on a cluster
// a node that never had it took the wall's slot). A command that could not
// reach Redis has go-redis reload the cluster's topology: its node may
// have failed over.
func (b *Broker) fcall(ctx context.Context, fn, wallName string, args ...any) (any, error) {
	keys := []string{b.key(wallName)}
	v, err := b.client.FCall(ctx, fn, keys, args...).Result()
	if err != nil && strings.Contains(err.Error(), "Function not found") {
		if err = b.loadLibrary(ctx); err == nil {
			v, err = b.client.FCall(ctx, fn, keys, args...).Result()
		}
	}
	var re redis.Error
	if err != nil && !errors.As(err, &re) {
		b.reloadTopology()
	}
	return v, err
}
