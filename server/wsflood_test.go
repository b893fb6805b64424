package server

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"wall/assets"
	"wall/server/internal/outbound"
	"wall/server/internal/wsframe"
	"wall/views"
	"wall/wall"
)

// A client that never reads but keeps sending frames that each get an
// answer (pings, or bad posts) is cut off once notesMax answers wait
// behind its full socket, and counted as a control flood; before, each
// frame queued its answer with no bound (1.1 GB of heap in 9 s).
func TestWSControlFlood(t *testing.T) {
	for _, tc := range []struct {
		name  string
		frame []byte
	}{
		{"pings", clientFrame(true, wsframe.OpPing, strings.Repeat("p", 125))},
		{"bad posts", clientFrame(true, wsframe.OpText, "not json")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newTestEnv(t, Config{}, 10)
			d := websocket.Dialer{NetDial: func(network, addr string) (net.Conn, error) {
				c, err := net.Dial(network, addr)
				if err == nil {
					err = c.(*net.TCPConn).SetReadBuffer(4 << 10) // fills quickly
				}
				return c, err
			}}
			c, _, err := d.Dial(e.wsURL("/ws"), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			e.subscribed("main", 1)
			nc := c.NetConn()
			chunk := bytes.Repeat(tc.frame, 1000)
			const maxBytes = 64 << 20 // far more than the socket buffers on both sides
			for sent := 0; wallSubs(e, "main") > 0; sent += len(chunk) {
				if sent > maxBytes {
					t.Fatalf("still connected after %d MiB of frames it never read the answers to", sent>>20)
				}
				nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
				if _, err := nc.Write(chunk); err != nil {
					var ne net.Error
					if errors.As(err, &ne) && ne.Timeout() {
						t.Fatalf("server stopped reading without cutting the client off: %v", err)
					}
					break // reset: cut off
				}
			}
			unsubscribed(t, e, "main")
			if n := e.srv.wsEnded.Load(outbound.ControlFlood); n != 1 {
				t.Fatalf("control floods counted: %d, want 1", n)
			}
			wantMetric(t, scrape(t, e.srv), 1, "wall_stream_disconnects_total", "transport", "websocket", "reason", "control_flood")
		})
	}
}

// panicBroker panics on every post, as a bug behind Publish would.
type panicBroker struct{ *wall.MemoryBroker }

func (panicBroker) Publish(context.Context, wall.Post) (*wall.Message, bool, error) {
	panic("broker blew up")
}

// lockedBuffer is a log destination read while the server writes to it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// A panic in a WebSocket's reader ends that connection with 1011 and an
// error log with the stack, not the process: other connections carry on,
// and the connection leaves nothing behind.
func TestWSReaderPanic(t *testing.T) {
	hub := wall.NewHub(10)
	logs := &lockedBuffer{}
	srv, err := New(Config{}, slog.New(slog.NewTextHandler(logs, nil)), hub, panicBroker{wall.NewMemoryBroker(hub)}, views.FS, assets.FS)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv)
	defer ts.Close()
	defer srv.Wait()
	defer hub.Close()
	dial := func() *websocket.Conn {
		c, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(ts.URL, "http")+"/ws", nil)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	bystander, victim := dial(), dial()
	defer bystander.Close()
	defer victim.Close()
	victim.WriteMessage(websocket.TextMessage, []byte(`{"body": "hello"}`))
	victim.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, _, err = victim.ReadMessage()
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.CloseInternalServerErr {
		t.Fatalf("connection ended with %v, want close 1011", err)
	}
	waitFor(t, "the panic logged", 5*time.Second, func() bool {
		l := logs.String()
		return strings.Contains(l, "level=ERROR") && strings.Contains(l, "broker blew up") && strings.Contains(l, "readPump")
	})
	if !strings.Contains(logs.String(), "wsconn.go") {
		t.Fatalf("log has no stack:\n%s", logs.String())
	}
	waitFor(t, "the victim to leave", 5*time.Second, func() bool {
		return hub.Lookup(wall.DefaultWall).Subscribers() == 1 && srv.streams.Len() == 1
	})
	if n := srv.wsEnded.Load(outbound.InternalError); n != 1 {
		t.Fatalf("internal errors counted: %d", n)
	}
	// The bystander is still served: its ping is answered.
	pongs := make(chan string, 1)
	bystander.SetPongHandler(func(s string) error { pongs <- s; return nil })
	go bystander.ReadMessage() // runs the pong handler; ends when the test closes it
	if err := bystander.WriteControl(websocket.PingMessage, []byte("hi"), time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if got := recv(t, "the bystander's pong", pongs); got != "hi" {
		t.Fatalf("pong %q", got)
	}
}
