package wsframe

import (
	"bufio"
	"encoding/binary"
	"io"
)

// Opcodes (RFC 6455 section 5.2).
const (
	OpContinuation = 0x0
	OpText         = 0x1
	OpBinary       = 0x2
	OpClose        = 0x8
	OpPing         = 0x9
	OpPong         = 0xa
)

// Frame is one frame as read: opcode, FIN and the unmasked payload.
type Frame struct {
	Op      byte
	Fin     bool
	Payload []byte
}

// ReadClientFrame reads one client frame, enforcing masking, the reserved
// bits, the control-frame rules and limit on a data frame's payload. buf
// is reused for the payload when it is large enough. A broken rule is a
// *CloseError; a short read is br's error.
func ReadClientFrame(br *bufio.Reader, limit int64, buf []byte) (Frame, error) {
	var h [14]byte
	if _, err := io.ReadFull(br, h[:2]); err != nil {
		return Frame{}, err
	}
	f := Frame{Op: h[0] & 0x0f, Fin: h[0]&0x80 != 0}
	if h[0]&0x70 != 0 {
		return f, ErrReserved
	}
	if h[1]&0x80 == 0 {
		return f, ErrNotMasked
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
			return f, ErrTooBig
		}
		n = int64(u)
	}
	switch f.Op {
	case OpContinuation, OpText, OpBinary:
		// Only data frames count toward the limit: a control frame
		// between fragments is not part of the message.
		if n > limit {
			return f, ErrTooBig
		}
	case OpClose, OpPing, OpPong:
		if !f.Fin || n > 125 {
			return f, ErrBadControl
		}
	default:
		return f, ErrBadOpcode
	}
	var mask [4]byte
	if _, err := io.ReadFull(br, mask[:]); err != nil {
		return f, err
	}
	if int64(cap(buf)) >= n {
		f.Payload = buf[:n]
	} else {
		f.Payload = make([]byte, n)
	}
	if _, err := io.ReadFull(br, f.Payload); err != nil {
		return f, err
	}
	for i := range f.Payload {
		f.Payload[i] ^= mask[i&3]
	}
	return f, nil
}

// Control encodes an unmasked control frame; payload must be at most 125
// bytes.
func Control(op byte, payload []byte) []byte {
	return append([]byte{0x80 | op, byte(len(payload))}, payload...)
}

// Text encodes b as one unmasked, final text frame.
func Text(b []byte) []byte {
	var h []byte
	switch n := len(b); {
	case n < 126:
		h = make([]byte, 2, 2+n)
		h[1] = byte(n)
	case n <= 0xffff:
		h = make([]byte, 4, 4+n)
		h[1] = 126
		binary.BigEndian.PutUint16(h[2:], uint16(n))
	default:
		h = make([]byte, 10, 10+n)
		h[1] = 127
		binary.BigEndian.PutUint64(h[2:], uint64(n))
	}
	h[0] = 0x80 | OpText
	return append(h, b...)
}
