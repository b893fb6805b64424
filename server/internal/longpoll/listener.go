package longpoll

import (
	"errors"
	"io"
	"net"
	"sync"
	"syscall"
	"wall/server/internal/netpoll"
)

// listener wraps the server's real listener so that the long-poll engine
// (Engine) can hand connections back to net/http: its Accept yields
// the real listener's connections and the connections handed back, which
// net/http then serves as new connections.
//
// One accept goroutine owns the real listener's Accept and forwards what
// it gets to Accept's caller (http.Server.Serve); handBack is called by
// pollConn goroutines.
type listener struct {
	net.Listener

	rx       *netpoll.Poller   // watches the engine's connections; nil: polls wait the slow way
	accepted chan acceptResult // from the accept goroutine
	back     chan net.Conn     // handed back by pollConns
	done     chan struct{}     // closed by Close
	once     sync.Once
}

type acceptResult struct {
	conn net.Conn
	err  error
}

// Listener returns a listener over ln for http.Server.Serve that enables
// the engine: pending polls leave net/http and wait with no buffers and,
// on Linux, no goroutine, and connections the engine does not serve go
// back to net/http through it. It starts the reactor, whose goroutine
// ends in Wait, and the accept goroutine, which ends when ln is closed.
// Call it once.
func (e *Engine) Listener(ln net.Listener) net.Listener {
	l := &listener{
		Listener: ln,
		accepted: make(chan acceptResult),
		back:     make(chan net.Conn),
		done:     make(chan struct{}),
	}
	rx, err := netpoll.NewPoller(func(v any, stack []byte) {
		e.log.Error("reactor handler panicked", "panic", v, "stack", string(stack))
	})
	if err != nil && !errors.Is(err, errors.ErrUnsupported) {
		e.log.Warn("no reactor: long-polls wait on goroutines", "err", err)
	}
	l.rx = rx
	go func() {
		defer e.crashLogged("accept loop")
		l.acceptLoop()
	}()
	e.ln.Store(l)
	return l
}

// acceptLoop is the accept goroutine: it ends after the real listener's
// first permanent error (it is closed, usually), which it forwards.
func (l *listener) acceptLoop() {
	for {
		c, err := l.Listener.Accept()
		select {
		case l.accepted <- acceptResult{c, err}:
		case <-l.done:
			if c != nil {
				c.Close()
			}
			return
		}
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue // as net/http's own retry of temporary errors
			}
			if !isTemporary(err) {
				return
			}
		}
	}
}

// isTemporary reports the errors http.Server.Serve retries after (it
// checks the deprecated Temporary method).
func isTemporary(err error) bool {
	var te interface{ Temporary() bool }
	return errors.As(err, &te) && te.Temporary()
}

// Accept returns the next connection, new or handed back.
func (l *listener) Accept() (net.Conn, error) {
	select {
	case <-l.done:
		return nil, net.ErrClosed
	default:
	}
	select {
	case r := <-l.accepted:
		return r.conn, r.err
	case c := <-l.back:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Close closes the real listener; Accept then returns net.ErrClosed and
// connections handed back afterwards are closed.
func (l *listener) Close() error {
	err := net.ErrClosed
	l.once.Do(func() {
		close(l.done)
		err = l.Listener.Close()
	})
	return err
}

// handBack gives c to net/http, which serves it as a new connection
// (prefix, if any, is read first). It blocks until Serve accepts it or the
// listener is closed, in which case c is closed.
func (l *listener) handBack(c net.Conn) {
	select {
	case l.back <- c:
	case <-l.done:
		c.Close()
	}
}

// prefixConn is a connection whose first bytes were already read from the
// socket: Read returns buf first. Whoever reads the connection owns buf
// (one goroutine at a time: net/http's, or a pollConn's).
type prefixConn struct {
	net.Conn
	buf []byte
}

func (p *prefixConn) Read(b []byte) (int, error) {
	if len(p.buf) > 0 {
		n := copy(b, p.buf)
		p.buf = p.buf[n:]
		if len(p.buf) == 0 {
			p.buf = nil
		}
		return n, nil
	}
	return p.Conn.Read(b)
}

// CloseWrite lets net/http close gracefully (it half-closes before
// closing when it can).
func (p *prefixConn) CloseWrite() error {
	if cw, ok := p.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return p.Conn.Close()
}

// ReadFrom keeps sendfile for net/http's static files.
func (p *prefixConn) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := p.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(p.Conn, r)
}

var errPrefixPending = errors.New("connection has buffered bytes")

// SyscallConn gives the socket to code that waits for it to be readable
// (WebSocket readers), but only once the prefix is consumed: waiting on the
// socket would not see bytes already read from it.
func (p *prefixConn) SyscallConn() (syscall.RawConn, error) {
	if len(p.buf) > 0 {
		return nil, errPrefixPending
	}
	sc, ok := p.Conn.(syscall.Conn)
	if !ok {
		return nil, errors.ErrUnsupported
	}
	return sc.SyscallConn()
}
