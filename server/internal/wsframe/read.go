package wsframe

import (
	"bufio"
	"errors"
	"unicode/utf8"
)

// ErrNoMessage is returned by MessageReader.Next when the buffer held only
// control frames: the caller can go back to waiting for data without
// holding the buffer.
var ErrNoMessage = errors.New("no message buffered")

// MessageReader reassembles messages from a client's frames and hands it
// control frames as they come. Its state is one connection's; it is used
// by that connection's reader alone.
type MessageReader struct {
	Limit   int64  // most bytes in a message
	op      byte   // opcode of the message being reassembled, 0 if none
	partial []byte // its payload so far
}

// Partial reports whether part of a message has been kept, so the caller
// must keep reading (and keep its buffer) to finish it.
func (mr *MessageReader) Partial() bool { return mr.partial != nil }

// Next reads frames from br until a whole data message is there and
// returns it; control frames are handed to control as they come, and an
// error from control ends the read. After a control frame that leaves br
// empty, outside a message or between fragments with nothing kept yet, it
// returns ErrNoMessage. The returned slice is valid until the next call.
func (mr *MessageReader) Next(br *bufio.Reader, control func(op byte, payload []byte) error) ([]byte, error) {
	for {
		f, err := ReadClientFrame(br, mr.Limit-int64(len(mr.partial)), nil)
		if err != nil {
			return nil, err
		}
		switch f.Op {
		case OpClose, OpPing, OpPong:
			if err := control(f.Op, f.Payload); err != nil {
				return nil, err
			}
			if br.Buffered() == 0 && mr.partial == nil {
				// Typically a pong: don't block in br until the next
				// frame, which may be a ping period away.
				return nil, ErrNoMessage
			}
			continue
		case OpContinuation:
			if mr.op == 0 {
				return nil, ErrContinuation
			}
		default:
			if mr.op != 0 {
				return nil, ErrFragmented
			}
			mr.op = f.Op
		}
		if f.Fin && mr.partial == nil {
			// mr.op, not f.Op: after empty fragments f is the final
			// continuation of a text or binary message.
			op := mr.op
			mr.op = 0
			return f.Payload, validText(op, f.Payload)
		}
		mr.partial = append(mr.partial, f.Payload...)
		if f.Fin {
			msg, op := mr.partial, mr.op
			mr.partial, mr.op = nil, 0
			return msg, validText(op, msg)
		}
	}
}

// validText checks the UTF-8 of a text message (RFC 6455 section 8.1).
func validText(op byte, b []byte) error {
	if op == OpText && !utf8.Valid(b) {
		return ErrInvalidUTF8
	}
	return nil
}
