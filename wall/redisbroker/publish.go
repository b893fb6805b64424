package redisbroker

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"wall/wall"
)

// This file holds Publish: sequencing a post in Redis (the wall_publish
// function) and waiting until this instance's applier has applied it, and
// the calls into the Lua function library.

// Publish sequences the message in Redis and returns it once this
// instance's applier has applied it (read your writes). If the pub/sub
// stream does not bring it back within redisFillAfter, the applier fills
// the wall from the Redis history. Redis errors wrap ErrUnavailable; the
// sequencing step is atomic, so a failed post stored nothing.
func (b *Broker) Publish(ctx context.Context, wallName, id, body string) (*wall.Message, error) {
	if len(body) > b.cfg.BodyLimit {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", wall.ErrBodyTooLarge, len(body), b.cfg.BodyLimit)
	}
	if b.isStopped() {
		return nil, unavailable(errStopped) // stored nothing: no applier would apply it
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
		if rerr := b.resync(ctx, wallName, seq); errors.Is(rerr, errStopped) {
			err = rerr
		} else {
			m, err = w.WaitApplied(ctx, seq)
		}
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
