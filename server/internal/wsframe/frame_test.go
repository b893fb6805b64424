package wsframe

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
)

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

// ctrl is a control frame handed to messageReader's callback.
type ctrl struct {
	op      byte
	payload string
}

// readMessages runs a messageReader with limit over input until it fails
// and returns the messages, the control frames met, and the final error.
func readMessages(input []byte, limit int64) (msgs []string, ctrls []ctrl, err error) {
	br := bufio.NewReaderSize(bytes.NewReader(input), 16) // small: frames span refills
	mr := MessageReader{Limit: limit}
	control := func(op byte, payload []byte) error {
		ctrls = append(ctrls, ctrl{op, string(payload)})
		return nil
	}
	for {
		msg, err := mr.Next(br, control)
		if err == ErrNoMessage {
			continue // the caller would wait for the socket here
		}
		if err != nil {
			return msgs, ctrls, err
		}
		msgs = append(msgs, string(msg)) // msg is only valid until next
	}
}

// closeCode returns the close code carried by err, or 0.
func closeCode(err error) int {
	var ce *CloseError
	if errors.As(err, &ce) {
		return ce.Code
	}
	return 0
}

func TestReadClientFrame(t *testing.T) {
	long := strings.Repeat("0123456789abcdef", 4096) // 64 KiB: a 64-bit length
	for _, tc := range []struct {
		name    string
		input   []byte
		op      byte
		fin     bool
		payload string
	}{
		{"text", clientFrame(true, OpText, "hello"), OpText, true, "hello"},
		{"empty", clientFrame(true, OpText, ""), OpText, true, ""},
		{"7-bit max", clientFrame(true, OpBinary, long[:125]), OpBinary, true, long[:125]},
		{"16-bit min", clientFrame(true, OpText, long[:126]), OpText, true, long[:126]},
		{"16-bit", clientFrame(false, OpText, long[:1000]), OpText, false, long[:1000]},
		{"16-bit max", clientFrame(true, OpText, long[:0xffff]), OpText, true, long[:0xffff]},
		{"64-bit", clientFrame(true, OpText, long), OpText, true, long},
		{"ping", clientFrame(true, OpPing, "p"), OpPing, true, "p"},
		{"continuation", clientFrame(true, OpContinuation, "c"), OpContinuation, true, "c"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			br := bufio.NewReader(bytes.NewReader(tc.input))
			f, err := ReadClientFrame(br, 1<<20, nil)
			if err != nil {
				t.Fatal(err)
			}
			if f.Op != tc.op || f.Fin != tc.fin || string(f.Payload) != tc.payload {
				t.Fatalf("frame op %x fin %v payload %.20q (%d bytes), want op %x fin %v %.20q (%d bytes)",
					f.Op, f.Fin, f.Payload, len(f.Payload), tc.op, tc.fin, tc.payload, len(tc.payload))
			}
			if br.Buffered() != 0 {
				t.Fatalf("%d bytes left unread", br.Buffered())
			}
		})
	}
	// The 64-bit form is accepted for a short payload too.
	in := append([]byte{0x80 | OpText, 0x80 | 127}, binary.BigEndian.AppendUint64(nil, 3)...)
	in = append(in, testMask[:]...)
	for i, c := range []byte("abc") {
		in = append(in, c^testMask[i&3])
	}
	f, err := ReadClientFrame(bufio.NewReader(bytes.NewReader(in)), 100, nil)
	if err != nil || string(f.Payload) != "abc" {
		t.Fatalf("64-bit length 3: %q, %v", f.Payload, err)
	}
}

// ReadClientFrame unmasks into buf when it is large enough.
func TestReadClientFrameReusesBuf(t *testing.T) {
	buf := make([]byte, 0, 64)
	f, err := ReadClientFrame(bufio.NewReader(bytes.NewReader(clientFrame(true, OpText, "reuse"))), 100, buf)
	if err != nil || string(f.Payload) != "reuse" {
		t.Fatalf("%q, %v", f.Payload, err)
	}
	if &f.Payload[0] != &buf[:1][0] {
		t.Fatal("payload not read into buf")
	}
}

