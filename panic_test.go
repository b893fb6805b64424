package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"wall/assets"
	"wall/server"
	"wall/views"
	"wall/wall"
)

// panickingBroker is the memory broker whose Run panics when boom is
// closed.
type panickingBroker struct {
	*wall.MemoryBroker
	boom chan struct{}
}

func (b *panickingBroker) Run(ctx context.Context) error {
	select {
	case <-b.boom:
		panic("test panic in the broker")
	case <-ctx.Done():
		return nil
	}
}

// TestServeShutsDownWhenAPartPanics: a panic at the root of one of the
// parts serve starts (here the broker's Run) is logged at error with its
// stack, and the server shuts down gracefully without being told to (a
// pending long-poll is answered, not cut) and returns the panic as an
// error, so main exits non-zero.
func TestServeShutsDownWhenAPartPanics(t *testing.T) {
	var logs bytes.Buffer
	lw := &lockedWriter{w: &logs}
	log := slog.New(slog.NewTextHandler(lw, nil))
	cfg, err := parseFlags([]string{"-poll-timeout", "30s", "-shutdown-timeout", "5s"}, func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	hub := wall.NewHub(cfg.cacheSize)
	defer hub.Close()
	broker := &panickingBroker{MemoryBroker: wall.NewMemoryBroker(hub), boom: make(chan struct{})}
	srv, err := server.New(cfg.server, log, hub, broker, views.FS, assets.FS)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ready := make(chan string, 1)
	served := make(chan error, 1)
	go func() { served <- serve(context.Background(), cfg, log, hub, broker, srv, ln, nil, ready) }() // never cancelled
	base := "http://" + <-ready

	type answer struct {
		status int
		body   string
		err    error
	}
	polled := make(chan answer, 1)
	go func() {
		resp, err := http.Get(base + "/a/message/updates?wall=panic")
		if err != nil {
			polled <- answer{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		polled <- answer{resp.StatusCode, string(b), err}
	}()
	select {
	case a := <-polled:
		t.Fatalf("poll answered before the panic: %+v", a)
	case <-time.After(200 * time.Millisecond):
	}

	close(broker.boom)
	select {
	case a := <-polled:
		if a.err != nil || a.status != http.StatusOK || strings.Contains(a.body, `"messages"`) {
			t.Fatalf("pending poll at the shutdown after a panic: %+v; want 200 without messages", a)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("pending poll not answered after the broker panicked")
	}
	select {
	case err := <-served:
		if err == nil || !strings.Contains(err.Error(), "broker panicked: test panic in the broker") {
			t.Fatalf("serve returned %v; want the broker's panic", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not return after the broker panicked")
	}
	lw.mu.Lock()
	out := logs.String()
	lw.mu.Unlock()
	var line string
	for l := range strings.Lines(out) {
		if strings.Contains(l, "goroutine panicked") {
			line = l
		}
	}
	for _, want := range []string{"level=ERROR", "goroutine=broker", `panic="test panic in the broker"`, "stack=", "panickingBroker"} {
		if !strings.Contains(line, want) {
			t.Errorf("panic log line lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(out, "shutting down: a part of the server failed") {
		t.Errorf("no shutdown log line:\n%s", out)
	}
}
