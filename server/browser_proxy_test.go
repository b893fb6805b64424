package server

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// tcpProxy forwards TCP connections from a loopback listener of its own to
// a backend, and misbehaves as broken networks do: it can hang every
// WebSocket handshake (accept the connection, read the upgrade request,
// never answer: a proxy that does not pass WebSockets but does not say
// so), and it can blackhole the connections it carries (bytes in either
// direction vanish, nothing is closed: a laptop asleep, a NAT entry
// expired). New connections after a blackhole are forwarded normally.
//
// Its goroutines (an accept loop, two copiers per connection) end when
// the test's cleanup closes it.
type tcpProxy struct {
	t       *testing.T
	ln      net.Listener
	backend string
	hangWS  atomic.Bool // hang WebSocket handshakes
	mu      sync.Mutex
	links   map[*proxyLink]struct{}
	done    chan struct{} // closed by close
	wg      sync.WaitGroup
}

// proxyLink is one client connection and its backend connection.
type proxyLink struct {
	client, server net.Conn
	dead           atomic.Bool // blackholed: what is read is dropped
}

// newTCPProxy starts a proxy to backend ("host:port").
func newTCPProxy(t *testing.T, backend string) *tcpProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpProxy{t: t, ln: ln, backend: backend, links: map[*proxyLink]struct{}{}, done: make(chan struct{})}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

// url is the proxy's base URL.
func (p *tcpProxy) url() string { return "http://" + p.ln.Addr().String() }

func (p *tcpProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return // closed
		}
		l := &proxyLink{client: c}
		p.mu.Lock()
		p.links[l] = struct{}{}
		p.mu.Unlock()
		p.wg.Add(1)
		go p.serve(l)
	}
}

// serve reads the first request head of a connection, hangs it if it is a
// WebSocket handshake to hang, and otherwise forwards the connection.
func (p *tcpProxy) serve(l *proxyLink) {
	defer p.wg.Done()
	defer p.drop(l)
	br := bufio.NewReader(l.client)
	var head bytes.Buffer
	for !bytes.HasSuffix(head.Bytes(), []byte("\r\n\r\n")) {
		line, err := br.ReadSlice('\n')
		head.Write(line)
		if err != nil {
			return
		}
	}
	if p.hangWS.Load() && strings.Contains(strings.ToLower(head.String()), "upgrade: websocket") {
		io.Copy(io.Discard, br) // until the client gives up
		return
	}
	s, err := net.Dial("tcp", p.backend)
	if err != nil {
		return
	}
	p.mu.Lock()
	l.server = s
	p.mu.Unlock()
	if _, err := s.Write(head.Bytes()); err != nil {
		return
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		p.pipe(l, s, br)
		p.hold(l)
		s.Close()
	}()
	p.pipe(l, l.client, s)
	p.hold(l)
}

// hold keeps a blackholed link's other end open until the proxy closes:
// behind a blackhole, the client never learns that the server gave up.
func (p *tcpProxy) hold(l *proxyLink) {
	if l.dead.Load() {
		<-p.done
	}
}

// pipe copies src to dst until either fails, dropping the bytes of a
// blackholed link.
func (p *tcpProxy) pipe(l *proxyLink, dst io.Writer, src io.Reader) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && !l.dead.Load() {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// blackhole makes every connection carried so far drop what it carries,
// without closing it.
func (p *tcpProxy) blackhole() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for l := range p.links {
		l.dead.Store(true)
	}
}

func (p *tcpProxy) drop(l *proxyLink) {
	l.client.Close()
	p.mu.Lock()
	delete(p.links, l)
	p.mu.Unlock()
}

func (p *tcpProxy) close() {
	close(p.done)
	p.ln.Close()
	p.mu.Lock()
	for l := range p.links {
		l.client.Close()
		if l.server != nil {
			l.server.Close()
		}
	}
	p.mu.Unlock()
	p.wg.Wait()
}
