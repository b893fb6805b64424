package server

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"wall/server/internal/wsframe"
)

// Protocol-level tests of the server's own RFC 6455 reader and writer,
// against a real listener: gorilla does the handshake, then frames are
// written by hand on its net.Conn where gorilla would not write them.

// testMask is the masking key of the test's client frames. It is not zero,
// so a reader that forgot to unmask would return garbage.
var testMask = [4]byte{0x37, 0xfa, 0x21, 0x3d}

// frameHeader encodes the header of a frame whose first byte is b0 (FIN,
// RSV and opcode) and whose payload is n bytes, with the masking key when
// masked.
func frameHeader(b0 byte, masked bool, n uint64) []byte {
	h := []byte{b0, 0}
	switch {
	case n < 126:
		h[1] = byte(n)
	case n <= 0xffff:
		h[1] = 126
		h = binary.BigEndian.AppendUint16(h, uint16(n))
	default:
		h[1] = 127
		h = binary.BigEndian.AppendUint64(h, n)
	}
	if masked {
		h[1] |= 0x80
		h = append(h, testMask[:]...)
	}
	return h
}

// rawFrame encodes a whole frame with first byte b0; the payload is masked
// when masked is set, as a client must.
func rawFrame(b0 byte, masked bool, payload []byte) []byte {
	b := frameHeader(b0, masked, uint64(len(payload)))
	for i, c := range payload {
		if masked {
			c ^= testMask[i&3]
		}
		b = append(b, c)
	}
	return b
}

// clientFrame encodes a masked client frame.
func clientFrame(fin bool, op byte, payload string) []byte {
	b0 := op
	if fin {
		b0 |= 0x80
	}
	return rawFrame(b0, true, []byte(payload))
}

// frames concatenates encoded frames.
func frames(fs ...[]byte) []byte { return bytes.Join(fs, nil) }

// wallSubs returns the subscribers of wall name; a wall dropped by the hub
// has none.
func wallSubs(e *testEnv, name string) int {
	if w := e.hub.Lookup(name); w != nil {
		return w.Subscribers()
	}
	return 0
}

// unsubscribed waits until wall name has no subscribers.
func unsubscribed(t *testing.T, e *testEnv, name string) {
	t.Helper()
	waitFor(t, "no subscribers on "+name, 5*time.Second, func() bool { return wallSubs(e, name) == 0 })
}

// writeRaw writes hand-built frames on c's connection, under a deadline.
func writeRaw(t *testing.T, c *websocket.Conn, fs ...[]byte) {
	t.Helper()
	nc := c.NetConn()
	nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := nc.Write(frames(fs...)); err != nil {
		t.Fatalf("raw write: %v", err)
	}
}

// wireOf reads c's connection with the wire readers, past gorilla. Only
// for a c nothing has read from since the dial: bytes gorilla buffered
// would be lost. Its handshake read cannot hold a frame the server sent
// later (a message posted, a ping, a reply to a frame the test writes).
func wireOf(t *testing.T, c *websocket.Conn) *wireConn {
	nc := c.NetConn()
	return &wireConn{t: t, c: nc, br: bufio.NewReader(nc)}
}

// wsEvents runs a gorilla read loop on c and reports what arrives.
type wsEvents struct {
	msgs  chan []byte
	pings chan string
	pongs chan string
	err   chan error // the read loop's final error
}

// readEvents starts the read loop. Pings are answered as gorilla would.
func readEvents(c *websocket.Conn) *wsEvents {
	ev := &wsEvents{msgs: make(chan []byte, 100), pings: make(chan string, 100),
		pongs: make(chan string, 100), err: make(chan error, 1)}
	c.SetPongHandler(func(s string) error { ev.pongs <- s; return nil })
	c.SetPingHandler(func(s string) error {
		ev.pings <- s
		err := c.WriteControl(websocket.PongMessage, []byte(s), time.Now().Add(time.Second))
		if errors.Is(err, websocket.ErrCloseSent) {
			return nil
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return nil
		}
		return err
	})
	go func() {
		for {
			_, b, err := c.ReadMessage()
			if err != nil {
				ev.err <- err
				return
			}
			ev.msgs <- b
		}
	}()
	return ev
}

