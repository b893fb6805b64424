package server

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/textproto"
	"strconv"
	"strings"
	"testing"
	"time"
)

// This file is the test side of the wire: one reader of HTTP/1.x responses
// and one reader of WebSocket server frames, both over a bufio.Reader on a
// raw connection, and wireConn, a client that writes requests byte for byte
// and reads with them. They are strict where the server must be exact
// (framing, Content-Length, masking) so that tests reading through them
// check the bytes, not what a lenient client would accept.

// maxWireBody bounds a body or frame payload the readers accept.
const maxWireBody = 64 << 20

// wireResponse is one HTTP/1.x response as read off the wire.
type wireResponse struct {
	Proto  string      // "HTTP/1.1"
	Status int         // 200
	Reason string      // "OK"
	Header http.Header // canonical names, every value in the order sent
	Body   []byte      // de-chunked if it was sent chunked
	Head   []byte      // status line and header lines as sent, through the empty line
}

// Closes reports whether the response says the server closes the
// connection after it: "Connection: close", or HTTP/1.0 without
// keep-alive.
func (r *wireResponse) Closes() bool {
	for _, v := range r.Header.Values("Connection") {
		for _, tok := range strings.Split(v, ",") {
			switch strings.ToLower(strings.TrimSpace(tok)) {
			case "close":
				return true
			case "keep-alive":
				if r.Proto == "HTTP/1.0" {
					return false
				}
			}
		}
	}
	return r.Proto == "HTTP/1.0"
}

func (r *wireResponse) String() string {
	return fmt.Sprintf("%s %d %s %q", r.Proto, r.Status, r.Header.Get("Content-Type"), r.Body)
}

// readWireResponse reads one response to a request other than HEAD from
// br. The body is framed by Content-Length (exactly one, digits only) or by
// chunked Transfer-Encoding, never both; a response with neither has no
// body if its status has none (1xx, 204, 304), else it runs to EOF (the
// server must then close). Header lines must be "Name: value" ended by
// CRLF; obsolete line folding is refused.
func readWireResponse(br *bufio.Reader) (*wireResponse, error) {
	return readWireResponseTo(br, http.MethodGet)
}

