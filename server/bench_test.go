package server

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/websocket"

	"wall/assets"
	"wall/views"
	"wall/wall"
)

// The fan-out benchmarks run the server as main builds it on a loopback
// listener and drive it with zero-allocation raw clients in the same
// process, so the allocations they report are the server's. Each holds both
// ends of every socket: with the 20,000 open-file limit, N stays ≤ 5000.
//
// Run them with, for example:
//
//	go test -run '^$' -bench 'Fanout|Post|PollResponse' -benchtime 200x -benchmem ./server/
//
// With WALL_BENCH_PROFDIR=<dir> set, each fan-out benchmark also writes
// <dir>/<name>.cpu, a CPU profile of its timed loop only (without the
// connection ramp), and <dir>/<name>.setup.heap, a heap profile taken once
// every connection is up, with MemProfileRate=1 for exact per-site bytes.

const (
	benchWall      = "bench"
	benchWait      = 60 * time.Second // longest any step of a benchmark may take
	benchDialBatch = 200              // connections dialled at once during the ramp
	benchToken     = "benchxsrftoken" // a version-1 XSRF token: cookie and field equal
)

// benchBody is a ~100-byte message body.
var benchBody = strings.Repeat("fan-out benchmark message ", 4)[:100]

// benchEnv is a server built exactly as main builds it, on 127.0.0.1.
type benchEnv struct {
	hub    *wall.Hub
	broker *wall.MemoryBroker
	srv    *Server
	ts     *httptest.Server
	addr   string
}

func benchNewEnv(b *testing.B) *benchEnv {
	b.Helper()
	hub := wall.NewHub(200)
	broker := wall.NewMemoryBroker(hub)
	// The per-client limits on, as in production, but never reached by
	// the benchmark's one client: their cost is measured, not their effect.
	cfg := Config{PostRate: 1e9, PostBurst: 1 << 30, MaxConnsPerClient: 1 << 30}
	srv, err := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), hub, broker, views.FS, assets.FS)
	if err != nil {
		b.Fatal(err)
	}
	// As main serves it: through Listener, so parked polls use the engine.
	ts := httptest.NewUnstartedServer(srv)
	ts.Listener = srv.Listener(ts.Listener)
	ts.Start()
	return &benchEnv{hub: hub, broker: broker, srv: srv, ts: ts, addr: ts.Listener.Addr().String()}
}

// close shuts the server down; clients must have hung up already.
func (e *benchEnv) close() {
	e.hub.Close()
	e.ts.Close()
	e.srv.Wait()
}

// publish posts benchBody to the bench wall through the broker, as the
// post handler does.
func (e *benchEnv) publish(b *testing.B) {
	if _, _, err := e.broker.Publish(context.Background(), wall.Post{Wall: benchWall, ID: uuid.NewString(), Body: benchBody}); err != nil {
		b.Fatal(err)
	}
}

// benchCounter counts deliveries across subscriber goroutines and signals
// the benchmark when the count reaches the target it expects.
type benchCounter struct {
	n      atomic.Int64
	target atomic.Int64
	done   chan struct{} // capacity 1
	timer  *time.Timer
}

func benchNewCounter() *benchCounter {
	t := time.NewTimer(benchWait)
	t.Stop()
	return &benchCounter{done: make(chan struct{}, 1), timer: t}
}

// add counts k deliveries. Called from the client goroutines.
func (c *benchCounter) add(k int64) {
	if k > 0 && c.n.Add(k) == c.target.Load() {
		select {
		case c.done <- struct{}{}:
		default:
		}
	}
}

// expect sets the count to wait for. It must be called before whatever
// causes the deliveries.
func (c *benchCounter) expect(total int64) { c.target.Store(total) }

// wait blocks until the expected count is reached, failing after benchWait.
func (c *benchCounter) wait(b *testing.B, what string) {
	if c.n.Load() >= c.target.Load() {
		select { // drop a signal already sent for this target
		case <-c.done:
		default:
		}
		return
	}
	c.timer.Reset(benchWait)
	select {
	case <-c.done:
		c.timer.Stop()
	case <-c.timer.C:
		b.Fatalf("%s: %d of %d after %v", what, c.n.Load(), c.target.Load(), benchWait)
	}
}