// recv waits for a value on ch.
func recv[T any](t *testing.T, what string, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(5 * time.Second):
		t.Fatalf("no %s within 5s", what)
		panic("unreachable")
	}
}

// msg waits for the next data message and decodes it.
func (ev *wsEvents) msg(t *testing.T) testMsg {
	t.Helper()
	select {
	case b := <-ev.msgs:
		return decodeMsg(t, b)
	case err := <-ev.err:
		t.Fatalf("connection ended while waiting for a message: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("no message within 5s")
	}
	panic("unreachable")
}

func TestWSProtoClientPing(t *testing.T) {
	e := newTestEnv(t, Config{}, 10)
	c := e.mustDialWS("/ws", "main", 1)
	ev := readEvents(c)
	for _, p := range []string{"hello", "", strings.Repeat("p", 125)} {
		if err := c.WriteControl(websocket.PingMessage, []byte(p), time.Now().Add(5*time.Second)); err != nil {
			t.Fatal(err)
		}
		if got := recv(t, "pong", ev.pongs); got != p {
			t.Fatalf("pong %q, want %q", got, p)
		}
	}
}

// A post in three fragments is reassembled, posted and broadcast.
func TestWSProtoFragmentedPost(t *testing.T) {
	e := newTestEnv(t, Config{}, 10)
	a := e.mustDialWS("/ws", "main", 1)
	b := e.mustDialWS("/ws", "main", 2)
	writeRaw(t, a,
		clientFrame(false, wsframe.OpText, `{"bo`),
		clientFrame(false, wsframe.OpContinuation, ``),
		clientFrame(true, wsframe.OpContinuation, `dy": "hi"}`),
	)
	for _, c := range []*websocket.Conn{a, b} {
		if m := readWSMsg(t, c); m.Seq != 1 || m.Body != "hi" {
			t.Fatalf("got %+v", m)
		}
	}
	// A UTF-8 sequence split between fragments is one valid character.
	writeRaw(t, a,
		clientFrame(false, wsframe.OpText, "{\"body\": \"caf\xc3"),
		clientFrame(true, wsframe.OpContinuation, "\xa9\"}"),
	)
	if m := readWSMsg(t, b); m.Seq != 2 || m.Body != "café" {
		t.Fatalf("got %+v", m)
	}
}

// A ping between the fragments of a post is answered at once, before the
// post is complete, and the post goes through.
func TestWSProtoPingInsideFragmentedPost(t *testing.T) {
	e := newTestEnv(t, Config{}, 10)
	a := e.mustDialWS("/ws", "main", 1)
	b := e.mustDialWS("/ws", "main", 2)
	ev := readEvents(a)
	writeRaw(t, a, clientFrame(false, wsframe.OpText, `{"bo`), clientFrame(true, wsframe.OpPing, "mid"))
	if got := recv(t, "pong", ev.pongs); got != "mid" {
		t.Fatalf("pong %q", got)
	}
	writeRaw(t, a, clientFrame(true, wsframe.OpContinuation, `dy": "hi"}`))
	if m := readWSMsg(t, b); m.Seq != 1 || m.Body != "hi" {
		t.Fatalf("got %+v", m)
	}
	if m := ev.msg(t); m.Seq != 1 || m.Body != "hi" {
		t.Fatalf("poster got %+v", m)
	}
}

// Control frames do not count toward the read limit: a ping after
// fragments that reach the limit exactly is answered and the post works.
func TestWSProtoPingInsideMessageAtLimit(t *testing.T) {
	e := newTestEnv(t, Config{BodyLimit: 100}, 10)
	a := e.mustDialWS("/ws", "main", 1)
	ev := readEvents(a)
	limit := 100*6 + frameOverhead // readPump's limit
	head := `{"body": "full", "pad": "`
	post := head + strings.Repeat("x", limit-len(head)-2) + `"}`
	writeRaw(t, a,
		clientFrame(false, wsframe.OpText, post),
		clientFrame(true, wsframe.OpPing, strings.Repeat("p", 125)),
		clientFrame(true, wsframe.OpContinuation, ""),
	)
	if got := recv(t, "pong", ev.pongs); len(got) != 125 {
		t.Fatalf("pong %q", got)
	}
	if m := ev.msg(t); m.Seq != 1 || m.Body != "full" {
		t.Fatalf("got %+v", m)
	}
	// One byte more is too big.
	writeRaw(t, a, clientFrame(false, wsframe.OpText, post), clientFrame(true, wsframe.OpContinuation, " "))
	select {
	case err := <-ev.err:
		var ce *websocket.CloseError
		if !errors.As(err, &ce) || ce.Code != websocket.CloseMessageTooBig {
			t.Fatalf("connection ended with %v, want close 1009", err)
		}
	case b := <-ev.msgs:
		t.Fatalf("got frame %.80s, want close 1009", b)
	case <-time.After(5 * time.Second):
		t.Fatal("no close within 5s")
	}
}

// The client's close is echoed with a close frame, then the server ends the
// connection and unsubscribes it.
func TestWSProtoClientClose(t *testing.T) {
	for _, tc := range []struct {
		name    string
		payload string
		code    int
	}{
		{"1000 bye", "\x03\xe8bye", 1000},
		{"4000", "\x0f\xa0", 4000},
		{"no code", "", 1000},
		// Codes a peer may not send are answered with 1002, not echoed
		// (RFC 6455 section 7.4), and so is a one-byte payload.
		{"999", "\x03\xe7", 1002},
		{"1004 reserved", "\x03\xec", 1002},
		{"1005 no status", "\x03\xed", 1002},
		{"1006 abnormal", "\x03\xee", 1002},
		{"1015 TLS", "\x03\xf7", 1002},
		{"1016 unassigned", "\x03\xf8", 1002},
		{"2999 unassigned", "\x0b\xb7", 1002},
		{"5000", "\x13\x88", 1002},
		{"one byte", "\x03", 1002},
		{"invalid UTF-8 reason", "\x03\xe8\xff", 1007},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newTestEnv(t, Config{}, 10)
			c := e.mustDialWS("/ws", "main", 1)
			wc := wireOf(t, c)
			writeRaw(t, c, clientFrame(true, wsframe.OpClose, tc.payload))
			f := wc.frame(5 * time.Second)
			if f.Opcode != wireOpClose || len(f.Payload) < 2 {
				t.Fatalf("reply %v, want a close frame with a code", f)
			}
			if code, _ := f.CloseCode(); code != tc.code {
				t.Fatalf("close reply code %d, want %d", code, tc.code)
			}
			wc.closed(5 * time.Second)
			unsubscribed(t, e, "main")
		})
	}
}

