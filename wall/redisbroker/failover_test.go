package redisbroker

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"wall/wall"
	"wall/wall/redistest"
)

// loseTail makes Redis forget the wall's messages after seq keep, as a
// failover to a replica that had not received them does; with backend, a
// backend's post then takes the next seq in the same atomic step, before
// any instance could notice.
func loseTail(t *testing.T, admin *redis.Client, wallName string, keep uint64, backend string) {
	t.Helper()
	key := "t:{" + wallName + "}"
	ctx := context.Background()
	_, err := admin.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.ZRemRangeByScore(ctx, key+":log", "("+strconv.FormatUint(keep, 10), "+inf")
		p.ZRemRangeByScore(ctx, key+":ids", "("+strconv.FormatUint(keep, 10), "+inf")
		p.HSet(ctx, key+":meta", "seq", keep)
		if backend != "" {
			p.FCall(ctx, "wall_publish", []string{key}, backend)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func redisSeq(admin *redis.Client, wallName string) string {
	s, _ := admin.HGet(context.Background(), "t:{"+wallName+"}:meta", "seq").Result()
	return s
}

// TestRedisBrokerLostTail: Redis loses the newest messages of a wall two
// instances follow (a failover to a replica that missed them). A post
// through an instance is refused by the sequencer (WALLBEHIND) until the
// instance has restored them, and without any post the periodic check
// restores them: numbering continues, nothing is lost or repeated, no
// subscriber is reset.
func TestRedisBrokerLostTail(t *testing.T) {
	srv := redistest.Start(t)
	admin := srv.Client()
	a, b := startNode(t, srv, 100), startNode(t, srv, 100)
	ra, rb := subscribe(a.hub, "tail"), subscribe(b.hub, "tail")
	postMany(t, []*redisNode{a, b}, "tail", 1, 10)
	eventually(t, 2*time.Second, "20 on both", func() bool {
		return a.hub.Wall("tail").Last() == 20 && b.hub.Wall("tail").Last() == 20
	})
	epoch := a.hub.Wall("tail").Epoch()

	loseTail(t, admin, "tail", 15, "")
	m, err := post(t, a, "tail", "after the loss")
	if err != nil {
		t.Fatal(err)
	}
	if m.Seq != 21 || m.Epoch != epoch {
		t.Fatalf("first post after the loss: seq %d epoch %s, want 21 in %s", m.Seq, m.Epoch, epoch)
	}
	loseTail(t, admin, "tail", 18, "")
	eventually(t, 3*time.Second, "the check restored the tail", func() bool { return redisSeq(admin, "tail") == "21" })
	eventually(t, 2*time.Second, "21 on B", func() bool { return b.hub.Wall("tail").Last() == 21 })
	sameWall(t, a.hub.Wall("tail"), b.hub.Wall("tail"), 21)
	ids, err := admin.ZRange(context.Background(), "t:{tail}:ids", 0, -1).Result()
	if err != nil || len(ids) != 21 {
		t.Fatalf("Redis holds %d ids (%v), want 21", len(ids), err)
	}
	for i, msg := range a.hub.Wall("tail").Messages() {
		if ids[i] != msg.ID {
			t.Fatalf("Redis's message %d is %s, the instances' %s", i+1, ids[i], msg.ID)
		}
	}
	for name, r := range map[string]*recorder{"a": ra, "b": rb} {
		r.checkExactlyOnce(t, name, 21)
		r.mu.Lock()
		if r.resets != 0 {
			t.Errorf("subscriber on %s reset %d times", name, r.resets)
		}
		r.mu.Unlock()
	}
}

// TestRedisBrokerDivergedHistory: Redis lost the newest messages of a
// wall and a backend's post took one of their seqs before any instance
// restored them. The instances cannot continue that numbering without
// reading the reused seq as the message they delivered: the wall moves to
// a new epoch, every subscriber is told (reset, with the new cache), a
// cursor of the old epoch is answered with a reset, and posts go on in the
// new epoch, each once.
func TestRedisBrokerDivergedHistory(t *testing.T) {
	srv := redistest.Start(t)
	admin := srv.Client()
	a, b := startNode(t, srv, 100), startNode(t, srv, 100)
	ra, rb := subscribe(a.hub, "div"), subscribe(b.hub, "div")
	postMany(t, []*redisNode{a, b}, "div", 1, 10)
	eventually(t, 2*time.Second, "20 on both", func() bool {
		return a.hub.Wall("div").Last() == 20 && b.hub.Wall("div").Last() == 20
	})
	old := a.hub.Wall("div").Epoch()

	loseTail(t, admin, "div", 15, "a backend's post at 16")
	eventually(t, 3*time.Second, "a new epoch on both", func() bool {
		wa, wb := a.hub.Wall("div"), b.hub.Wall("div")
		return wa.Epoch() != old && wb.Epoch() == wa.Epoch() && wa.Last() == 16 && wb.Last() == 16
	})
	w := a.hub.Wall("div")
	if ms := w.Messages(); ms[15].Body != "a backend's post at 16" || ms[0].Epoch != w.Epoch() {
		t.Fatalf("the new epoch's cache: %q at 16, epoch %s of %s", ms[15].Body, ms[0].Epoch, w.Epoch())
	}
	for _, r := range []*recorder{ra, rb} {
		r.mu.Lock()
		if r.resets != 1 || len(r.ids) != 16 || r.ids[15] != w.Messages()[15].ID {
			t.Errorf("a subscriber after the divergence: %d resets, %d messages", r.resets, len(r.ids))
		}
		r.mu.Unlock()
	}
	oldCursor := wall.Cursor{Set: true, Seq: 18, Epoch: old}
	if err := b.b.Sync(context.Background(), "div", oldCursor); err != nil {
		t.Fatal(err)
	}
	if res, _ := b.hub.Wall("div").Poll(oldCursor); !res.Reset || len(res.Messages) != 16 {
		t.Fatalf("a cursor of the old epoch: %+v, want the whole cache with reset", res)
	}
	m, err := post(t, b, "div", "in the new epoch")
	if err != nil {
		t.Fatal(err)
	}
	if m.Seq != 17 || m.Epoch != w.Epoch() {
		t.Fatalf("post after the divergence: seq %d epoch %s", m.Seq, m.Epoch)
	}
	eventually(t, 2*time.Second, "17 on A", func() bool { return a.hub.Wall("div").Last() == 17 })
	sameWall(t, a.hub.Wall("div"), b.hub.Wall("div"), 17)
	ra.checkExactlyOnce(t, "a", 17)
	rb.checkExactlyOnce(t, "b", 17)
}