func TestMessageReader(t *testing.T) {
	const limit = 100
	ping := clientFrame(true, OpPing, "p1")
	pong := clientFrame(true, OpPong, "p2")
	for _, tc := range []struct {
		name  string
		input []byte
		msgs  []string
		ctrls []ctrl
	}{
		{"single text", clientFrame(true, OpText, "hello"), []string{"hello"}, nil},
		{"binary", clientFrame(true, OpBinary, "\x00\xff"), []string{"\x00\xff"}, nil},
		{"two messages", frames(clientFrame(true, OpText, "a"), clientFrame(true, OpBinary, "b")),
			[]string{"a", "b"}, nil},
		{"fragmented", frames(
			clientFrame(false, OpText, `{"bo`),
			clientFrame(false, OpContinuation, `dy": `),
			clientFrame(true, OpContinuation, `"hi"}`),
		), []string{`{"body": "hi"}`}, nil},
		{"fragmented then single", frames(
			clientFrame(false, OpBinary, "ab"),
			clientFrame(true, OpContinuation, "cd"),
			clientFrame(true, OpText, "ef"),
		), []string{"abcd", "ef"}, nil},
		{"control frames inside a fragmented message", frames(
			clientFrame(false, OpText, "one "),
			ping,
			clientFrame(false, OpContinuation, "two "),
			pong,
			clientFrame(true, OpContinuation, "three"),
		), []string{"one two three"}, []ctrl{{OpPing, "p1"}, {OpPong, "p2"}}},
		{"control frames only", frames(ping, pong), nil, []ctrl{{OpPing, "p1"}, {OpPong, "p2"}}},
		{"empty fragments", frames(
			clientFrame(false, OpText, ""),
			clientFrame(false, OpContinuation, ""),
			clientFrame(true, OpContinuation, "x"),
		), []string{"x"}, nil},
		{"UTF-8 split across fragments", frames(
			clientFrame(false, OpText, "caf\xc3"),
			clientFrame(true, OpContinuation, "\xa9"),
		), []string{"café"}, nil},
		{"binary is not UTF-8 checked", clientFrame(true, OpBinary, "\xff\xfe"), []string{"\xff\xfe"}, nil},
		{"fragmented binary is not UTF-8 checked", frames(
			clientFrame(false, OpBinary, "\xff"),
			clientFrame(true, OpContinuation, "\xfe"),
		), []string{"\xff\xfe"}, nil},
		{"message at the limit", clientFrame(true, OpText, strings.Repeat("x", limit)),
			[]string{strings.Repeat("x", limit)}, nil},
		{"fragments at the limit", frames(
			clientFrame(false, OpText, strings.Repeat("x", limit-10)),
			clientFrame(true, OpContinuation, strings.Repeat("y", 10)),
		), []string{strings.Repeat("x", limit-10) + strings.Repeat("y", 10)}, nil},
		// Control frames do not count toward the message limit.
		{"ping inside a message at the limit", frames(
			clientFrame(false, OpText, strings.Repeat("x", limit)),
			clientFrame(true, OpPing, strings.Repeat("p", 125)),
			clientFrame(true, OpContinuation, ""),
		), []string{strings.Repeat("x", limit)}, []ctrl{{OpPing, strings.Repeat("p", 125)}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msgs, ctrls, err := readMessages(tc.input, limit)
			if err != io.EOF {
				t.Fatalf("ended with %v, want EOF (messages %q)", err, msgs)
			}
			if fmt.Sprint(msgs) != fmt.Sprint(tc.msgs) || len(msgs) != len(tc.msgs) {
				t.Fatalf("messages %q, want %q", msgs, tc.msgs)
			}
			if fmt.Sprint(ctrls) != fmt.Sprint(tc.ctrls) {
				t.Fatalf("control frames %q, want %q", ctrls, tc.ctrls)
			}
		})
	}
}

