package wall

import (
	"errors"
	"strconv"
)

// Cursor is a client's position in a wall: the seq of the last message it
// has (our clients), or the id of the last message it has (legacy clients).
// The zero Cursor means "no cursor".
type Cursor struct {
	Set bool
	Seq uint64 // meaningful when Set and ID == ""
	ID  string
}

// ErrBadCursor is returned by ParseCursor for cursors that are neither a
// seq nor something that could be a message id.
var ErrBadCursor = errors.New("cursor must be a message id or a seq number")

// ParseCursor parses a cursor argument. An empty string is no cursor, as in
// Tornado. All digits is a seq; anything else short and printable is taken
// as an id (an unknown id is answered with the whole cache, as in Tornado).
func ParseCursor(s string) (Cursor, error) {
	if s == "" {
		return Cursor{}, nil
	}
	if len(s) > 64 {
		return Cursor{}, ErrBadCursor
	}
	if allDigits(s) { // checked first: ids often start with a digit
		if n, err := strconv.ParseUint(s, 10, 64); err == nil {
			return Cursor{Set: true, Seq: n}, nil
		}
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return Cursor{}, ErrBadCursor
		}
	}
	return Cursor{Set: true, ID: s}, nil
}

// String formats the cursor as a client would send it.
func (c Cursor) String() string {
	switch {
	case !c.Set:
		return ""
	case c.ID != "":
		return c.ID
	}
	return strconv.FormatUint(c.Seq, 10)
}

// Result is the answer to "messages after cursor".
type Result struct {
	Messages []*Message
	// Missed counts messages that were evicted between the cursor and the
	// first message returned.
	Missed uint64
	// Reset is set when the cursor was unknown (an evicted or foreign id, or
	// a seq from another epoch): the client gets the whole cache and cannot
	// know what it missed.
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
