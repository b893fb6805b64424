package wall

import (
	"strconv"
	"strings"
)

// Cursor is a client's position in a wall. Our clients send the cursor of
// the last message they have, "<seq>.<epoch>" (part-2 clients a plain
// "<seq>"); legacy clients send the id of the last message they have.
// The zero Cursor means "no cursor".
type Cursor struct {
	Set bool
	Seq uint64 // meaningful when Set and ID == ""
	// Epoch is the numbering Seq belongs to; empty for a plain seq, which
	// is taken in the wall's current numbering (as part-2 clients expect).
	Epoch string
	ID    string
}

// ParseCursor parses a cursor argument. Every string parses, as in Tornado,
// which answers any cursor it does not know with the whole cache:
//
//   - "" is no cursor;
//   - all digits is a plain seq;
//   - "<seq>.<epoch>" (seq in canonical decimal, epoch not empty) is an
//     epoch cursor; message ids (UUIDs) contain no '.', so this is
//     unambiguous;
//   - anything else, of any length or bytes, is taken as a message id; an
//     unknown one gets the whole cache and Reset.
//
// The error is always nil; it stays so that callers need not change now.
// Memory is bounded by the request, not here: a cursor comes from a poll
// body of at most 8 KiB or a request head (8 KiB in the long-poll engine,
// net/http's MaxHeaderBytes otherwise).
//
// The Epoch never shares memory with s, so a poll may keep the cursor
// while the buffer s views is reused; ID does (as a substring of s).
func ParseCursor(s string) (Cursor, error) {
	if s == "" {
		return Cursor{}, nil
	}
	if allDigits(s) { // checked first: ids often start with a digit
		if n, err := strconv.ParseUint(s, 10, 64); err == nil {
			return Cursor{Set: true, Seq: n}, nil
		}
	}
	if seq, epoch, ok := strings.Cut(s, "."); ok && epoch != "" && canonicalUint(seq) {
		if n, err := strconv.ParseUint(seq, 10, 64); err == nil {
			return Cursor{Set: true, Seq: n, Epoch: strings.Clone(epoch)}, nil
		}
	}
	return Cursor{Set: true, ID: s}, nil
}

// String formats the cursor as a client would send it: it parses back to
// the same Cursor.
func (c Cursor) String() string {
	switch {
	case !c.Set:
		return ""
	case c.ID != "":
		return c.ID
	case c.Epoch != "":
		return strconv.FormatUint(c.Seq, 10) + "." + c.Epoch
	}
	return strconv.FormatUint(c.Seq, 10)
}

// AppendJSON appends the cursor's String as a JSON string, escaped like
// message JSON (ASCII only): any cursor a client sent, control characters,
// quotes, non-ASCII or invalid UTF-8 included, gives valid JSON (invalid
// bytes become U+FFFD).
func (c Cursor) AppendJSON(b []byte) []byte {
	switch {
	case !c.Set:
		return append(b, `""`...)
	case c.ID != "":
		return appendPyString(b, c.ID)
	}
	b = append(b, '"')
	b = strconv.AppendUint(b, c.Seq, 10)
	if c.Epoch != "" {
		b = append(b, '.')
		b = appendPyStringBody(b, c.Epoch)
	}
	return append(b, '"')
}

// Result is the answer to "messages after cursor".
type Result struct {
	Messages []*Message
	// Missed counts messages that were evicted between the cursor and the
	// first message returned.
	Missed uint64
	// Reset is set when the cursor was unknown (an evicted or foreign id, a
	// seq of another epoch, or one past the newest message): the client
	// gets the whole cache and cannot know what it missed.
	Reset bool
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// canonicalUint reports whether s is a decimal number as FormatUint writes
// it (no sign, no leading zero), so an epoch cursor's String is what the
// client sent.
func canonicalUint(s string) bool {
	return s != "" && allDigits(s) && (s[0] != '0' || len(s) == 1)
}
