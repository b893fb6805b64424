package outbound

import (
	"time"

	"wall/wall"
)

// expiry is when a session's peer stops being entitled to its messages:
// the instant from which the token it was admitted with is refused. Only
// the sessions of tokens with an exp have one (and a timer).
type expiry struct {
	at    time.Time
	from  int64       // at in Unix milliseconds, rounded up: a message whose Time is from or later was stored after at
	timer *time.Timer // armed by Attach, stopped by Finish
}

// Expire has the session end with TokenExpired at at (the encoder's final
// frame for it goes last): the timer ends an idle session, and a message
// the sequencer stored at at or later ends a busy one as it arrives,
// unsent, whether or not the timer has fired yet. Call it before the
// session subscribes to its wall.
func (s *Session) Expire(at time.Time) { s.exp = newExpiry(at) }

// newExpiry is the expiry at at.
func newExpiry(at time.Time) *expiry {
	from := at.UnixMilli()
	if at.After(time.UnixMilli(from)) {
		from++
	}
	return &expiry{at: at, from: from}
}

// Expired reports whether the session's token is refused by now: the
// reader refuses the peer's posts from then on.
func (s *Session) Expired() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.exp != nil && !time.Now().Before(s.exp.at)
}

// Refresh moves the session's expiry to at, the instant its peer's new
// token is refused, or removes it if at is zero (a token without exp).
// The reader calls it, after Attach, when the peer presents a fresh token
// over the connection. It reports false, and changes nothing, if it comes
// too late: the session is ending, or its expiry has passed or its timer
// fired (the session ends then, whatever the new token). Under s.mu it
// cannot interleave with Send's check of a message against the expiry or
// with the timer's Close: a timer that Stop no longer stops has fired
// and is waiting on s.mu to end the session, so it must not be re-armed.
func (s *Session) Refresh(at time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing || s.done {
		return false
	}
	if s.exp != nil {
		if !time.Now().Before(s.exp.at) {
			return false // the timer is due, or about to be
		}
		if s.exp.timer != nil && !s.exp.timer.Stop() {
			return false
		}
		s.exp = nil
	}
	if !at.IsZero() {
		s.exp = newExpiry(at)
		if s.conn != nil {
			s.armLocked()
		}
	}
	return true
}

// expired reports whether m was stored at or after the expiry.
func (e *expiry) expired(m *wall.Message) bool { return m.Time >= e.from }

// trim drops the messages stored at or after the expiry: in seq order,
// a tail.
func (e *expiry) trim(msgs []*wall.Message) []*wall.Message {
	for i, m := range msgs {
		if e.expired(m) {
			return msgs[:i:i]
		}
	}
	return msgs
}

// armLocked starts the expiry's timer, once the session has its connection.
// An expiry already past fires at once. s.mu must be held.
func (s *Session) armLocked() {
	s.exp.timer = time.AfterFunc(time.Until(s.exp.at), s.expire)
}

// expire is the timer's: the session ends, with what is pending (stored
// before the expiry) before the final frame.
func (s *Session) expire() { s.Close(TokenExpired) }

// expireLocked ends the session for a message stored after the expiry,
// which is not queued. s.mu must be held.
func (s *Session) expireLocked() {
	if !s.closing {
		s.endLocked(TokenExpired)
		s.closing, s.final = true, s.o.Encoder.Close(TokenExpired)
	}
}
