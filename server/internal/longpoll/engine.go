// Package longpoll is the long-poll engine. A poll that has to wait
// leaves net/http: its connection is hijacked and becomes a pollConn,
// which holds no buffers while it waits, instead of net/http's connection
// goroutine, its background reader, its bufio reader and writer, its
// response buffer and the request. After the answer the engine reads the
// next request on the connection (keep-alive re-polls), admits it through
// the application's one admission function and serves it, errors
// included; any request it does not frame goes back to net/http through
// the engine's Listener, with the bytes already read, so net/http serves
// it exactly as before.
//
// A keep-alive poll waits the fast way, with no goroutine: its socket is
// watched by the reactor (netpoll.Poller), a message hands the connection
// to a flusher worker, which answers it with one non-blocking write
// (Flush), and the client's next request is read and served by the
// reactor's goroutine, a batch of connections per wake-up. Where a step
// would block (a request not all here, a cursor to sync from the broker,
// an answer the socket does not take whole, a request for net/http) the
// connection goes on from there on a goroutine of its own (serve), which
// gives it back to the reactor at its next wait. Other polls (pipelined
// requests, Connection: close, no reactor) wait the slow way, on their
// goroutine, woken to answer.
//
// Who owns a connection at each moment is its state (state.go): one
// owner at a time, changes by compare-and-swap against a stamp that names
// the request, so an answer can only go to the request it was computed
// for.
//
// The engine knows HTTP framing and the wall's subscriber interface; it
// knows no router and no application rule: those come through App.
package longpoll

import (
	"context"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"wall/server/internal/admit"
	"wall/server/internal/netpoll"
	"wall/server/internal/outbound"
	"wall/wall"
)

// Engine limits.
const (
	MaxHead     = 8 << 10          // longest request head the engine reads
	MaxBody     = 8 << 10          // longest poll body: a cursor, a wall and a token
	headTimeout = 10 * time.Second // to read a whole request once it began
	respReserve = 192              // room for the response head before the body
)

// App is what the engine needs of the application.
type App interface {
	// Admit admits a poll the engine read: the application's one
	// admission function (admit.Poll). It must not block.
	Admit(src admit.Source) (admit.Ticket, *admit.Error)
	// Acquire holds the wall called name, creating it; Release lets a
	// held wall go.
	Acquire(name string) *wall.Wall
	Release(w *wall.Wall)
	// Syncless reports whether a poll of w from c can be served without
	// asking the broker: Sync would return at once.
	Syncless(w *wall.Wall, c wall.Cursor) bool
	// Sync catches w up with c (it may block); its error is the answer.
	Sync(ctx context.Context, w *wall.Wall, c wall.Cursor) *admit.Error
	// RefusedFrom is when the token t was admitted with is refused
	// (exp plus the leeway); the engine asks only of a token with exp. A
	// poll is answered by then, without messages stored since.
	RefusedFrom(t admit.Ticket) time.Time
	// Done is closed when shutdown begins, before the registry wakes
	// every connection (pollConn.Shutdown): waiting polls answer, idle
	// connections close.
	Done() <-chan struct{}
}

// Config holds the engine's timeouts and test hooks.
type Config struct {
	PollTimeout  time.Duration // longest a poll waits
	IdleTimeout  time.Duration // longest a connection waits for its next request
	WriteTimeout time.Duration // longest a blocking write of an answer takes
	CloseGrace   time.Duration // write deadline of answers at shutdown
	// Lag, if set, receives the delivery lag (seconds) of polls answered
	// by a flusher worker, woken by a message: sampled, one answer in 16
	// per connection (outbound.Options.Lag says why).
	Lag outbound.Observer

	// TestHookParked, if set, runs where the engine has just parked a
	// poll, before it polls the wall and may take the poll back: tests
	// widen that window with it.
	TestHookParked func()
}

// Engine holds the connections taken out of net/http. Build it with New.
type Engine struct {
	app     App
	cfg     Config
	log     *slog.Logger
	flusher *netpoll.Flusher // shared with the application's other writers
	done    <-chan struct{}  // app.Done()

	ln    atomic.Pointer[listener]            // set by Listener: the engine is enabled
	conns *outbound.Registry[outbound.Member] // the server's held connections, the engine's among them (conns.go)
	// Buffers lent only while bytes are in flight, never to an idle
	// connection: requests and answers.
	bufs sync.Pool // *[]byte
	// Requests being admitted, lent for one Admit call: a held
	// connection keeps no request view between polls.
	reqs sync.Pool // *pollRequest

	workerAnswers  atomic.Int64 // polls answered by a flusher worker
	workerHandoffs atomic.Int64 // of which the goroutine wrote the rest
}

// New returns an engine for app, whose answers flusher's workers write
// and whose connections join conns, the registry that counts them, wakes
// them at shutdown (its Run, ended by app.Done) and waits for them (its
// Wait). It is enabled by Listener; until then Park refuses every poll.
func New(app App, flusher *netpoll.Flusher, conns *outbound.Registry[outbound.Member], log *slog.Logger, cfg Config) *Engine {
	e := &Engine{app: app, cfg: cfg, log: log, flusher: flusher, conns: conns, done: app.Done()}
	e.bufs.New = newPollBuf
	e.reqs.New = func() any { return new(pollRequest) }
	return e
}