// readWireResponseTo is readWireResponse for a request of method: the
// response to HEAD has no body, whatever its framing headers announce
// (they describe the GET's), though they must still be well formed.
func readWireResponseTo(br *bufio.Reader, method string) (*wireResponse, error) {
	var head bytes.Buffer
	line, err := readCRLFLine(br, &head)
	if err != nil {
		return nil, fmt.Errorf("status line: %w", err)
	}
	proto, rest, ok1 := strings.Cut(line, " ")
	code, reason, _ := strings.Cut(rest, " ")
	status, err := strconv.Atoi(code)
	if !ok1 || (proto != "HTTP/1.1" && proto != "HTTP/1.0") || err != nil || len(code) != 3 || status < 100 {
		return nil, fmt.Errorf("bad status line %q", line)
	}
	r := &wireResponse{Proto: proto, Status: status, Reason: reason, Header: http.Header{}}
	for {
		line, err := readCRLFLine(br, &head)
		if err != nil {
			return nil, fmt.Errorf("header: %w", err)
		}
		if line == "" {
			break
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok || name == "" || strings.ContainsAny(name, " \t") || line[0] == ' ' || line[0] == '\t' {
			return nil, fmt.Errorf("bad header line %q", line)
		}
		r.Header.Add(textproto.CanonicalMIMEHeaderKey(name), strings.Trim(value, " \t"))
	}
	r.Head = head.Bytes()

	lengths := r.Header.Values("Content-Length")
	chunked := false
	for _, te := range r.Header.Values("Transfer-Encoding") {
		if !strings.EqualFold(te, "chunked") {
			return nil, fmt.Errorf("Transfer-Encoding %q", te)
		}
		chunked = true
	}
	switch {
	case chunked && len(lengths) > 0:
		return nil, errors.New("both Content-Length and chunked")
	case len(lengths) > 1:
		return nil, fmt.Errorf("%d Content-Length headers", len(lengths))
	case method == http.MethodHead:
		if len(lengths) == 1 {
			if _, err := strconv.ParseUint(lengths[0], 10, 63); err != nil {
				return nil, fmt.Errorf("Content-Length %q", lengths[0])
			}
		}
	case chunked:
		b, err := io.ReadAll(io.LimitReader(httputil.NewChunkedReader(br), maxWireBody))
		if err != nil {
			return nil, fmt.Errorf("chunked body: %w", err)
		}
		// The trailer section (none expected) ends with an empty line.
		if line, err := readCRLFLine(br, nil); err != nil || line != "" {
			return nil, fmt.Errorf("after the last chunk: %q %v", line, err)
		}
		r.Body = b
	case len(lengths) == 1:
		n, err := strconv.ParseUint(lengths[0], 10, 63)
		if err != nil || n > maxWireBody {
			return nil, fmt.Errorf("Content-Length %q", lengths[0])
		}
		r.Body = make([]byte, n)
		if _, err := io.ReadFull(br, r.Body); err != nil {
			return nil, fmt.Errorf("body (%d bytes): %w", n, err)
		}
	case status < 200 || status == 204 || status == 304:
	default:
		b, err := io.ReadAll(io.LimitReader(br, maxWireBody))
		if err != nil {
			return nil, fmt.Errorf("body to EOF: %w", err)
		}
		r.Body = b
	}
	return r, nil
}

// readCRLFLine reads one line ended by CRLF (a bare LF is an error) and
// returns it without the CRLF; raw, if not nil, gets the line as read.
func readCRLFLine(br *bufio.Reader, raw *bytes.Buffer) (string, error) {
	var line []byte
	for {
		frag, err := br.ReadSlice('\n')
		line = append(line, frag...)
		if err == bufio.ErrBufferFull && len(line) < 64<<10 {
			continue
		}
		if err != nil {
			return "", err
		}
		break
	}
	if raw != nil {
		raw.Write(line)
	}
	if len(line) < 2 || line[len(line)-2] != '\r' {
		return "", fmt.Errorf("line %q not ended by CRLF", line)
	}
	return string(line[:len(line)-2]), nil
}

// WebSocket opcodes (RFC 6455 §5.2).
const (
	wireOpContinuation = 0x0
	wireOpText         = 0x1
	wireOpBinary       = 0x2
	wireOpClose        = 0x8
	wireOpPing         = 0x9
	wireOpPong         = 0xa
)

// wireFrame is one WebSocket frame sent by the server.
type wireFrame struct {
	Fin     bool
	Opcode  byte
	Payload []byte
}

// CloseCode returns a close frame's status code (1005, "no status", when
// its payload is empty) and reason.
func (f wireFrame) CloseCode() (int, string) {
	if len(f.Payload) < 2 {
		return 1005, ""
	}
	return int(binary.BigEndian.Uint16(f.Payload)), string(f.Payload[2:])
}

func (f wireFrame) String() string {
	return fmt.Sprintf("frame fin=%v op=%#x %q", f.Fin, f.Opcode, f.Payload)
}

// readWireFrame reads one frame as a client must accept it from a server
// (RFC 6455 §5): unmasked, reserved bits clear, a known opcode, the
// shortest length encoding, and control frames final and at most 125
// bytes. It does not join fragments.
func readWireFrame(br *bufio.Reader) (wireFrame, error) {
	var h [2]byte
	if _, err := io.ReadFull(br, h[:]); err != nil {
		return wireFrame{}, err
	}
	f := wireFrame{Fin: h[0]&0x80 != 0, Opcode: h[0] & 0x0f}
	switch {
	case h[0]&0x70 != 0:
		return f, fmt.Errorf("reserved bits set: %#x", h[0])
	case h[1]&0x80 != 0:
		return f, errors.New("server frame is masked")
	case f.Opcode > wireOpBinary && f.Opcode < wireOpClose || f.Opcode > wireOpPong:
		return f, fmt.Errorf("reserved opcode %#x", f.Opcode)
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var ext [2]byte
		if _, err := io.ReadFull(br, ext[:]); err != nil {
			return f, err
		}
		if n = uint64(binary.BigEndian.Uint16(ext[:])); n < 126 {
			return f, fmt.Errorf("length %d in a 16-bit field", n)
		}
	case 127:
		var ext [8]byte
		if _, err := io.ReadFull(br, ext[:]); err != nil {
			return f, err
		}
		if n = binary.BigEndian.Uint64(ext[:]); n <= 0xffff || n > maxWireBody {
			return f, fmt.Errorf("length %d in a 64-bit field", n)
		}
	}
	if f.Opcode >= wireOpClose && (!f.Fin || n > 125) {
		return f, fmt.Errorf("control frame %#x: fin %v, %d bytes", f.Opcode, f.Fin, n)
	}
	f.Payload = make([]byte, n)
	if _, err := io.ReadFull(br, f.Payload); err != nil {
		return f, fmt.Errorf("payload (%d bytes): %w", n, err)
	}
	if f.Opcode == wireOpClose && n == 1 {
		return f, errors.New("close frame with a 1-byte payload")
	}
	return f, nil
}

// wireConn is a client connection that writes requests byte for byte and
// reads responses and frames with the readers above, each under a
// deadline. Only the test goroutine uses it, except for readAsync.
type wireConn struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

// dialWire connects to addr; the connection is closed when the test ends.
func dialWire(t *testing.T, addr string) *wireConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &wireConn{t: t, c: c, br: bufio.NewReader(c)}
}