// benchRamp opens n connections with dial, benchDialBatch at a time.
func benchRamp[T any](b *testing.B, n int, dial func() (T, error)) []T {
	b.Helper()
	out := make([]T, n)
	errs := make(chan error, n)
	sem := make(chan struct{}, benchDialBatch)
	var wg sync.WaitGroup
	for i := range out {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			c, err := dial()
			if err != nil {
				errs <- err
				return
			}
			out[i] = c
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		b.Fatalf("dialling %d connections: %v", n, err)
	}
	return out
}

// benchRampWS opens n WebSockets to the bench wall and returns their raw
// connections: from the handshake on frames are read raw, and the gorilla
// client Conn is dropped (nothing was buffered past the handshake: without
// a cursor the server sends nothing until a post), so a client end has no
// goroutine of its own.
func benchRampWS(b *testing.B, e *benchEnv, n int) []net.Conn {
	b.Helper()
	dialer := websocket.Dialer{HandshakeTimeout: benchWait, ReadBufferSize: 256, WriteBufferSize: 256}
	u := "ws://" + e.addr + "/ws?wall=" + benchWall
	return benchRamp(b, n, func() (net.Conn, error) {
		c, resp, err := dialer.Dial(u, nil)
		if err != nil {
			return nil, err
		}
		resp.Body.Close()
		return c.NetConn(), nil
	})
}

// benchCPU returns the CPU time the process has used (user and system).
func benchCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchMemStats returns the memory statistics after a full collection.
func benchMemStats() runtime.MemStats {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms
}

// benchSetup is the memory the ramp cost per connection, both ends
// together (the client end is a net.Conn, a small bufio.Reader and one
// goroutine; the heap profile separates the server's sites).
type benchSetup struct{ heap, stack, goroutines float64 }

func benchMeasureSetup(before, after runtime.MemStats, goroutines0, n int) benchSetup {
	return benchSetup{
		heap:       float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / float64(n),
		stack:      float64(int64(after.StackInuse)-int64(before.StackInuse)) / float64(n),
		goroutines: float64(runtime.NumGoroutine()-goroutines0) / float64(n),
	}
}

// report reports the setup figures; it must run after the timed loop,
// because b.Loop's first call resets the reported metrics.
func (s benchSetup) report(b *testing.B) {
	b.ReportMetric(s.heap, "setup-heap-B/conn")
	b.ReportMetric(s.stack, "setup-stack-B/conn")
	b.ReportMetric(s.goroutines, "setup-goroutines/conn")
}

// benchReportDelivery reports the per-delivery figures of a timed loop that
// delivered deliveries messages, with allocations measured across every
// goroutine (b.ReportAllocs only divides by b.N).
func benchReportDelivery(b *testing.B, before, after runtime.MemStats, deliveries int) {
	d := float64(deliveries)
	el := b.Elapsed()
	b.ReportMetric(d/el.Seconds(), "deliveries/s")
	b.ReportMetric(float64(el.Nanoseconds())/d, "ns/delivery")
	b.ReportMetric(float64(after.Mallocs-before.Mallocs)/d, "allocs/delivery")
	b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/d, "B/delivery")
}

// benchProfDir returns WALL_BENCH_PROFDIR and a file-name stem for b.
func benchProfDir(b *testing.B) (dir, stem string) {
	dir = os.Getenv("WALL_BENCH_PROFDIR")
	stem = strings.NewReplacer("/", "_", "=", "", ",", "_").Replace(b.Name())
	return dir, stem
}