// Close stops the reactor. Call it once the engine holds no connection:
// after the registry's Run has returned (shutdown) and its Wait.
func (e *Engine) Close() {
	if l := e.ln.Load(); l != nil && l.rx != nil {
		l.rx.Close()
	}
}

// Stats are the engine's counts, for metrics and tests.
type Stats struct {
	Conns          int   // connections held (waiting polls and idle)
	Waiting        int   // of which polls waiting in the reactor
	WorkerAnswers  int64 // polls answered by a flusher worker
	WorkerHandoffs int64 // of which a goroutine wrote the rest
}

// Stats returns the engine's counts now. Conns is the registry's count of
// its transport: a registry shared by two engines would count both.
func (e *Engine) Stats() Stats {
	return Stats{Conns: e.conns.Count(Transport), Waiting: e.waitingPolls(),
		WorkerAnswers: e.workerAnswers.Load(), WorkerHandoffs: e.workerHandoffs.Load()}
}

// newPollBuf makes the buffers of Engine.bufs: a request head and body,
// or a response.
func newPollBuf() any {
	b := make([]byte, 0, MaxHead+MaxBody)
	return &b
}

// Park moves a poll that has to wait out of net/http, if the engine is
// enabled (Listener) and the request allows it: HTTP/1.1 with its body
// read to the end. It reports whether it did; if not, the caller keeps
// waiting in net/http. On true the handler returns at once, writing
// nothing: rw is hijacked. The caller's hold on w lasts until it returns;
// the engine takes its own. On true the engine also takes over hold, the
// poll's place among its client's connections (admit.Ticket.Hold), and
// releases it when the poll is answered. expiring says the deadline is
// when the poll's token is refused: no message stored from then on is
// answered, and the answer is the timeout's.
func (e *Engine) Park(rw http.ResponseWriter, r *http.Request, w *wall.Wall, cursor wall.Cursor, deadline time.Time, expiring bool, hold *admit.Hold) bool {
	l := e.ln.Load()
	if l == nil || r.ProtoMajor != 1 || r.ProtoMinor != 1 || len(r.TransferEncoding) > 0 {
		return false
	}
	switch r.Method {
	case http.MethodGet:
		if r.ContentLength != 0 {
			return false
		}
	case http.MethodPost:
		// readArgs read a urlencoded (or ignored) body to the end; a
		// multipart one may not be.
		if r.ContentLength < 0 || strings.HasPrefix(strings.ToLower(r.Header.Get("Content-Type")), "multipart/") {
			return false
		}
	default:
		return false
	}
	// Entered while http.Server still tracks the request, so Wait
	// cannot miss a connection that Shutdown let through (conns.go).
	if !e.conns.Enter() {
		return false
	}
	pc := &pollConn{e: e, ln: l, wake: make(chan struct{}, 1), peer: r.RemoteAddr}
	conn, brw, err := http.NewResponseController(rw).Hijack()
	if err != nil {
		e.conns.Leave(nil)
		return false
	}
	pc.hold, *hold = *hold, admit.Hold{}
	// The answer's write deadline that net/http's side set is the
	// engine's to set from here on: its writes set their own.
	conn.SetWriteDeadline(time.Time{})
	// Bytes net/http read ahead (a pipelined request) are served after
	// the answer.
	if p, ok := conn.(*prefixConn); ok {
		pc.pending = append(pc.pending, p.buf...)
		conn = p.Conn
	}
	if n := brw.Reader.Buffered(); n > 0 {
		b, _ := brw.Reader.Peek(n)
		pc.pending = append(pc.pending, b...)
	}
	pc.sock = netpoll.NewSocket(conn)
	if l.rx != nil && pc.sock.Valid() {
		pc.timer = time.AfterFunc(e.cfg.PollTimeout, pc.onTimer)
		pc.firesAt.Store(time.Now().Add(e.cfg.PollTimeout).UnixNano())
		if l.rx.Add(pc.sock, pc) {
			pc.rx = l.rx
		} else {
			pc.timer.Stop()
		}
	}
	// Added once it has its connection, which Shutdown wakes: at once if
	// shutdown has begun.
	pc.conn = conn
	e.conns.Add(pc)
	pc.wall = e.app.Acquire(w.Name()) // the caller's hold keeps it the same wall
	pc.cursor, pc.deadline, pc.expiring, pc.keepAlive = cursor, deadline.UnixNano(), expiring, !r.Close
	go pc.serve(true)
	return true
}

// hookParked runs the test hook where a poll has just been parked.
func (pc *pollConn) hookParked() {
	if h := pc.e.cfg.TestHookParked; h != nil {
		h()
	}
}

// crashLogged is deferred at the root of the engine's own goroutine, the
// accept loop, whose failure leaves the engine unable to accept: a panic
// there is logged with its stack and crashes the process deliberately.
func (e *Engine) crashLogged(what string) {
	if v := recover(); v != nil {
		e.log.Error("long-poll engine: "+what+" panicked, crashing", "panic", v, "stack", string(debug.Stack()))
		panic(v)
	}
}