// send writes s as it is.
func (w *wireConn) send(s string) {
	w.t.Helper()
	w.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(w.c, s); err != nil {
		w.t.Fatalf("writing request: %v", err)
	}
}

// response reads one response within d.
func (w *wireConn) response(d time.Duration) *wireResponse {
	w.t.Helper()
	return w.responseTo(http.MethodGet, d)
}

// responseTo reads the response to a request of method within d.
func (w *wireConn) responseTo(method string, d time.Duration) *wireResponse {
	w.t.Helper()
	w.c.SetReadDeadline(time.Now().Add(d))
	r, err := readWireResponseTo(w.br, method)
	if err != nil {
		w.t.Fatalf("reading a response to %s: %v", method, err)
	}
	return r
}

// wireResult is what readAsync delivers.
type wireResult struct {
	resp *wireResponse
	err  error
}

// readAsync reads one response on a goroutine (within d) and delivers it;
// the test must not read w until it has.
func (w *wireConn) readAsync(d time.Duration) <-chan wireResult {
	ch := make(chan wireResult, 1)
	w.c.SetReadDeadline(time.Now().Add(d))
	go func() {
		r, err := readWireResponse(w.br)
		ch <- wireResult{r, err}
	}()
	return ch
}

// frame reads one WebSocket frame within d.
func (w *wireConn) frame(d time.Duration) wireFrame {
	w.t.Helper()
	w.c.SetReadDeadline(time.Now().Add(d))
	f, err := readWireFrame(w.br)
	if err != nil {
		w.t.Fatalf("reading a frame: %v", err)
	}
	return f
}

// closed checks that the server closes the connection within d with
// nothing more to read, in order: EOF. A reset is refused too; the
// server resets only a connection it closes with bytes left unread, or
// one it aborts.
func (w *wireConn) closed(d time.Duration) {
	w.t.Helper()
	w.c.SetReadDeadline(time.Now().Add(d))
	b, err := w.br.ReadByte()
	var ne net.Error
	switch {
	case err == nil:
		rest, _ := w.br.Peek(w.br.Buffered())
		w.t.Fatalf("connection not closed: read %q", append([]byte{b}, rest...))
	case errors.As(err, &ne) && ne.Timeout():
		w.t.Fatalf("connection not closed within %v", d)
	case err != io.EOF:
		w.t.Fatalf("connection not closed in order: %v", err)
	}
}

