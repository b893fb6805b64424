package server

import (
	"bufio"
	"encoding/binary"
	"errors"
	"io"
	"unicode/utf8"

	"github.com/gorilla/websocket"
)

// After gorilla's Upgrader has done the handshake, frames are read here
// rather than by gorilla's Conn: a connection then holds no read buffer and
// no reader state while it is idle (the buffer comes from a pool only
// while a frame is arriving), which is most of what an idle subscriber
// costs. Writes need no codec: every message's frame was encoded once when
// it entered (wall.Message.Frame).

// Opcodes (RFC 6455 section 5.2).
const (
	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
	opClose        = 0x8
	opPing         = 0x9
	opPong         = 0xa
)

// errProtocol carries the close code and reason for a peer that broke
// the protocol or a limit.
type closeError struct {
	code   int
	reason string
}

func (e *closeError) Error() string { return e.reason }

var (
	errNotMasked    = &closeError{websocket.CloseProtocolError, "client frames must be masked"}
	errReserved     = &closeError{websocket.CloseProtocolError, "reserved bits set"}
	errBadOpcode    = &closeError{websocket.CloseProtocolError, "unknown opcode"}
	errBadControl   = &closeError{websocket.CloseProtocolError, "bad control frame"}
	errContinuation = &closeError{websocket.CloseProtocolError, "unexpected continuation frame"}
	errFragmented   = &closeError{websocket.CloseProtocolError, "expected continuation frame"}
	errTooBig       = &closeError{websocket.CloseMessageTooBig, "message too big"}
	errInvalidUTF8  = &closeError{websocket.CloseInvalidFramePayloadData, "invalid UTF-8"}
)

// errPeerClosed is returned after the peer's close frame.
var errPeerClosed = errors.New("peer closed the connection")

// errNoMessage is returned by messageReader.next when the buffer held
// only control frames: the caller can go back to waiting for data
// without holding the buffer.
var errNoMessage = errors.New("no message buffered")

// newFrameReader makes the readers of Server.frameReaders. 1 KiB takes a
// typical post in one read.
func newFrameReader() any { return bufio.NewReaderSize(nil, 1024) }

// frame is one frame as read: opcode, FIN and the unmasked payload.
type frame struct {
	op      byte
	fin     bool
	payload []byte
}

// readClientFrame reads one client frame, enforcing masking, the reserved bits,
// the control-frame rules and a limit on a data frame's payload. buf is
// reused for the payload when it is large enough.
func readClientFrame(br *bufio.Reader, limit int64, buf []byte) (frame, error) {
	var h [14]byte
	if _, err := io.ReadFull(br, h[:2]); err != nil {
		return frame{}, err
	}
	f := frame{op: h[0] & 0x0f, fin: h[0]&0x80 != 0}
	if h[0]&0x70 != 0 {
		return f, errReserved
	}
	if h[1]&0x80 == 0 {
		return f, errNotMasked
	}
	n := int64(h[1] & 0x7f)
	switch n {
	case 126:
		if _, err := io.ReadFull(br, h[2:4]); err != nil {
			return f, err
		}
		n = int64(binary.BigEndian.Uint16(h[2:4]))
	case 127:
		if _, err := io.ReadFull(br, h[2:10]); err != nil {
			return f, err
		}
		u := binary.BigEndian.Uint64(h[2:10])
		if u > 1<<62 {
			return f, errTooBig
		}
		n = int64(u)
	}
	switch f.op {
	case opContinuation, opText, opBinary:
		// Only data frames count toward the limit: a control frame
		// between fragments is not part of the message.
		if n > limit {
			return f, errTooBig
		}
	case opClose, opPing, opPong:
		if !f.fin || n > 125 {
			return f, errBadControl
		}
	default:
		return f, errBadOpcode
	}
	var mask [4]byte
	if _, err := io.ReadFull(br, mask[:]); err != nil {
		return f, err
	}
	if int64(cap(buf)) >= n {
		f.payload = buf[:n]
	} else {
		f.payload = make([]byte, n)
	}
	if _, err := io.ReadFull(br, f.payload); err != nil {
		return f, err
	}
	for i := range f.payload {
		f.payload[i] ^= mask[i&3]
	}
	return f, nil
}

// controlFrame encodes an unmasked control frame (payload ≤ 125 bytes).
func controlFrame(op byte, payload []byte) []byte {
	return append([]byte{0x80 | op, byte(len(payload))}, payload...)
}

// closeFrame encodes a close frame with a code and a reason.
func closeFrame(code int, reason string) []byte {
	return controlFrame(opClose, websocket.FormatCloseMessage(code, reason))
}

// messageReader reassembles messages from frames and answers control
// frames. It is used only by a connection's readPump.
type messageReader struct {
	limit   int64
	op      byte   // opcode of the message being reassembled, 0 if none
	partial []byte // its payload so far
}

// next reads frames from br until a whole data message is there and
// returns it; control frames are handed to control as they come. After a
// control frame that leaves br empty, outside a message or between
// fragments with nothing kept yet, it returns errNoMessage. The returned
// slice is valid until the next call.
func (mr *messageReader) next(br *bufio.Reader, control func(op byte, payload []byte) error) ([]byte, error) {
	for {
		f, err := readClientFrame(br, mr.limit-int64(len(mr.partial)), nil)
		if err != nil {
			return nil, err
		}
		switch f.op {
		case opClose, opPing, opPong:
			if err := control(f.op, f.payload); err != nil {
				return nil, err
			}
			if br.Buffered() == 0 && mr.partial == nil {
				// Typically a pong: don't block in br until the next
				// frame, which may be a ping period away.
				return nil, errNoMessage
			}
			continue
		case opContinuation:
			if mr.op == 0 {
				return nil, errContinuation
			}
		default:
			if mr.op != 0 {
				return nil, errFragmented
			}
			mr.op = f.op
		}
		if f.fin && mr.partial == nil {
			// mr.op, not f.op: after empty fragments f is the final
			// continuation of a text or binary message.
			op := mr.op
			mr.op = 0
			return f.payload, validText(op, f.payload)
		}
		mr.partial = append(mr.partial, f.payload...)
		if f.fin {
			msg, op := mr.partial, mr.op
			mr.partial, mr.op = nil, 0
			return msg, validText(op, msg)
		}
	}
}

// validText checks the UTF-8 of a text message (RFC 6455 section 8.1).
func validText(op byte, b []byte) error {
	if op == opText && !utf8.Valid(b) {
		return errInvalidUTF8
	}
	return nil
}