// benchHeapSnapshot writes the live heap to dir/stem.setup.heap.
func benchHeapSnapshot(b *testing.B, dir, stem string) {
	f, err := os.Create(filepath.Join(dir, stem+".setup.heap"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	runtime.GC()
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		b.Fatal(err)
	}
}

// benchStartCPU starts a CPU profile of the timed loop when profiling is
// on; the returned function stops it.
func benchStartCPU(b *testing.B, dir, stem string) func() {
	if dir == "" {
		return func() {}
	}
	f, err := os.Create(filepath.Join(dir, stem+".cpu"))
	if err != nil {
		b.Fatal(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		b.Logf("no timed-loop CPU profile: %v", err) // -cpuprofile is on
		return func() {}
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}
}

// BenchmarkFanoutWS measures one post reaching N WebSocket subscribers: per
// iteration one ~100-byte message is published and the benchmark waits
// until all N subscribers have read its frame. The ",http" variant posts
// through POST /a/message/new instead of calling the broker.
func BenchmarkFanoutWS(b *testing.B) {
	for _, n := range []int{1000, 5000} {
		b.Run(fmt.Sprintf("N=%d", n), func(b *testing.B) { benchFanoutWS(b, n, false) })
	}
	b.Run("N=1000,http", func(b *testing.B) { benchFanoutWS(b, 1000, true) })
}

func benchFanoutWS(b *testing.B, n int, viaHTTP bool) {
	f := benchStartFanout(b)
	e := benchNewEnv(b)
	defer e.close()
	f.baseline()

	conns := benchRampWS(b, e, n)
	cnt := benchNewCounter()
	var readers sync.WaitGroup
	for _, c := range conns {
		readers.Add(1)
		go func() {
			defer readers.Done()
			benchReadWS(bufio.NewReaderSize(c, 512), cnt)
		}()
	}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
		readers.Wait()
		benchWaitUnsubscribed(b, e.hub)
	}()
	w := e.hub.Lookup(benchWall)
	if w == nil || w.Subscribers() != n {
		b.Fatalf("want %d subscribers", n)
	}

	publish := e.publish
	if viaHTTP {
		p := benchDialPoster(b, e.addr)
		defer p.conn.Close()
		publish = p.post
	}

	f.run(b, n, cnt, publish, "deliveries")
}

// benchFanout is the measuring common to the fan-out benchmarks: the
// profiles (see WALL_BENCH_PROFDIR), the set-up cost per connection and
// the cost per delivery of the timed loop.
type benchFanout struct {
	dir, stem string
	rate      int // MemProfileRate to restore after the set-up snapshot
	ms0       runtime.MemStats
	g0        int
}

// benchStartFanout begins a fan-out benchmark, before its server exists.
func benchStartFanout(b *testing.B) *benchFanout {
	f := &benchFanout{rate: runtime.MemProfileRate}
	f.dir, f.stem = benchProfDir(b)
	if f.dir != "" {
		runtime.MemProfileRate = 1 // exact sites for the setup snapshot
	}
	return f
}

// baseline records memory and goroutines before any connection.
func (f *benchFanout) baseline() { f.ms0, f.g0 = benchMemStats(), runtime.NumGoroutine() }

// run measures with n connections up: one message outside the timer
// warms up every connection, then each b.Loop iteration publishes one and
// waits until cnt has counted n more (what names them in a timeout). It
// returns how many messages were published.
func (f *benchFanout) run(b *testing.B, n int, cnt *benchCounter, publish func(*testing.B), what string) int64 {
	cnt.expect(int64(n))
	publish(b)
	cnt.wait(b, "warm-up "+what)
	setup := benchMeasureSetup(f.ms0, benchMemStats(), f.g0, n)
	if f.dir != "" {
		benchHeapSnapshot(b, f.dir, f.stem)
		runtime.MemProfileRate = f.rate // sampling every malloc would skew the CPU profile
	}

	stop := benchStartCPU(b, f.dir, f.stem)
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	cpu0 := benchCPU()
	i := int64(1)
	for b.Loop() {
		i++
		cnt.expect(i * int64(n))
		publish(b)
		cnt.wait(b, what)
	}
	cpu := benchCPU() - cpu0
	runtime.ReadMemStats(&m1)
	stop()
	benchReportDelivery(b, m0, m1, b.N*n)
	// CPU time, both ends: unlike ns/delivery, hardly moved by other
	// processes on a shared machine.
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N*n), "cpu-ns/delivery")
	setup.report(b)
	return i
}