func TestMessageReaderErrors(t *testing.T) {
	const limit = 100
	const (
		protocol = CloseProtocolError
		tooBig   = CloseTooBig
		badUTF8  = CloseInvalidPayload
	)
	for _, tc := range []struct {
		name  string
		input []byte
		code  int
		msgs  []string // messages read before the error
	}{
		{"unmasked", rawFrame(0x80|OpText, false, []byte("hi")), protocol, nil},
		{"unmasked after a good one", frames(clientFrame(true, OpText, "ok"), rawFrame(0x80|OpText, false, []byte("hi"))),
			protocol, []string{"ok"}},
		{"RSV1", rawFrame(0x80|0x40|OpText, true, []byte("hi")), protocol, nil},
		{"RSV2", rawFrame(0x80|0x20|OpText, true, []byte("hi")), protocol, nil},
		{"RSV3", rawFrame(0x80|0x10|OpText, true, []byte("hi")), protocol, nil},
		{"opcode 3", rawFrame(0x80|0x3, true, nil), protocol, nil},
		{"opcode 7", rawFrame(0x80|0x7, true, nil), protocol, nil},
		{"opcode 0xb", rawFrame(0x80|0xb, true, nil), protocol, nil},
		{"opcode 0xf", rawFrame(0x80|0xf, true, nil), protocol, nil},
		{"ping of 126 bytes", clientFrame(true, OpPing, strings.Repeat("p", 126)), protocol, nil},
		{"close of 126 bytes", clientFrame(true, OpClose, strings.Repeat("p", 126)), protocol, nil},
		{"ping without FIN", clientFrame(false, OpPing, "p"), protocol, nil},
		{"pong without FIN", clientFrame(false, OpPong, "p"), protocol, nil},
		{"close without FIN", clientFrame(false, OpClose, ""), protocol, nil},
		{"control without FIN inside a message", frames(
			clientFrame(false, OpText, "a"), clientFrame(false, OpPing, "p"),
		), protocol, nil},
		{"continuation without a start", clientFrame(true, OpContinuation, "x"), protocol, nil},
		{"continuation after a whole message", frames(
			clientFrame(true, OpText, "a"), clientFrame(true, OpContinuation, "b"),
		), protocol, []string{"a"}},
		{"text inside a fragmented message", frames(
			clientFrame(false, OpText, "a"), clientFrame(true, OpText, "b"),
		), protocol, nil},
		{"binary inside a fragmented message", frames(
			clientFrame(false, OpText, "a"), clientFrame(false, OpBinary, "b"),
		), protocol, nil},
		// Only headers: a limit breach is reported before the payload is
		// read (the input has none, so reading it would fail with EOF).
		{"too big", frameHeader(0x80|OpText, true, limit+1), tooBig, nil},
		{"too big, 16-bit length", frameHeader(0x80|OpBinary, true, 1000), tooBig, nil},
		{"too big, 64-bit length", frameHeader(0x80|OpText, true, 1<<40), tooBig, nil},
		{"too big, 64-bit length with the top bit set", frameHeader(0x80|OpText, true, 1<<63), tooBig, nil},
		{"too big, before the masking key", frameHeader(0x80|OpText, true, 1<<20)[:10], tooBig, nil},
		{"too big across fragments", frames(
			clientFrame(false, OpText, strings.Repeat("x", 60)),
			clientFrame(false, OpContinuation, strings.Repeat("x", 30)),
			frameHeader(OpContinuation, true, 11),
		), tooBig, nil},
		{"invalid UTF-8", clientFrame(true, OpText, "\xff"), badUTF8, nil},
		{"truncated UTF-8", clientFrame(true, OpText, "caf\xc3"), badUTF8, nil},
		{"surrogate in UTF-8", clientFrame(true, OpText, "\xed\xa0\x80"), badUTF8, nil},
		{"invalid UTF-8 across fragments", frames(
			clientFrame(false, OpText, "ok "),
			clientFrame(true, OpContinuation, "\xff"),
		), badUTF8, nil},
		{"invalid UTF-8 after an empty first fragment", frames(
			clientFrame(false, OpText, ""),
			clientFrame(true, OpContinuation, "\xff"),
		), badUTF8, nil},
		{"invalid UTF-8 after empty fragments", frames(
			clientFrame(false, OpText, ""),
			clientFrame(false, OpContinuation, ""),
			clientFrame(true, OpContinuation, "\xc3\x28"),
		), badUTF8, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msgs, _, err := readMessages(tc.input, limit)
			if got := closeCode(err); got != tc.code {
				t.Fatalf("ended with %v (close code %d), want close code %d", err, got, tc.code)
			}
			if fmt.Sprint(msgs) != fmt.Sprint(tc.msgs) || len(msgs) != len(tc.msgs) {
				t.Fatalf("messages %q, want %q", msgs, tc.msgs)
			}
		})
	}
}

