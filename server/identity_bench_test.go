package server

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/google/uuid"

	"wall/assets"
	"wall/server/internal/admit"
	"wall/server/internal/identity"
	"wall/views"
	"wall/wall"
)

// The cost of a token check, with a token against the same request
// without, so that benchstat can compare them:
//
//	go test -run '^$' -bench 'AdmitToken|RepollToken|WSHandshakeToken' -count 6 ./server/ | tee id.txt
//
// BenchmarkAdmitToken is admission alone, for a request read by net/http;
// BenchmarkRepollToken a keep-alive re-poll that the long-poll engine
// reads, admits (on its reactor goroutine) and answers at once;
// BenchmarkWSHandshakeToken a WebSocket handshake, dial to 101.

// benchIDEnv is benchNewEnv with identity: tokens on, anonymous clients
// may post.
func benchIDEnv(b *testing.B) *benchEnv {
	b.Helper()
	hub := wall.NewHub(200)
	broker := wall.NewMemoryBroker(hub)
	srv, err := New(idConfig(identity.AnonymousPost), slog.New(slog.NewTextHandler(io.Discard, nil)), hub, broker, views.FS, assets.FS)
	if err != nil {
		b.Fatal(err)
	}
	ts := httptest.NewUnstartedServer(srv)
	ts.Listener = srv.Listener(ts.Listener)
	ts.Start()
	return &benchEnv{hub: hub, broker: broker, srv: srv, ts: ts, addr: ts.Listener.Addr().String()}
}

// benchIDCases are the requests compared: no token, a token in each
// carrier, and the token's holder on a private wall.
func benchIDCases(b *testing.B) []struct{ name, wall, query, header string } {
	tok := maryToken(b)
	return []struct{ name, wall, query, header string }{
		{"token=none", benchWall, "", ""},
		{"token=arg", benchWall, "&token=" + tok, ""},
		{"token=header", benchWall, "", "Authorization: Bearer " + tok},
		{"token=cookie", benchWall, "", "Cookie: " + admit.TokenCookie + "=" + tok},
		{"token=header,wall=private", "user:mary", "", "Authorization: Bearer " + tok},
	}
}

func BenchmarkAdmitToken(b *testing.B) {
	e := benchIDEnv(b)
	defer e.close()
	for _, kind := range []admit.Kind{admit.Poll, admit.Socket} {
		for _, tc := range benchIDCases(b) {
			b.Run("kind="+kind.String()+"/"+tc.name, func(b *testing.B) {
				r := httptest.NewRequest(http.MethodGet, "/a/message/updates?wall="+tc.wall+"&cursor=1"+tc.query, nil)
				if k, v, ok := bytes.Cut([]byte(tc.header), []byte(": ")); ok {
					r.Header.Set(string(k), string(v))
				}
				a := args{}
				mergeQuery(a, r.URL.RawQuery)
				src := httpSource{r, a}
				b.ReportAllocs()
				for b.Loop() {
					if t, err := e.srv.admit.Admit(src, kind); err != nil || t.Wall != tc.wall {
						b.Fatalf("%v %+v", err, t)
					}
				}
			})
		}
	}
}

func BenchmarkRepollToken(b *testing.B) {
	for _, tc := range benchIDCases(b) {
		b.Run(tc.name, func(b *testing.B) {
			e := benchIDEnv(b)
			defer e.close()
			for range 2 {
				if _, _, err := e.broker.Publish(context.Background(), wall.Post{Wall: tc.wall, ID: uuid.NewString(), Body: benchBody}); err != nil {
					b.Fatal(err)
				}
			}
			c, err := net.DialTimeout("tcp", e.addr, benchWait)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			r := bufio.NewReaderSize(c, 4096)
			poll := func(cursor uint64) []byte {
				req := "GET /a/message/updates?wall=" + tc.wall + "&cursor=" + strconv.FormatUint(cursor, 10) + tc.query +
					" HTTP/1.1\r\nHost: b\r\n"
				if tc.header != "" {
					req += tc.header + "\r\n"
				}
				return []byte(req + "\r\n")
			}
			body := make([]byte, 0, 4096)
			roundTrip := func(req []byte) {
				if _, err := c.Write(req); err != nil {
					b.Fatal(err)
				}
				status, resp, err := benchReadResponse(r, body)
				if err != nil || status != 200 {
					b.Fatalf("poll: %d %s %v", status, resp, err)
				}
				body = resp[:0]
			}
			// The first poll waits: the engine takes the connection over
			// and reads every later request itself.
			if _, err := c.Write(poll(2)); err != nil {
				b.Fatal(err)
			}
			for deadline := time.Now().Add(benchWait); e.srv.engine.Stats().Conns != 1; time.Sleep(time.Millisecond) {
				if time.Now().After(deadline) {
					b.Fatal("the engine did not take the connection")
				}
			}
			if _, _, err := e.broker.Publish(context.Background(), wall.Post{Wall: tc.wall, ID: uuid.NewString(), Body: benchBody}); err != nil {
				b.Fatal(err)
			}
			if status, resp, err := benchReadResponse(r, body); err != nil || status != 200 {
				b.Fatalf("first poll: %d %s %v", status, resp, err)
			}
			req := poll(2) // answered at once with the third message
			b.ReportAllocs()
			for b.Loop() {
				roundTrip(req)
			}
		})
	}
}

func BenchmarkWSHandshakeToken(b *testing.B) {
	for _, tc := range benchIDCases(b) {
		b.Run(tc.name, func(b *testing.B) {
			e := benchIDEnv(b)
			defer e.close()
			req := []byte(wsHandshake("/ws?wall="+tc.wall+tc.query, func() []string {
				if tc.header == "" {
					return nil
				}
				return []string{tc.header}
			}()...))
			r := bufio.NewReaderSize(nil, 1024)
			b.ReportAllocs()
			for b.Loop() {
				c, err := net.DialTimeout("tcp", e.addr, benchWait)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := c.Write(req); err != nil {
					b.Fatal(err)
				}
				r.Reset(c)
				line, err := r.ReadSlice('\n')
				if err != nil || !bytes.HasPrefix(line, []byte("HTTP/1.1 101 ")) {
					b.Fatalf("handshake: %q %v", line, err)
				}
				for len(line) > 2 {
					if line, err = r.ReadSlice('\n'); err != nil {
						b.Fatal(err)
					}
				}
				c.Close()
			}
			b.StopTimer()
			benchWaitUnsubscribed(b, e.hub)
		})
	}
}
