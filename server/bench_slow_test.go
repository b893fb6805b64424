package server

import (
	"bufio"
	"context"
	"fmt"
	"math"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/websocket"

	"wall/server/internal/outbound"
	"wall/wall"
)

// BenchmarkFanoutWSStalled measures what subscribers that stop reading cost
// everyone else: N subscribers, of which a share never read (and keep a
// small receive buffer, so their sockets fill quickly). Each iteration
// posts one 4 KiB message and waits until every reading subscriber has it.
// Reported: the readers' delivery latency percentiles (compare stalled=0%
// with stalled=5%) and how many stalled subscribers were cut off.
func BenchmarkFanoutWSStalled(b *testing.B) {
	for _, pct := range []int{0, 5} {
		b.Run(fmt.Sprintf("N=2000,stalled=%d%%", pct), func(b *testing.B) { benchFanoutStalled(b, 2000, pct) })
	}
}

func benchFanoutStalled(b *testing.B, n, pct int) {
	e := benchNewEnv(b)
	defer e.close()
	stalledN := n * pct / 100
	body := strings.Repeat("s", 4<<10)

	dial := func(stalled bool) websocket.Dialer {
		return websocket.Dialer{HandshakeTimeout: benchWait, NetDial: func(network, addr string) (net.Conn, error) {
			c, err := net.Dial(network, addr)
			if err == nil && stalled {
				err = c.(*net.TCPConn).SetReadBuffer(16 << 10)
			}
			return c, err
		}}
	}
	u := "ws://" + e.addr + "/ws?wall=" + benchWall
	var stalled, live []net.Conn
	for i := range n {
		d := dial(i < stalledN)
		c, resp, err := d.Dial(u, nil)
		if err != nil {
			b.Fatal(err)
		}
		resp.Body.Close()
		if i < stalledN {
			stalled = append(stalled, c.NetConn())
		} else {
			live = append(live, c.NetConn())
		}
	}

	var published atomic.Int64 // UnixNano of the post being delivered
	var hist benchHist
	cnt := benchNewCounter()
	var readers sync.WaitGroup
	for _, c := range live {
		readers.Add(1)
		go func() {
			defer readers.Done()
			benchReadFrames(bufio.NewReaderSize(c, 8<<10), func() {
				hist.add(time.Duration(time.Now().UnixNano() - published.Load()))
				cnt.add(1)
			})
		}()
	}
	defer func() {
		for _, c := range append(live, stalled...) {
			c.Close()
		}
		readers.Wait()
		benchWaitUnsubscribed(b, e.hub)
	}()

	slow0 := e.srv.wsEnded.Load(outbound.SlowReader)
	i := int64(0)
	for b.Loop() {
		i++
		cnt.expect(i * int64(len(live)))
		published.Store(time.Now().UnixNano())
		if _, _, err := e.broker.Publish(context.Background(), wall.Post{Wall: benchWall, ID: uuid.NewString(), Body: body}); err != nil {
			b.Fatal(err)
		}
		cnt.wait(b, "deliveries to the readers")
	}
	b.ReportMetric(hist.quantile(0.50).Seconds()*1e3, "p50-ms")
	b.ReportMetric(hist.quantile(0.99).Seconds()*1e3, "p99-ms")
	b.ReportMetric(float64(e.srv.wsEnded.Load(outbound.SlowReader)-slow0), "cut-off")
}

// benchHist is a lock-free log-linear latency histogram (5% buckets).
type benchHist struct {
	buckets [512]atomic.Int64
}

func benchBucket(d time.Duration) int {
	if d < time.Microsecond {
		return 0
	}
	k := int(math.Log(float64(d)/float64(time.Microsecond)) / math.Log(1.05))
	return min(k+1, 511)
}

func (h *benchHist) add(d time.Duration) { h.buckets[benchBucket(d)].Add(1) }

// quantile returns the upper bound of the bucket holding quantile q.
func (h *benchHist) quantile(q float64) time.Duration {
	var counts [512]int64
	var total int64
	for i := range h.buckets {
		counts[i] = h.buckets[i].Load()
		total += counts[i]
	}
	if total == 0 {
		return 0
	}
	rank := int64(math.Ceil(q * float64(total)))
	var seen int64
	for i, c := range counts {
		seen += c
		if seen >= rank {
			return time.Duration(float64(time.Microsecond) * math.Pow(1.05, float64(i)))
		}
	}
	return 0
}
