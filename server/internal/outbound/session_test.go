package outbound

import (
	"bytes"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"wall/server/internal/netpoll"
	"wall/wall"
)

// testEncoder writes messages as their JSON and a line per other frame,
// so what the peer reads shows what was written, in order. A message
// whose body is "boom" makes it panic.
type testEncoder struct{}

func (testEncoder) AppendMessage(bufs net.Buffers, m *wall.Message) net.Buffers {
	if m.Body == "boom" {
		panic("encoder blew up")
	}
	return append(bufs, m.JSON, newline)
}

var newline = []byte("\n")

func (testEncoder) Note(obj []byte) []byte { return append(append([]byte("note "), obj...), '\n') }
func (testEncoder) Ping() []byte           { return []byte("ping\n") }
func (testEncoder) Close(r Reason) []byte  { return []byte("close " + r.String() + "\n") }

// syncBuffer is a log destination tests read while the server writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// testSession is a session attached to one end of a TCP loopback
// connection (so the flusher's non-blocking writes run), with its reader
// played by the test: reader ends the session as a transport's reader
// would once the connection fails.
type testSession struct {
	*Session
	peer  net.Conn
	ended chan struct{} // closed once Finish has returned
	opts  *Options
	log   *syncBuffer
}

func newTestSession(t *testing.T, flusher *netpoll.Flusher, backlog wall.Result) *testSession {
	t.Helper()
	return newExpiringSession(t, flusher, backlog, time.Time{})
}

// newExpiringSession is newTestSession for a peer whose token is refused
// from exp (none if zero).
func newExpiringSession(t *testing.T, flusher *netpoll.Flusher, backlog wall.Result, exp time.Time) *testSession {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	peer, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	// Small buffers: a peer that does not read fills them quickly.
	peer.(*net.TCPConn).SetReadBuffer(4 << 10)
	conn, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	conn.(*net.TCPConn).SetWriteBuffer(4 << 10)
	logs := &syncBuffer{}
	o := &Options{Transport: "test", Encoder: testEncoder{}, Flusher: flusher, MaxQueue: 8, MaxNotes: 4,
		WriteWait: 5 * time.Second, CloseGrace: 200 * time.Millisecond, Ended: &Counters{},
		Log: slog.New(slog.NewTextHandler(logs, nil))}
	ts := &testSession{Session: New(o), peer: peer, ended: make(chan struct{}), opts: o, log: logs}
	if !exp.IsZero() {
		ts.Expire(exp)
	}
	ts.Attach(conn, backlog)
	go func() { // the transport's reader: waits for the connection to end
		defer close(ts.ended)
		io.Copy(io.Discard, conn)
		ts.Finish(PeerClosed)
	}()
	t.Cleanup(func() {
		peer.Close()
		<-ts.ended
	})
	return ts
}

// waitEnded waits for the session's reader to have finished it.
func (ts *testSession) waitEnded(t *testing.T) {
	t.Helper()
	select {
	case <-ts.ended:
	case <-time.After(5 * time.Second):
		t.Fatal("session not ended within 5s")
	}
}

// readAll reads what the peer was sent until the connection ends.
func (ts *testSession) readAll(t *testing.T) string {
	t.Helper()
	ts.peer.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, err := io.ReadAll(ts.peer)
	if err != nil && !strings.Contains(err.Error(), "reset") {
		t.Fatalf("reading what was sent: %v", err)
	}
	return string(b)
}

func msg(seq uint64, body string) *wall.Message {
	return wall.NewMessage("00000000-0000-4000-8000-000000000000", seq, "e", body)
}

// Whichever writer runs (a flusher worker or the session's writeLoop), the
// peer gets the gap notice, the backlog, live messages, notes and pings in
// order, then the final frame, and the session ends with its reason.
func TestSessionWrites(t *testing.T) {
	for _, tc := range []struct {
		name    string
		flusher bool
	}{{"flusher", true}, {"writeLoop", false}} {
		t.Run(tc.name, func(t *testing.T) {
			var f *netpoll.Flusher
			if tc.flusher {
				f = netpoll.NewFlusher(func(any, []byte) {})
				defer f.Close()
			}
			ts := newTestSession(t, f, wall.Result{Messages: []*wall.Message{msg(5, "five")}, Missed: 4})
			ts.Send(msg(6, "six"))
			ts.Keepalive()
			if !ts.Note([]byte("pong\n")) {
				t.Fatal("note refused")
			}
			ts.Close(Shutdown)
			got := ts.readAll(t)
			// Notes go before the messages of the same flush, so the pong
			// may come before or after six; the rest is in this order.
			in := func(s string) int { return strings.Index(got, s) }
			gap, five, six := in("note {\"missed\":4}\n"), in(`"body": "five"`), in(`"body": "six"`)
			if gap != 0 || five < gap || six < five || in("pong\n") < 0 || in("ping\n") < five ||
				!strings.HasSuffix(got, "close shutdown\n") {
				t.Fatalf("peer got:\n%s\nwant the gap notice, five, six, a pong and a ping, the close last", got)
			}
			ts.waitEnded(t)
			if r := ts.Reason(); r != Shutdown || ts.opts.Ended.Load(Shutdown) != 1 {
				t.Fatalf("reason %v, counted %d; want shutdown, once", r, ts.opts.Ended.Load(Shutdown))
			}
		})
	}
}