// Protocol violations end the connection with the matching close code;
// other subscribers stay.
func TestWSProtoViolations(t *testing.T) {
	e := newTestEnv(t, Config{BodyLimit: 100}, 10)
	other := e.mustDialWS("/ws", "main", 1)
	for _, tc := range []struct {
		name  string
		input []byte
		code  int
	}{
		{"unmasked", rawFrame(0x80|wsframe.OpText, false, []byte(`{"body": "x"}`)), websocket.CloseProtocolError},
		{"reserved bit", rawFrame(0x80|0x40|wsframe.OpText, true, []byte(`{"body": "x"}`)), websocket.CloseProtocolError},
		{"unknown opcode", rawFrame(0x80|0x3, true, nil), websocket.CloseProtocolError},
		{"long ping", clientFrame(true, wsframe.OpPing, strings.Repeat("p", 126)), websocket.CloseProtocolError},
		{"fragmented ping", clientFrame(false, wsframe.OpPing, "p"), websocket.CloseProtocolError},
		{"continuation without a start", clientFrame(true, wsframe.OpContinuation, "x"), websocket.CloseProtocolError},
		{"text inside a fragmented text", frames(clientFrame(false, wsframe.OpText, "{"), clientFrame(true, wsframe.OpText, "}")),
			websocket.CloseProtocolError},
		// Only a header: the server answers without waiting for the payload.
		{"oversized", frameHeader(0x80|wsframe.OpText, true, 1<<40), websocket.CloseMessageTooBig},
		{"oversized across fragments", frames(
			clientFrame(false, wsframe.OpText, strings.Repeat("x", 1000)),
			frameHeader(wsframe.OpContinuation, true, 1000),
		), websocket.CloseMessageTooBig},
		{"invalid UTF-8", clientFrame(true, wsframe.OpText, "{\"body\": \"\xff\"}"), websocket.CloseInvalidFramePayloadData},
		{"invalid UTF-8 after an empty fragment", frames(
			clientFrame(false, wsframe.OpText, ""),
			clientFrame(true, wsframe.OpContinuation, "{\"body\": \"\xff\"}"),
		), websocket.CloseInvalidFramePayloadData},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := e.mustDialWS("/ws", "main", 2)
			writeRaw(t, c, tc.input)
			expectClose(t, c, tc.code)
			e.subscribed("main", 1)
		})
	}
	e.post("", "still here")
	if m := readWSMsg(t, other); m.Seq != 1 || m.Body != "still here" {
		t.Fatalf("got %+v", m)
	}
}

