package outbound

import (
	"strings"
	"testing"
	"time"

	"wall/server/internal/netpoll"
	"wall/wall"
)

// stamped is msg stored by the sequencer at t.
func stamped(seq uint64, body string, t time.Time) *wall.Message {
	m := *msg(seq, body)
	m.Time = t.UnixMilli()
	return wall.Build(m)
}

// An idle session whose token expires ends at the expiry with the
// encoder's final frame for TokenExpired, counted under it; one without
// an expiry is not touched.
func TestSessionExpiresIdle(t *testing.T) {
	f := netpoll.NewFlusher(func(any, []byte) {})
	defer f.Close()
	at := time.Now().Add(300 * time.Millisecond)
	ts := newExpiringSession(t, f, wall.Result{}, at)
	other := newTestSession(t, f, wall.Result{})
	ts.Send(stamped(1, "before", time.Now()))
	got := ts.readAll(t)
	if time.Now().Before(at) {
		t.Errorf("ended %v before the expiry", time.Until(at))
	}
	if !strings.Contains(got, `"body": "before"`) || !strings.HasSuffix(got, "close token_expired\n") {
		t.Fatalf("peer got:\n%s\nwant the message, then the close for token_expired", got)
	}
	ts.waitEnded(t)
	if r := ts.Reason(); r != TokenExpired || ts.opts.Ended.Load(TokenExpired) != 1 {
		t.Fatalf("reason %v, counted %d; want token_expired, once", r, ts.opts.Ended.Load(TokenExpired))
	}
	if !ts.Expired() || other.Expired() {
		t.Error("Expired: want true for the expired session only")
	}
	if r := other.Reason(); r != Live {
		t.Errorf("session without expiry: %v, want live", r)
	}
}

// A message the sequencer stored at or after the expiry is never sent,
// even before the timer fires: it ends the session there, after what was
// stored before; the backlog is cut at the expiry as well.
func TestSessionExpiresOnLateMessage(t *testing.T) {
	// The timer is far off: the messages' own times decide (a sequencer's
	// clock a little ahead of this one).
	at := time.Now().Add(time.Hour)
	backlog := []*wall.Message{stamped(1, "old", at.Add(-time.Second)), stamped(2, "late backlog", at.Add(time.Millisecond))}
	ts := newExpiringSession(t, nil, wall.Result{Messages: backlog}, at)
	ts.Send(stamped(3, "late live", at.Add(time.Millisecond)))
	got := ts.readAll(t)
	if !strings.Contains(got, `"body": "old"`) || strings.Contains(got, "late") ||
		!strings.HasSuffix(got, "close token_expired\n") {
		t.Fatalf("peer got:\n%s\nwant old, then the close for token_expired, nothing stored later", got)
	}
	ts.waitEnded(t)
	if ts.opts.Ended.Load(TokenExpired) != 1 {
		t.Fatalf("counted %d token_expired, want 1", ts.opts.Ended.Load(TokenExpired))
	}
}

// Refresh moves the expiry: the session outlives the first instant and
// ends at the new one. A refresh that comes once the expiry has fired
// changes nothing: the session still ends, for token_expired.
func TestSessionRefreshMovesExpiry(t *testing.T) {
	first := time.Now().Add(200 * time.Millisecond)
	ts := newExpiringSession(t, nil, wall.Result{}, first)
	second := time.Now().Add(600 * time.Millisecond)
	if !ts.Refresh(second) {
		t.Fatal("Refresh before the expiry: false, want true")
	}
	time.Sleep(time.Until(first) + 50*time.Millisecond)
	if ts.Expired() || ts.Reason() != Live {
		t.Fatalf("past the first expiry: expired %v, reason %v; want live", ts.Expired(), ts.Reason())
	}
	ts.Send(stamped(1, "between", time.Now()))
	got := ts.readAll(t)
	if time.Now().Before(second) {
		t.Errorf("ended %v before the refreshed expiry", time.Until(second))
	}
	if !strings.Contains(got, `"body": "between"`) || !strings.HasSuffix(got, "close token_expired\n") {
		t.Fatalf("peer got:\n%s\nwant the message, then the close for token_expired", got)
	}
	ts.waitEnded(t)
	if ts.Refresh(time.Now().Add(time.Hour)) {
		t.Error("Refresh of an ended session: true, want false")
	}
}

// A refresh to a token without exp removes the expiry: no timer, and a
// message stored past the old instant is delivered.
func TestSessionRefreshRemovesExpiry(t *testing.T) {
	first := time.Now().Add(100 * time.Millisecond)
	ts := newExpiringSession(t, nil, wall.Result{}, first)
	if !ts.Refresh(time.Time{}) {
		t.Fatal("Refresh to no expiry: false, want true")
	}
	time.Sleep(time.Until(first) + 100*time.Millisecond)
	ts.Send(stamped(1, "late", time.Now()))
	if ts.Expired() || ts.Reason() != Live {
		t.Fatalf("after the old expiry: expired %v, reason %v; want live", ts.Expired(), ts.Reason())
	}
	ts.Close(Shutdown)
	if got := ts.readAll(t); !strings.Contains(got, `"body": "late"`) {
		t.Fatalf("peer got:\n%s\nwant the message stored after the old expiry", got)
	}
}

// A refresh racing the timer either wins (the session lives on) or loses
// (the session ends for token_expired): never both, never a revived
// session that was told it ended.
func TestSessionRefreshRacesTimer(t *testing.T) {
	for i := 0; i < 20; i++ {
		at := time.Now().Add(2 * time.Millisecond)
		ts := newExpiringSession(t, nil, wall.Result{}, at)
		time.Sleep(time.Until(at))
		ok := ts.Refresh(time.Time{})
		if ok {
			ts.Close(Shutdown)
		}
		got := ts.readAll(t)
		expired := strings.HasSuffix(got, "close token_expired\n")
		if ok == expired {
			t.Fatalf("round %d: Refresh %v, peer got %q", i, ok, got)
		}
	}
}
