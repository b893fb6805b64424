package server

import (
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// BenchmarkIdleWSPong measures what an idle WebSocket's reader costs in
// stack once it has read something, as every connection has after its
// first ping period: 1000 connections each send one pong and go quiet.
// Each iteration is one such round of pongs. The stack per connection
// (both ends; the client end has no goroutine) is reported before the
// first round, after the last, and after a collection.
func BenchmarkIdleWSPong(b *testing.B) {
	const n = 1000
	e := benchNewEnv(b)
	defer e.close()
	base := benchMemStats()
	dialer := websocket.Dialer{HandshakeTimeout: benchWait, ReadBufferSize: 256, WriteBufferSize: 256}
	u := "ws://" + e.addr + "/ws?wall=" + benchWall
	conns := benchRamp(b, n, func() (net.Conn, error) {
		c, resp, err := dialer.Dial(u, nil)
		if err != nil {
			return nil, err
		}
		resp.Body.Close()
		return c.NetConn(), nil // no client goroutine: the stacks are the server's
	})
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
	var read runtime.MemStats
	runtime.ReadMemStats(&read)
	after := benchMemStats()
	perConn := func(ms runtime.MemStats) float64 { return float64(int64(ms.StackInuse)-int64(base.StackInuse)) / n }
	b.ReportMetric(perConn(idle), "idle-stack-B/conn")
	b.ReportMetric(perConn(read), "read-stack-B/conn")
	b.ReportMetric(perConn(after), "read-stack-after-gc-B/conn")
}