// The readers accept what the server must send and refuse what it must
// not.
func TestWireReaders(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, in string
		status   int
		body     string
		closes   bool
		err      bool
	}{
		{name: "content-length", in: "HTTP/1.1 200 OK\r\nContent-Type: a\r\nContent-Length: 2\r\n\r\nhiXX", status: 200, body: "hi"},
		{name: "chunked", in: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n1\r\n!\r\n0\r\n\r\n", status: 200, body: "hi!"},
		{name: "no body 204", in: "HTTP/1.1 204 No Content\r\n\r\n", status: 204},
		{name: "to EOF", in: "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall of it", status: 200, body: "all of it", closes: true},
		{name: "1.0", in: "HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", status: 200, closes: true},
		{name: "short body", in: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhi", err: true},
		{name: "two lengths", in: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nhi", err: true},
		{name: "length and chunked", in: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n", err: true},
		{name: "signed length", in: "HTTP/1.1 200 OK\r\nContent-Length: +2\r\n\r\nhi", err: true},
		{name: "bare LF", in: "HTTP/1.1 200 OK\nContent-Length: 0\n\n", err: true},
		{name: "folded header", in: "HTTP/1.1 200 OK\r\nX: a\r\n b\r\nContent-Length: 0\r\n\r\n", err: true},
		{name: "bad status", in: "HTTP/1.1 2000 OK\r\n\r\n", err: true},
	} {
		r, err := readWireResponse(bufio.NewReader(strings.NewReader(tc.in)))
		if tc.err {
			if err == nil {
				t.Errorf("%s: read %v, want an error", tc.name, r)
			}
			continue
		}
		if err != nil || r.Status != tc.status || string(r.Body) != tc.body || r.Closes() != tc.closes {
			t.Errorf("%s: %v %v", tc.name, r, err)
		}
	}
	if r, _ := readWireResponse(bufio.NewReader(strings.NewReader("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"))); string(r.Head) != "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n" {
		t.Errorf("Head %q", r.Head)
	}
	// To HEAD: no body whatever Content-Length says, and the next
	// response follows at once; the header must still be well formed.
	br := bufio.NewReader(strings.NewReader("HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 5\r\n\r\n" +
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + "HTTP/1.1 204 No Content\r\n\r\n"))
	for _, want := range []int{405, 200, 204} {
		if r, err := readWireResponseTo(br, http.MethodHead); err != nil || r.Status != want || len(r.Body) != 0 {
			t.Errorf("to HEAD: %v %v, want %d and no body", r, err, want)
		}
	}
	for _, in := range []string{"Content-Length: x", "Content-Length: 1\r\nContent-Length: 1", "Content-Length: 1\r\nTransfer-Encoding: chunked"} {
		if r, err := readWireResponseTo(bufio.NewReader(strings.NewReader("HTTP/1.1 200 OK\r\n"+in+"\r\n\r\n")), http.MethodHead); err == nil {
			t.Errorf("to HEAD, %q: read %v, want an error", in, r)
		}
	}

	long := strings.Repeat("x", 300)
	huge := strings.Repeat("y", 70000)
	for _, tc := range []struct {
		name, in string
		want     wireFrame
		err      bool
	}{
		{name: "text", in: "\x81\x02hi", want: wireFrame{true, wireOpText, []byte("hi")}},
		{name: "16-bit length", in: "\x81\x7e\x01\x2c" + long, want: wireFrame{true, wireOpText, []byte(long)}},
		{name: "64-bit length", in: "\x02\x7f\x00\x00\x00\x00\x00\x01\x11\x70" + huge, want: wireFrame{false, wireOpBinary, []byte(huge)}},
		{name: "close", in: "\x88\x06\x03\xe9bye!", want: wireFrame{true, wireOpClose, []byte("\x03\xe9bye!")}},
		{name: "masked", in: "\x81\x82abcdhi", err: true},
		{name: "reserved bit", in: "\xc1\x02hi", err: true},
		{name: "reserved opcode", in: "\x83\x02hi", err: true},
		{name: "fragmented ping", in: "\x09\x00", err: true},
		{name: "long close", in: "\x88\x7e\x00\x7e" + strings.Repeat("z", 126), err: true},
		{name: "non-minimal length", in: "\x81\x7e\x00\x02hi", err: true},
		{name: "truncated", in: "\x81\x05hi", err: true},
	} {
		f, err := readWireFrame(bufio.NewReader(strings.NewReader(tc.in)))
		if tc.err {
			if err == nil {
				t.Errorf("%s: read %v, want an error", tc.name, f)
			}
			continue
		}
		if err != nil || f.Fin != tc.want.Fin || f.Opcode != tc.want.Opcode || !bytes.Equal(f.Payload, tc.want.Payload) {
			t.Errorf("%s: %v %v", tc.name, f, err)
		}
	}
	if code, reason := (wireFrame{Opcode: wireOpClose, Payload: []byte("\x03\xe9bye!")}).CloseCode(); code != 1001 || reason != "bye!" {
		t.Errorf("close code %d %q", code, reason)
	}
}

// The readers against the server: a WebSocket handshake sent byte for
// byte, its 101 read with readWireResponse and a message frame with
// readWireFrame, on a plain handler, on main's server, and on a connection
// the long-poll engine holds (which it hands back to net/http).
func TestWireReadersOnServer(t *testing.T) {
	forEachPath(t, func(t *testing.T, p pollPath) {
		e := p.env(t, Config{}, 10)
		wc := e.pollConn(p)
		wc.send(rawRequest(http.MethodGet, "/ws?wall=wire", "",
			"Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Version: 13",
			"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=="))
		r := wc.response(5 * time.Second)
		if r.Status != http.StatusSwitchingProtocols || r.Header.Get("Sec-WebSocket-Accept") != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" || len(r.Body) != 0 {
			t.Fatalf("handshake: %s", r.Head)
		}
		waitFor(t, "the socket to subscribe", 5*time.Second, func() bool {
			w := e.hub.Lookup("wire")
			return w != nil && w.Subscribers() == 1
		})
		m := e.publish("wire", "over the wire")
		if f := wc.frame(5 * time.Second); !f.Fin || f.Opcode != wireOpText || !bytes.Equal(f.Payload, m.JSON) {
			t.Fatalf("%v, want %s", f, m.JSON)
		}
	})
}