// benchReadWS reads server frames (unmasked) from r until the connection
// ends, skipping payloads, and counts each text frame. It allocates nothing.
func benchReadWS(r *bufio.Reader, cnt *benchCounter) {
	benchReadFrames(r, func() { cnt.add(1) })
}

// benchReadFrames is benchReadWS with a callback per text frame.
func benchReadFrames(r *bufio.Reader, onText func()) {
	var buf [512]byte
	for {
		b0, err := r.ReadByte()
		if err != nil {
			return
		}
		b1, err := r.ReadByte()
		if err != nil {
			return
		}
		n := uint64(b1 & 0x7f)
		ext := 0
		switch n {
		case 126:
			ext = 2
		case 127:
			ext = 8
		}
		if ext > 0 {
			n = 0
			for range ext {
				c, err := r.ReadByte()
				if err != nil {
					return
				}
				n = n<<8 | uint64(c)
			}
		}
		if b1&0x80 != 0 { // masked: never from a server, but skip the key
			n += 4
		}
		for n > 0 {
			k := min(n, uint64(len(buf)))
			if _, err := io.ReadFull(r, buf[:k]); err != nil {
				return
			}
			n -= k
		}
		if b0&0x0f == byte(websocket.TextMessage) {
			onText()
		}
	}
}

