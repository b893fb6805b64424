package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// startRun runs the server as main does, on a free port, and returns its
// base URL and a function that stops it and returns run's error.
func startRun(t *testing.T, args ...string) (string, func() error) {
	t.Helper()
	return startRunAt(t, "127.0.0.1:0", args...)
}

// startRunAt is startRun on a given address.
func startRunAt(t *testing.T, addr string, args ...string) (string, func() error) {
	t.Helper()
	base, stop, _ := startRunLogged(t, addr, args...)
	return base, stop
}

// startRunLogged is startRunAt that also returns the instance's log.
func startRunLogged(t *testing.T, addr string, args ...string) (string, func() error, *logBuffer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	errc := make(chan error, 1)
	var logs bytes.Buffer
	lw := &logBuffer{lockedWriter{w: &logs}, &logs}
	t.Cleanup(func() {
		if t.Failed() {
			lw.mu.Lock()
			defer lw.mu.Unlock()
			t.Logf("log of the instance on %s:\n%s", addr, logs.String())
		}
	})
	go func() {
		// -post-rate 0 unless args say otherwise: every test client posts
		// from one address.
		errc <- run(ctx, append([]string{"-addr", addr, "-post-rate", "0"}, args...), func(string) string { return "" }, lw, ready)
	}()
	select {
	case addr = <-ready:
	case err := <-errc:
		cancel()
		t.Fatalf("run: %v", err)
	case <-time.After(10 * time.Second):
		cancel()
		t.Fatal("server did not start")
	}
	stopped := false
	stop := func() error {
		if stopped {
			return nil
		}
		stopped = true
		cancel()
		select {
		case err := <-errc:
			return err
		case <-time.After(15 * time.Second):
			t.Fatal("run did not return after cancel")
			return nil
		}
	}
	t.Cleanup(func() { stop() })
	return "http://" + addr, stop, lw
}

// logBuffer is an instance's log, written by the instance and read by
// the test.
type logBuffer struct {
	lockedWriter
	buf *bytes.Buffer
}

// String returns what was logged so far.
func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func TestRunShutsDownGracefully(t *testing.T) {
	base, stop := startRun(t, "-poll-timeout", "30s", "-shutdown-timeout", "5s")

	resp, err := http.Get(base + "/")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /: %v %v", resp, err)
	}
	resp.Body.Close()

	// A pending long-poll (empty wall, so it waits) and a WebSocket.
	type answer struct {
		status int
		body   string
		err    error
	}
	polled := make(chan answer, 1)
	go func() {
		resp, err := http.Get(base + "/a/message/updates?wall=shutdown")
		if err != nil {
			polled <- answer{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		polled <- answer{resp.StatusCode, string(b), err}
	}()
	ws, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(base, "http")+"/ws?wall=shutdown", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	select {
	case a := <-polled:
		t.Fatalf("poll answered before shutdown: %+v", a)
	case <-time.After(200 * time.Millisecond):
	}

	done := make(chan error, 1)
	go func() { done <- stop() }()

	a := <-polled
	if a.err != nil || a.status != http.StatusOK || strings.Contains(a.body, `"messages"`) {
		t.Fatalf("pending poll at shutdown: %+v; want 200 without messages", a)
	}
	ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, _, err = ws.ReadMessage()
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.CloseServiceRestart || !strings.HasPrefix(ce.Text, `{"reconnect_ms": `) {
		t.Fatalf("websocket at shutdown: %v; want close 1012 with a reconnect hint", err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run returned %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return")
	}
}

func TestRunPostAndPoll(t *testing.T) {
	base, _ := startRun(t)
	jar := &cookieJar{}
	client := &http.Client{Jar: jar, Timeout: 10 * time.Second}
	resp, err := client.Get(base + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	xsrf := jar.get("_xsrf")
	if xsrf == "" {
		t.Fatal("no _xsrf cookie")
	}
	resp, err = client.PostForm(base+"/a/message/new", url.Values{"body": {"hello"}, "_xsrf": {xsrf}})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), `"body": "hello"`) {
		t.Fatalf("post: %d %s", resp.StatusCode, b)
	}
	resp, err = client.Get(base + "/a/message/updates")
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), `"seq": 1`) {
		t.Fatalf("poll: %s", b)
	}
}

func TestFlags(t *testing.T) {
	env := map[string]string{"WALL_ADDR": "127.0.0.1:9999", "WALL_CACHE_SIZE": "50", "WALL_POLL_TIMEOUT": "3s", "WALL_ALLOWED_ORIGINS": "https://a.example, https://b.example"}
	cfg, err := parseFlags(nil, func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.addr != "127.0.0.1:9999" || cfg.cacheSize != 50 || cfg.server.PollTimeout != 3*time.Second ||
		len(cfg.server.AllowedOrigins) != 2 || cfg.server.AllowedOrigins[1] != "https://b.example" {
		t.Fatalf("env not applied: %+v", cfg)
	}
	cfg, err = parseFlags([]string{"-addr", ":1", "-cache", "7"}, func(k string) string { return env[k] }, io.Discard)
	if err != nil || cfg.addr != ":1" || cfg.cacheSize != 7 {
		t.Fatalf("flags must win over env: %+v %v", cfg, err)
	}
	var help bytes.Buffer
	if _, err := parseFlags([]string{"-help"}, func(string) string { return "" }, &help); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("-help: %v", err)
	}
	for _, name := range []string{"WALL_ADDR", "WALL_CACHE_SIZE", "WALL_BODY_LIMIT", "WALL_POLL_TIMEOUT", "WALL_ALLOWED_ORIGINS", "REDIS_URL", "WALL_PUBLISH_TOKEN", "WALL_CACHE_BYTES"} {
		if !strings.Contains(help.String(), name) {
			t.Errorf("-help does not mention %s", name)
		}
	}
	if cfg.cacheBytes != 256<<20 {
		t.Errorf("default -cache-bytes %d, want 256 MiB", cfg.cacheBytes)
	}
	for in, want := range map[string]int64{"0": 0, "1000": 1000, "64KiB": 64 << 10, "512M": 512 << 20, "2GiB": 2 << 30, " 3 MB": 3 << 20} {
		cfg, err := parseFlags([]string{"-cache-bytes", in}, func(string) string { return "" }, io.Discard)
		if err != nil || cfg.cacheBytes != want {
			t.Errorf("-cache-bytes %q: %d, %v; want %d", in, cfg.cacheBytes, err, want)
		}
	}
	for _, bad := range [][]string{{"-cache", "0"}, {"extra"}, {"-poll-timeout", "soon"}, {"-cache-bytes", "-1"}, {"-cache-bytes", "lots"}, {"-cache-bytes", "9999999999GiB"}} {
		if _, err := parseFlags(bad, func(string) string { return "" }, io.Discard); err == nil {
			t.Errorf("parseFlags(%q) accepted", bad)
		}
	}
	if err := run(context.Background(), []string{"-addr", "127.0.0.1:0", "-redis", "not a url"}, func(string) string { return "" }, io.Discard, nil); err == nil {
		t.Error("run accepted a bad Redis URL")
	}
	if err := run(context.Background(), []string{"-addr", "127.0.0.1:0", "-debug-addr", "127.0.0.1:99999"}, func(string) string { return "" }, io.Discard, nil); err == nil || !strings.Contains(err.Error(), "-debug-addr") {
		t.Errorf("run with a bad -debug-addr: %v", err)
	}
}