// Input that stops anywhere inside a frame is an io error, never a panic
// or a message.
func TestMessageReaderTruncated(t *testing.T) {
	whole := frames(
		clientFrame(false, OpText, "abc"),
		clientFrame(true, OpPing, "p"),
		clientFrame(true, OpContinuation, strings.Repeat("d", 300)), // 16-bit length
	)
	long := append(frameHeader(0x80|OpBinary, true, 70000), make([]byte, 70000)...) // 64-bit length
	for _, input := range [][]byte{whole, long} {
		// Every cut in the headers and the first bytes of payload, then
		// a few further in (every cut of the long frame would be slow).
		var cuts []int
		for n := 0; n < min(len(input), 400); n++ {
			cuts = append(cuts, n)
		}
		cuts = append(cuts, len(input)/2, len(input)-2, len(input)-1)
		for _, n := range cuts {
			msgs, _, err := readMessages(input[:n], 1<<20)
			if len(msgs) != 0 {
				t.Fatalf("%d of %d bytes: messages %q", n, len(input), msgs)
			}
			if n == 0 && err != io.EOF || n > 0 && err != io.ErrUnexpectedEOF && err != io.EOF {
				t.Fatalf("%d of %d bytes: %v, want an io error", n, len(input), err)
			}
		}
		if msgs, _, err := readMessages(input, 1<<20); len(msgs) != 1 || err != io.EOF {
			t.Fatalf("whole input: %d messages, %v", len(msgs), err)
		}
	}
}

// errPeer stands for the error a caller's control callback returns.
var errPeer = errors.New("peer closed")

// An error from the control callback ends the read (the close frame).
func TestMessageReaderControlError(t *testing.T) {
	br := bufio.NewReader(bytes.NewReader(frames(
		clientFrame(false, OpText, "a"),
		clientFrame(true, OpClose, "\x03\xe8bye"),
		clientFrame(true, OpContinuation, "b"),
	)))
	mr := MessageReader{Limit: 100}
	var got []ctrl
	msg, err := mr.Next(br, func(op byte, payload []byte) error {
		got = append(got, ctrl{op, string(payload)})
		return errPeer
	})
	if err != errPeer || msg != nil {
		t.Fatalf("next: %q, %v; want errPeer", msg, err)
	}
	if len(got) != 1 || got[0] != (ctrl{OpClose, "\x03\xe8bye"}) {
		t.Fatalf("control frames %q", got)
	}
}

// chunkReader returns one chunk per Read and fails the test if read
// past the last: the reader must not wait for more than it needs.
type chunkReader struct {
	t      *testing.T
	chunks [][]byte
}

func (r *chunkReader) Read(p []byte) (int, error) {
	if len(r.chunks) == 0 {
		r.t.Fatal("read past the data that had arrived")
	}
	n := copy(p, r.chunks[0])
	r.chunks[0] = r.chunks[0][n:]
	if len(r.chunks[0]) == 0 {
		r.chunks = r.chunks[1:]
	}
	return n, nil
}