// Binary frames post like text frames, but their UTF-8 is checked by the
// post: invalid text is an error frame, not a close.
func TestWSProtoBinary(t *testing.T) {
	e := newTestEnv(t, Config{}, 10)
	a := e.mustDialWS("/ws", "main", 1)
	b := e.mustDialWS("/ws", "main", 2)
	if err := a.WriteMessage(websocket.BinaryMessage, []byte(`{"body":"bin"}`)); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*websocket.Conn{a, b} {
		if m := readWSMsg(t, c); m.Seq != 1 || m.Body != "bin" {
			t.Fatalf("got %+v", m)
		}
	}
	if err := a.WriteMessage(websocket.BinaryMessage, []byte("{\"body\":\"\xff\"}")); err != nil {
		t.Fatal(err)
	}
	if msg := readWSError(t, a); !strings.Contains(strings.ToLower(msg), "unicode") {
		t.Fatalf("error %q", msg)
	}
	// A fragmented binary post works too, and the connection is still up.
	writeRaw(t, a, clientFrame(false, wsframe.OpBinary, `{"body":`), clientFrame(true, wsframe.OpContinuation, `"bin2"}`))
	for _, c := range []*websocket.Conn{a, b} {
		if m := readWSMsg(t, c); m.Seq != 2 || m.Body != "bin2" {
			t.Fatalf("got %+v", m)
		}
	}
}

// The server pings every PingInterval; a client that answers stays.
//
// A pong must arrive within PingInterval/9 of the previous pong's timing
// (the read deadline is 10/9 of the interval): 22 ms at 200 ms, which a
// loaded machine running -race can miss (it did, with the CPUs saturated).
// A second leaves 111 ms.
func TestWSProtoServerPings(t *testing.T) {
	const interval = time.Second
	e := newTestEnv(t, Config{PingInterval: interval}, 10)
	c := e.mustDialWS("/ws", "main", 1)
	ev := readEvents(c)
	start := time.Now()
	for i := 0; i < 2; i++ {
		select {
		case p := <-ev.pings:
			if p != "" {
				t.Fatalf("ping payload %q", p)
			}
		case err := <-ev.err:
			t.Fatalf("connection ended after %d pings: %v", i, err)
		case <-time.After(3 * time.Second):
			t.Fatalf("%d pings in %v", i, time.Since(start))
		}
	}
	// The second ping comes after the first read deadline (10/9 of the
	// interval from the upgrade): the first pong kept the connection.
	if n := wallSubs(e, "main"); n != 1 {
		t.Fatalf("%d subscribers after %v of pongs", n, time.Since(start))
	}
	e.post("", "alive")
	if m := ev.msg(t); m.Body != "alive" {
		t.Fatalf("got %+v", m)
	}
}

// A peer that sends nothing, not even pongs, is cut off once the read
// deadline (PingInterval*10/9) passes.
func TestWSProtoSilentPeerCutOff(t *testing.T) {
	const interval = 200 * time.Millisecond
	e := newTestEnv(t, Config{PingInterval: interval}, 10)
	start := time.Now()
	c := e.mustDialWS("/ws", "main", 1)
	wc := wireOf(t, c) // never written to, not read until the cut
	waitFor(t, "the silent peer to be cut off", 3*time.Second, func() bool { return wallSubs(e, "main") == 0 })
	if d, pongWait := time.Since(start), interval*10/9; d < pongWait {
		t.Fatalf("cut off after %v, before the read deadline %v", d, pongWait)
	}
	// What it was sent: pings only, then the end of the connection.
	wc.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		f, err := readWireFrame(wc.br)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("reading what the cut-off peer was sent: %v, want pings then EOF", err)
		}
		if f.Opcode != wireOpPing {
			t.Fatalf("%v, want only pings", f)
		}
	}
}