// benchWaitUnsubscribed waits until the bench wall has no subscriber left.
func benchWaitUnsubscribed(b *testing.B, hub *wall.Hub) {
	deadline := time.Now().Add(benchWait)
	for {
		w := hub.Lookup(benchWall)
		if w == nil || w.Subscribers() == 0 {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("%d subscribers left after closing every connection", w.Subscribers())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// BenchmarkFanoutLongPoll measures one post reaching N long-pollers: per
// iteration one message is published and the benchmark waits until every
// poller has its response and has sent its next poll.
func BenchmarkFanoutLongPoll(b *testing.B) {
	for _, n := range []int{1000, 5000} {
		b.Run(fmt.Sprintf("N=%d", n), func(b *testing.B) { benchFanoutLongPoll(b, n) })
	}
}

func benchFanoutLongPoll(b *testing.B, n int) {
	f := benchStartFanout(b)
	e := benchNewEnv(b)
	defer e.close()
	f.baseline()

	conns := benchRamp(b, n, func() (net.Conn, error) {
		return net.DialTimeout("tcp", e.addr, benchWait)
	})
	// covered counts, over all pollers, the messages each has received
	// and re-polled past: when it reaches N×messages, every poller is
	// parked again on the next message. sent counts the first polls.
	covered, sent := benchNewCounter(), benchNewCounter()
	errs := make(chan error, n)
	var pollers sync.WaitGroup
	for _, c := range conns {
		pollers.Add(1)
		go func() {
			defer pollers.Done()
			if err := benchPoll(c, covered, sent); err != nil && !errors.Is(err, net.ErrClosed) {
				errs <- err
			}
		}()
	}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
		pollers.Wait()
		close(errs)
		for err := range errs {
			b.Errorf("poller: %v", err)
			break
		}
	}()
	sent.expect(int64(n))
	sent.wait(b, "first polls")

	if sent := f.run(b, n, covered, e.publish, "deliveries and re-polls"); covered.n.Load() != sent*int64(n) {
		b.Fatalf("delivered %d messages, want %d", covered.n.Load(), sent*int64(n))
	}
}

var (
	benchSeqKey    = []byte(`"seq": `)
	benchCursorKey = []byte(`"cursor": "`)
)

// benchPoll long-polls the bench wall on one keep-alive connection until
// it is closed: it polls from cursor 0, and after each response re-polls
// from the response's cursor before it counts the messages received, so a
// poller that has been counted is parked again (or about to be: its cursor
// catches it up). It allocates nothing once its buffers have grown.
func benchPoll(c net.Conn, covered, sent *benchCounter) error {
	r := bufio.NewReaderSize(c, 1024)
	req := make([]byte, 0, 128)
	body := make([]byte, 0, 1024)
	var cursor uint64
	poll := func() error {
		req = append(req[:0], "GET /a/message/updates?wall="+benchWall+"&cursor="...)
		req = strconv.AppendUint(req, cursor, 10)
		req = append(req, " HTTP/1.1\r\nHost: b\r\n\r\n"...)
		_, err := c.Write(req)
		return err
	}
	if err := poll(); err != nil {
		return err
	}
	sent.add(1)
	for {
		status, resp, err := benchReadResponse(r, body)
		if err != nil {
			return err
		}
		body = resp[:0]
		if status != 200 {
			return fmt.Errorf("poll: status %d: %s", status, resp)
		}
		k := int64(bytes.Count(resp, benchSeqKey))
		if i := bytes.Index(resp, benchCursorKey); i >= 0 && k > 0 {
			cursor = 0
			for _, d := range resp[i+len(benchCursorKey):] {
				if d < '0' || d > '9' {
					break
				}
				cursor = cursor*10 + uint64(d-'0')
			}
		}
		if err := poll(); err != nil {
			return err
		}
		covered.add(k)
	}
}

// benchReadResponse reads one HTTP/1.1 response from r, with its body
// (Content-Length or chunked) in buf, grown if needed. It allocates nothing
// once buf is large enough.
func benchReadResponse(r *bufio.Reader, buf []byte) (status int, body []byte, err error) {
	line, err := r.ReadSlice('\n')
	if err != nil {
		return 0, buf, err
	}
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.1 ")) {
		return 0, buf, fmt.Errorf("bad status line %q", line)
	}
	status = int(line[9]-'0')*100 + int(line[10]-'0')*10 + int(line[11]-'0')
	length, chunked := -1, false
	for {
		line, err = r.ReadSlice('\n')
		if err != nil {
			return 0, buf, err
		}
		if len(line) <= 2 {
			break
		}
		const cl, te = "content-length:", "transfer-encoding:"
		switch {
		case len(line) > len(cl) && bytes.EqualFold(line[:len(cl)], []byte(cl)):
			length = benchAtoi(line[len(cl):], 10)
		case len(line) > len(te) && bytes.EqualFold(line[:len(te)], []byte(te)):
			chunked = bytes.Contains(line, []byte("chunked"))
		}
	}
	body = buf[:0]
	switch {
	case chunked:
		for {
			line, err = r.ReadSlice('\n')
			if err != nil {
				return 0, body, err
			}
			n := benchAtoi(line, 16)
			if n <= 0 {
				// Trailer (none expected) up to the empty line.
				for len(line) > 2 || n < 0 {
					if line, err = r.ReadSlice('\n'); err != nil {
						return 0, body, err
					}
					n = 0
				}
				return status, body, nil
			}
			body = benchReadN(r, body, n+2)
			if body == nil {
				return 0, buf, io.ErrUnexpectedEOF
			}
			body = body[:len(body)-2]
		}
	case length >= 0:
		body = benchReadN(r, body, length)
		if body == nil {
			return 0, buf, io.ErrUnexpectedEOF
		}
		return status, body, nil
	}
	return 0, buf, errors.New("response without length")
}

// benchReadN appends n bytes from r to b, or returns nil.
func benchReadN(r *bufio.Reader, b []byte, n int) []byte {
	if cap(b)-len(b) < n {
		b = append(make([]byte, 0, 2*(len(b)+n)), b...)
	}
	if _, err := io.ReadFull(r, b[len(b):len(b)+n]); err != nil {
		return nil
	}
	return b[:len(b)+n]
}

// benchAtoi parses the leading number of s (after spaces) in base 10 or 16,
// or returns -1.
func benchAtoi(s []byte, base int) int {
	s = bytes.TrimLeft(s, " \t")
	n, digits := 0, 0
	for _, c := range s {
		var d int
		switch {
		case c >= '0' && c <= '9':
			d = int(c - '0')
		case base == 16 && c >= 'a' && c <= 'f':
			d = int(c-'a') + 10
		case base == 16 && c >= 'A' && c <= 'F':
			d = int(c-'A') + 10
		default:
			if digits == 0 {
				return -1
			}
			return n
		}
		n = n*base + d
		digits++
	}
	if digits == 0 {
		return -1
	}
	return n
}

// benchPoster posts benchBody to the bench wall over one raw keep-alive
// connection, as a form with the XSRF cookie and field.
type benchPoster struct {
	conn net.Conn
	r    *bufio.Reader
	req  []byte
	body []byte
}

func benchDialPoster(b *testing.B, addr string) *benchPoster {
	b.Helper()
	c, err := net.DialTimeout("tcp", addr, benchWait)
	if err != nil {
		b.Fatal(err)
	}
	form := "_xsrf=" + benchToken + "&wall=" + benchWall + "&body=" + url.QueryEscape(benchBody)
	req := "POST /a/message/new HTTP/1.1\r\nHost: b\r\nCookie: _xsrf=" + benchToken +
		"\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: " +
		strconv.Itoa(len(form)) + "\r\n\r\n" + form
	return &benchPoster{conn: c, r: bufio.NewReaderSize(c, 1024), req: []byte(req), body: make([]byte, 0, 1024)}
}

// post sends one post and reads its answer; it allocates nothing.
func (p *benchPoster) post(b *testing.B) {
	if _, err := p.conn.Write(p.req); err != nil {
		b.Fatal(err)
	}
	status, body, err := benchReadResponse(p.r, p.body)
	if err != nil {
		b.Fatal(err)
	}
	p.body = body[:0]
	if status != 200 {
		b.Fatalf("post: status %d: %s", status, body)
	}
}

// BenchmarkPostHTTP measures POST /a/message/new with no subscribers, over
// one keep-alive connection (latency) and over 16 in parallel (throughput).
// The client allocates nothing, so allocs/op are the server's.
func BenchmarkPostHTTP(b *testing.B) {
	b.Run("conns=1", func(b *testing.B) {
		e := benchNewEnv(b)
		defer e.close()
		p := benchDialPoster(b, e.addr)
		defer p.conn.Close()
		b.ReportAllocs()
		for b.Loop() {
			p.post(b)
		}
	})
	b.Run("conns=16", func(b *testing.B) {
		e := benchNewEnv(b)
		defer e.close()
		var mu sync.Mutex
		var posters []*benchPoster
		defer func() {
			for _, p := range posters {
				p.conn.Close()
			}
		}()
		b.ReportAllocs()
		b.SetParallelism(8) // 8 × GOMAXPROCS(2) connections here
		b.RunParallel(func(pb *testing.PB) {
			p := benchDialPoster(b, e.addr)
			mu.Lock()
			posters = append(posters, p)
			mu.Unlock()
			for pb.Next() {
				p.post(b)
			}
		})
	})
}

// BenchmarkPollResponse measures answering a poll with the whole 200-message
// cache: taking the messages under the wall lock and concatenating their
// stored JSON into the response body.
func BenchmarkPollResponse(b *testing.B) {
	hub := wall.NewHub(200)
	broker := wall.NewMemoryBroker(hub)
	for range 250 { // the first 50 are evicted
		if _, _, err := broker.Publish(context.Background(), wall.Post{Wall: benchWall, ID: uuid.NewString(), Body: benchBody}); err != nil {
			b.Fatal(err)
		}
	}
	w := hub.Acquire(benchWall)
	defer hub.Release(w)
	cursor := wall.Cursor{Set: true, Seq: 50}
	b.ReportAllocs()
	var size int
	for b.Loop() {
		res, _ := w.Poll(cursor)
		if len(res.Messages) != 200 {
			b.Fatalf("got %d messages", len(res.Messages))
		}
		size = len(appendPollResponse(nil, res))
	}
	b.ReportMetric(float64(size), "resp-bytes")
}
