package wall

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

// Message is one stored wall message. It is immutable once built: the HTML
// fragment and the JSON object are rendered exactly once, when the message
// enters an instance, and those bytes are shared by every reader on every
// transport.
type Message struct {
	ID    string // UUID4, 36 lowercase characters
	Seq   uint64 // per-wall sequence number, starting at 1
	Epoch string // the numbering Seq belongs to; see Cursor
	User  string // the author's token subject; empty for anonymous posts
	Time  int64  // when the sequencer stored it, in Unix milliseconds; 0 if unknown
	Body  string // the cleaned body
	HTML  string // <div class="message" id="m<id>">linkified body</div>\n
	// JSON is the message object as legacy clients expect it, encoded like
	// Python's json.dumps plus Tornado's "</" escaping, keys in this order:
	// {"id": ..., "seq": ..., "cursor": "<seq>.<epoch>", "user": ...,
	// "time": ..., "body": ..., "html": ...}. "cursor" (absent when Epoch
	// is empty) is the string a client sends to resume after this message,
	// on any transport; "user" and "time" are absent when empty or zero.
	JSON []byte
	// Frame is JSON as one unmasked WebSocket text frame, header included.
	// It shares JSON's bytes (the header sits in room left before them), so
	// every subscriber's connection writes the same bytes with no copying.
	Frame []byte
}

// ValidID reports whether id is a lowercase UUID4, the only message id a
// client may choose (the sequencer checks the same).
func ValidID(id string) bool {
	if len(id) != 36 || id[14] != '4' || !strings.ContainsRune("89ab", rune(id[19])) {
		return false
	}
	for i := 0; i < len(id); i++ {
		switch c := id[i]; {
		case i == 8 || i == 13 || i == 18 || i == 23:
			if c != '-' {
				return false
			}
		case c >= '0' && c <= '9', c >= 'a' && c <= 'f':
		default:
			return false
		}
	}
	return true
}

// maxFrameHeader is the longest header of an unmasked WebSocket frame.
const maxFrameHeader = 10

// NewMessage renders and encodes message seq of a wall's numbering epoch,
// anonymous and without a time. body must already be cleaned.
func NewMessage(id string, seq uint64, epoch, body string) *Message {
	return Build(Message{ID: id, Seq: seq, Epoch: epoch, Body: body})
}

// Build renders and encodes a message from its fields (ID, Seq, Epoch,
// User, Time and the cleaned Body; HTML is rendered unless already set,
// and JSON and Frame are encoded). The result is immutable.
func Build(f Message) *Message {
	if f.HTML == "" {
		f.HTML = RenderHTML(f.ID, f.Body)
	}
	return encode(&f)
}

// Cursor returns the position just after m.
func (m *Message) Cursor() Cursor {
	return Cursor{Set: true, Seq: m.Seq, Epoch: m.Epoch}
}

// RenderHTML renders the legacy message fragment: the div, the escaped and
// linkified body, and a trailing newline.
func RenderHTML(id, body string) string {
	return `<div class="message" id="m` + id + `">` + linkify(body) + "</div>\n"
}

// encode fills m's JSON and Frame from its other fields, so a sequencer
// can render the fragment outside its lock and only encode under it.
func encode(m *Message) *Message {
	id, seq, epoch := m.ID, m.Seq, m.Epoch
	// One allocation of exactly the encoded size: non-ASCII text escapes to
	// six bytes a rune, so any guess from len(body) either reallocates or,
	// for a long body, pins several times what the message holds.
	n := len(`{"id": , "seq": , "body": , "html": }`) + pyStringLen(id) +
		uintLen(seq) + pyStringLen(m.Body) + pyStringLen(m.HTML)
	if epoch != "" {
		n += len(`, "cursor": "."`) + uintLen(seq) + pyStringLen(epoch) - 2
	}
	if m.User != "" {
		n += len(`, "user": `) + pyStringLen(m.User)
	}
	if m.Time > 0 {
		n += len(`, "time": `) + uintLen(uint64(m.Time))
	}
	b := make([]byte, maxFrameHeader, maxFrameHeader+n)
	b = append(b, `{"id": `...)
	b = appendPyString(b, id)
	b = append(b, `, "seq": `...)
	b = strconv.AppendUint(b, seq, 10)
	if epoch != "" {
		b = append(b, `, "cursor": "`...)
		b = strconv.AppendUint(b, seq, 10)
		b = append(b, '.')
		b = appendPyStringBody(b, epoch)
		b = append(b, '"')
	}
	if m.User != "" {
		b = append(b, `, "user": `...)
		b = appendPyString(b, m.User)
	}
	if m.Time > 0 {
		b = append(b, `, "time": `...)
		b = strconv.AppendUint(b, uint64(m.Time), 10)
	}
	b = append(b, `, "body": `...)
	b = appendPyString(b, m.Body)
	b = append(b, `, "html": `...)
	b = appendPyString(b, m.HTML)
	b = append(b, '}')
	m.JSON = b[maxFrameHeader:len(b):len(b)]
	h := frameHeader(len(m.JSON))
	m.Frame = b[maxFrameHeader-len(h) : len(b) : len(b)]
	copy(m.Frame, h)
	return m
}