// After control frames that leave the buffer empty, next returns
// ErrNoMessage instead of blocking in the buffered reader (which readPump
// holds only while data is arriving). It does not while part of a message
// is kept, and a message begun with an empty fragment resumes after it.
func TestMessageReaderReturnsAfterControl(t *testing.T) {
	cr := &chunkReader{t: t, chunks: [][]byte{
		clientFrame(true, OpPong, "1"),
		frames(clientFrame(true, OpPing, "2"), clientFrame(true, OpPong, "3")),
		frames(clientFrame(false, OpText, "ab"), clientFrame(true, OpPing, "4")),
		frames(clientFrame(false, OpContinuation, "cd"), clientFrame(true, OpPing, "5")),
		clientFrame(true, OpContinuation, "ef"),
		frames(clientFrame(false, OpText, ""), clientFrame(true, OpPing, "6")),
		clientFrame(true, OpContinuation, "\xff"),
	}}
	br := bufio.NewReader(cr)
	mr := MessageReader{Limit: 100}
	var ctrls []string
	control := func(op byte, payload []byte) error {
		ctrls = append(ctrls, string(payload))
		return nil
	}
	for i, want := range []struct {
		ctrls string
		msg   string
		code  int // close code of the error, or -1 for ErrNoMessage
	}{
		{"[1]", "", -1},
		{"[1 2 3]", "", -1},
		{"[1 2 3 4 5]", "abcdef", 0},
		{"[1 2 3 4 5 6]", "", -1},
		{"[1 2 3 4 5 6]", "\xff", CloseInvalidPayload}, // still a text message
	} {
		msg, err := mr.Next(br, control)
		code := closeCode(err)
		if err == ErrNoMessage {
			code = -1
		} else if err != nil && code == 0 {
			t.Fatalf("call %d: %v", i, err)
		}
		if code != want.code || fmt.Sprint(ctrls) != want.ctrls || want.code == 0 && string(msg) != want.msg {
			t.Fatalf("call %d: message %q, error %v, control frames %v; want %q, code %d, %s",
				i, msg, err, ctrls, want.msg, want.code, want.ctrls)
		}
	}
}

func FuzzMessageReader(f *testing.F) {
	const limit = 64
	f.Add(clientFrame(true, OpText, "hello"))
	f.Add(frames(clientFrame(false, OpText, "a"), clientFrame(true, OpPing, "p"), clientFrame(true, OpContinuation, "b")))
	f.Add(frames(clientFrame(false, OpBinary, "\xff"), clientFrame(true, OpContinuation, strings.Repeat("z", 200))))
	f.Add(clientFrame(true, OpText, strings.Repeat("x", 130)))
	f.Add(frameHeader(0x80|OpText, true, 1<<40))
	f.Add(rawFrame(0x80|OpText, false, []byte("x")))
	f.Add(clientFrame(true, OpClose, "\x03\xe8"))
	f.Add(frames(clientFrame(false, OpText, ""), clientFrame(true, OpContinuation, "\xc3")))
	f.Fuzz(func(t *testing.T, data []byte) {
		br := bufio.NewReaderSize(bytes.NewReader(data), 16)
		mr := MessageReader{Limit: limit}
		control := func(op byte, payload []byte) error {
			if op != OpClose && op != OpPing && op != OpPong {
				t.Fatalf("control callback with opcode %x", op)
			}
			if len(payload) > 125 {
				t.Fatalf("control payload of %d bytes", len(payload))
			}
			return nil
		}
		for i := 0; ; i++ {
			if i > len(data) {
				t.Fatalf("%d messages from %d bytes", i, len(data))
			}
			msg, err := mr.Next(br, control)
			if err == ErrNoMessage {
				continue
			}
			if err != nil {
				if err == io.EOF || err == io.ErrUnexpectedEOF {
					return
				}
				switch closeCode(err) {
				case CloseProtocolError, CloseTooBig, CloseInvalidPayload:
					return
				}
				t.Fatalf("error %v (%T) is neither an io error nor a close error", err, err)
			}
			if len(msg) > limit {
				t.Fatalf("message of %d bytes over the limit %d", len(msg), limit)
			}
		}
	})
}
