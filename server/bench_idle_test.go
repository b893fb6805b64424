package server

import (
	"testing"
	"time"
)

// BenchmarkIdleWSPong measures what an idle WebSocket's reader costs in
// stack once it has read something, as every connection has after its
// first ping period: 1000 connections each send one pong and go quiet.
// Each iteration is one such round of pongs. The stack per connection
// (both ends; the client end has no goroutine) is reported before the
// first round, and what the rounds added, after a collection: the
// absolute figure moves by a few hundred bytes from run to run with the
// runtime's stack spans, the growth is what a read leaves behind.
func BenchmarkIdleWSPong(b *testing.B) {
	const n = 1000
	e := benchNewEnv(b)
	defer e.close()
	base := benchMemStats()
	conns := benchRampWS(b, e, n) // no client goroutine: the stacks are the server's
	defer func() {
		for _, c := range conns {
			c.Close()
		}
		benchWaitUnsubscribed(b, e.hub)
	}()
	if w := e.hub.Lookup(benchWall); w == nil || w.Subscribers() != n {
		b.Fatalf("want %d subscribers", n)
	}
	idle := benchMemStats()
	pong := []byte{0x8a, 0x80, 1, 2, 3, 4} // masked, empty
	for b.Loop() {
		for _, c := range conns {
			if _, err := c.Write(pong); err != nil {
				b.Fatal(err)
			}
		}
		// A pong has no answer: wait until every reader is parked again.
		time.Sleep(50 * time.Millisecond)
	}
	after := benchMemStats()
	b.ReportMetric(float64(int64(idle.StackInuse)-int64(base.StackInuse))/n, "idle-stack-B/conn")
	b.ReportMetric(float64(int64(after.StackInuse)-int64(idle.StackInuse))/n, "read-growth-B/conn")
}