// A peer that does not read is cut off once MaxQueue messages wait behind
// its full socket, at once (not after WriteWait), and counted once.
func TestSessionSlowReader(t *testing.T) {
	f := netpoll.NewFlusher(func(any, []byte) {})
	defer f.Close()
	ts := newTestSession(t, f, wall.Result{})
	big := strings.Repeat("x", 64<<10)
	start := time.Now()
	for seq := uint64(1); ts.Reason() == Live; seq++ {
		if seq > 1000 {
			t.Fatal("not cut off after 1000 messages of 64 KiB")
		}
		ts.Send(msg(seq, big))
		time.Sleep(time.Millisecond) // let the writer fill the socket
	}
	ts.waitEnded(t)
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("cut off after %v", d)
	}
	if r := ts.Reason(); r != SlowReader {
		t.Fatalf("reason %v, want slow_reader", r)
	}
	ts.Send(msg(9999, "after the end")) // ignored, no panic, not counted again
	if n := ts.opts.Ended.Load(SlowReader); n != 1 {
		t.Fatalf("counted %d times", n)
	}
}

// Frames that are not messages are bounded too: past MaxNotes unwritten
// notes the peer is cut off (a client that sends pings and never reads
// its pongs), Note says so, and nothing more is queued.
func TestSessionNoteFlood(t *testing.T) {
	ts := newTestSession(t, nil, wall.Result{}) // no flusher: a writeLoop blocks on the full socket
	pong := []byte(strings.Repeat("p", 1000) + "\n")
	n := 0
	for ts.Note(pong) {
		if n++; n > 100_000 {
			t.Fatal("100,000 notes queued for a peer that does not read")
		}
	}
	ts.waitEnded(t)
	if r := ts.Reason(); r != ControlFlood || ts.opts.Ended.Load(ControlFlood) != 1 {
		t.Fatalf("reason %v, counted %d; want control_flood once", r, ts.opts.Ended.Load(ControlFlood))
	}
	if ts.Note(pong) {
		t.Fatal("note queued after the cut-off")
	}
	ts.mu.Lock()
	left := len(ts.notes)
	ts.mu.Unlock()
	if left != 0 {
		t.Fatalf("%d notes kept after the end", left)
	}
}

// A panic in a writer (here, the encoder's) ends that connection with
// InternalError and a logged stack; the process, and a flusher worker
// that serves every connection, carry on.
func TestSessionWriterPanic(t *testing.T) {
	for _, tc := range []struct {
		name    string
		flusher bool
	}{{"flusher worker", true}, {"writeLoop", false}} {
		t.Run(tc.name, func(t *testing.T) {
			var f *netpoll.Flusher
			if tc.flusher {
				f = netpoll.NewFlusher(func(any, []byte) {})
				defer f.Close()
			}
			ts := newTestSession(t, f, wall.Result{})
			ts.Send(msg(1, "boom"))
			ts.waitEnded(t)
			if r := ts.Reason(); r != InternalError {
				t.Fatalf("reason %v, want internal_error", r)
			}
			if l := ts.log.String(); !strings.Contains(l, "encoder blew up") || !strings.Contains(l, "session_test.go") {
				t.Fatalf("log lacks the panic and its stack:\n%s", l)
			}
			if tc.flusher { // the workers still write for others
				other := newTestSession(t, f, wall.Result{})
				other.Send(msg(1, "fine"))
				other.Close(Shutdown)
				if got := other.readAll(t); !strings.Contains(got, "fine") {
					t.Fatalf("another session after the panic got %q", got)
				}
			}
		})
	}
}

// A panic in the transport's reader ends the connection the same way,
// with the encoder's final frame for InternalError.
func TestSessionReaderPanic(t *testing.T) {
	ts := newTestSession(t, nil, wall.Result{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer ts.CatchPanic("reader")
		panic("reader blew up")
	}()
	<-done
	if got := ts.readAll(t); got != "close internal_error\n" {
		t.Fatalf("peer got %q", got)
	}
	if r := ts.Reason(); r != InternalError || !strings.Contains(ts.log.String(), "reader blew up") {
		t.Fatalf("reason %v, log:\n%s", r, ts.log.String())
	}
}

// Delivering to a session whose socket takes everything allocates
// nothing: the queue's array is reused and message frames are shared.
func TestSessionDeliveryAllocs(t *testing.T) {
	f := netpoll.NewFlusher(func(any, []byte) {})
	defer f.Close()
	ts := newTestSession(t, f, wall.Result{})
	go io.Copy(io.Discard, ts.peer)
	m := msg(1, "hello")
	idle := func() bool {
		ts.mu.Lock()
		defer ts.mu.Unlock()
		return !ts.writing
	}
	deliver := func() {
		ts.Send(m)
		for !idle() {
			time.Sleep(10 * time.Microsecond)
		}
	}
	for range 100 {
		deliver() // warm up: the worker's scratch, the queue's array
	}
	if a := testing.AllocsPerRun(1000, deliver); a > 0.05 {
		t.Fatalf("%.3f allocations per delivery", a)
	}
}
