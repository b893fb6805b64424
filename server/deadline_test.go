package server

import (
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A POST body that trickles in is cut off after BodyTimeout: the client
// gets a 400 (or the connection closes), the handler returns, nothing is
// stored.
func TestBodyTimeout(t *testing.T) {
	e := newTestEnv(t, Config{BodyTimeout: 300 * time.Millisecond}, 10)
	wc := e.dial()
	wc.send("POST /a/message/new HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n" +
		"Cookie: _xsrf=" + testXSRF + "\r\nContent-Length: 100\r\n\r\nbody=hel")
	start := time.Now()
	wc.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	r, err := readWireResponse(wc.br)
	var ne net.Error
	switch {
	case err == nil && r.Status != http.StatusBadRequest:
		t.Fatalf("%v, want 400 (or a closed connection)", r)
	case errors.As(err, &ne) && ne.Timeout():
		t.Fatal("the trickled body held the connection open")
	case err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNRESET):
		t.Fatalf("reading the answer: %v, want a 400 or a closed connection", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("cut off after %v", d)
	}
	if n := e.hub.Wall("main").Last(); n != 0 {
		t.Fatalf("%d messages stored", n)
	}
}

// A client that never reads a large answer is cut off after WriteTimeout,
// instead of holding the answer's memory for as long as it likes.
func TestWriteTimeout(t *testing.T) {
	e := newTestEnv(t, Config{WriteTimeout: 300 * time.Millisecond, BodyLimit: 64 << 10}, 200)
	body := strings.Repeat("é", 30000) // each JSON-escaped twice (body, html): about 360 KB a message
	for range 100 {
		e.publish("big", body)
	}
	wc := e.dial()
	wc.c.(*net.TCPConn).SetReadBuffer(4096)
	wc.send("GET /a/message/updates?wall=big HTTP/1.1\r\nHost: x\r\n\r\n")
	// The answer (about 36 MB) cannot fit in the socket buffers: the
	// handler is stuck writing until the deadline ends it.
	waitFor(t, "the handler to start", 5*time.Second, func() bool { return e.inflight.Load() == 1 })
	waitFor(t, "the stalled write to be cut off", 5*time.Second, func() bool { return e.inflight.Load() == 0 })
}