// frameHeader returns the header of a final, unmasked text frame carrying n
// bytes (RFC 6455 section 5.2).
func frameHeader(n int) []byte {
	switch {
	case n < 126:
		return []byte{0x81, byte(n)}
	case n <= 0xffff:
		return []byte{0x81, 126, byte(n >> 8), byte(n)}
	}
	h := []byte{0x81, 127, 0, 0, 0, 0, 0, 0, 0, 0}
	for i := 0; i < 8; i++ {
		h[9-i] = byte(uint64(n) >> (8 * i))
	}
	return h
}

// TextFrame returns b as one unmasked WebSocket text frame, for the
// occasional frame that is not a message (an error or a gap notice).
func TextFrame(b []byte) []byte {
	return append(frameHeader(len(b)), b...)
}

const hexDigits = "0123456789abcdef"

// appendPyString appends s as a JSON string the way Python's json.dumps does
// with ensure_ascii (non-ASCII as \uXXXX, astral runes as surrogate pairs),
// and writes "</" as "<\/" as Tornado's json_encode does, so the bytes are
// safe inside a <script> element too.
func appendPyString(b []byte, s string) []byte {
	b = append(b, '"')
	b = appendPyStringBody(b, s)
	return append(b, '"')
}

// appendPyStringBody is appendPyString without the quotes.
func appendPyStringBody(b []byte, s string) []byte {
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"':
				b = append(b, '\\', '"')
			case c == '\\':
				b = append(b, '\\', '\\')
			case c == '\n':
				b = append(b, '\\', 'n')
			case c == '\r':
				b = append(b, '\\', 'r')
			case c == '\t':
				b = append(b, '\\', 't')
			case c == '\b':
				b = append(b, '\\', 'b')
			case c == '\f':
				b = append(b, '\\', 'f')
			case c < 0x20 || c == 0x7f:
				// Python escapes everything outside ' '..'~', DEL included.
				b = appendU(b, rune(c))
			case c == '/' && i > 0 && s[i-1] == '<':
				b = append(b, '\\', '/')
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r > 0xffff {
			r -= 0x10000
			b = appendU(b, 0xd800+(r>>10))
			b = appendU(b, 0xdc00+(r&0x3ff))
		} else {
			b = appendU(b, r)
		}
		i += size
	}
	return b
}

// pyStringLen returns len(appendPyString(nil, s)) without encoding.
func pyStringLen(s string) int {
	n := 2
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"', c == '\\', c == '\n', c == '\r', c == '\t', c == '\b', c == '\f':
				n += 2
			case c < 0x20 || c == 0x7f:
				n += 6
			case c == '/' && i > 0 && s[i-1] == '<':
				n += 2
			default:
				n++
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r > 0xffff {
			n += 12 // a surrogate pair
		} else {
			n += 6
		}
		i += size
	}
	return n
}

// uintLen returns the number of decimal digits of v.
func uintLen(v uint64) int {
	n := 1
	for ; v >= 10; v /= 10 {
		n++
	}
	return n
}

func appendU(b []byte, r rune) []byte {
	return append(b, '\\', 'u', hexDigits[r>>12&0xf], hexDigits[r>>8&0xf], hexDigits[r>>4&0xf], hexDigits[r&0xf])
}