// Messages posted while a subscriber is not reading are written together
// but still arrive once each, in order, one frame per message.
func TestWSProtoWriteCoalescing(t *testing.T) {
	const n = 50
	e := newTestEnv(t, Config{}, 100)
	c := e.mustDialWS("/ws", "main", 1)
	for i := 1; i <= n; i++ {
		e.publish("", fmt.Sprintf("m%d", i))
	}
	time.Sleep(20 * time.Millisecond) // let the frames pile up unread
	e.publish("", "last")
	wc := wireOf(t, c)
	for i := 1; i <= n+1; i++ {
		f := wc.frame(5 * time.Second)
		if f.Opcode != wireOpText || !f.Fin {
			t.Fatalf("frame %d: op %x fin %v", i, f.Opcode, f.Fin)
		}
		var m testMsg
		if err := json.Unmarshal(f.Payload, &m); err != nil {
			t.Fatalf("frame %d is not one message: %.100q: %v", i, f.Payload, err)
		}
		want := fmt.Sprintf("m%d", i)
		if i == n+1 {
			want = "last"
		}
		if m.Seq != uint64(i) || m.Body != want {
			t.Fatalf("frame %d: seq %d body %q, want seq %d body %q", i, m.Seq, m.Body, i, want)
		}
	}
}

// Every one of many subscribers gets every post of several concurrent
// posters, all in the same order.
func TestWSProtoManySubscribers(t *testing.T) {
	const (
		clients   = 200
		posters   = 4
		perPoster = 5
		posts     = posters * perPoster
	)
	e := newTestEnv(t, Config{}, 100)
	conns := make([]*websocket.Conn, clients)
	for i := range conns {
		c, _, err := e.dialWS("/ws", nil)
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		t.Cleanup(func() { c.Close() })
		conns[i] = c
	}
	e.subscribed("main", clients)

	got := make([][]string, clients) // ids in arrival order
	errs := make(chan error, clients+posters)
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			for want := uint64(1); want <= posts; want++ {
				_, b, err := c.ReadMessage()
				if err != nil {
					errs <- fmt.Errorf("client %d, waiting for seq %d: %v", i, want, err)
					return
				}
				var m testMsg
				if err := json.Unmarshal(b, &m); err != nil || m.Seq != want {
					errs <- fmt.Errorf("client %d: frame %.80s, want seq %d", i, b, want)
					return
				}
				got[i] = append(got[i], m.ID+" "+m.Body)
			}
		}()
	}
	for p := 0; p < posters; p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := conns[p] // each poster is the only writer of its connection
			for k := 0; k < perPoster; k++ {
				c.SetWriteDeadline(time.Now().Add(5 * time.Second))
				if err := c.WriteMessage(websocket.TextMessage, fmt.Appendf(nil, `{"body": "p%d-%d"}`, p, k)); err != nil {
					errs <- fmt.Errorf("poster %d: %v", p, err)
					return
				}
			}
		}()
	}
	waitDone(t, "readers and posters", 20*time.Second, wg.Wait)
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		return
	}
	bodies := map[string]bool{}
	for _, s := range got[0] {
		bodies[s[strings.IndexByte(s, ' ')+1:]] = true
	}
	for p := 0; p < posters; p++ {
		for k := 0; k < perPoster; k++ {
			if !bodies[fmt.Sprintf("p%d-%d", p, k)] {
				t.Fatalf("client 0 did not get p%d-%d: %q", p, k, got[0])
			}
		}
	}
	for i := 1; i < clients; i++ {
		if fmt.Sprint(got[i]) != fmt.Sprint(got[0]) {
			t.Fatalf("client %d got\n%q\nclient 0 got\n%q", i, got[i], got[0])
		}
	}
}
