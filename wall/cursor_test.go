package wall

import (
	"errors"
	"strings"
	"testing"
)

func TestParseCursor(t *testing.T) {
	const uuid = "0b5f8ea4-1c1e-4c1e-9a4e-2f0b7a1c3d5e"
	tests := []struct {
		in   string
		want Cursor
		err  error
	}{
		{"", Cursor{}, nil},
		{"0", Cursor{Set: true, Seq: 0}, nil},
		{"1", Cursor{Set: true, Seq: 1}, nil},
		{"42", Cursor{Set: true, Seq: 42}, nil},
		{"007", Cursor{Set: true, Seq: 7}, nil},
		{"18446744073709551615", Cursor{Set: true, Seq: 1<<64 - 1}, nil},
		// Past uint64 it cannot be a seq we issued; as an id it is simply
		// unknown, which Since answers with the whole cache and Reset.
		{"18446744073709551616", Cursor{Set: true, ID: "18446744073709551616"}, nil},
		{uuid, Cursor{Set: true, ID: uuid}, nil},
		{"1a", Cursor{Set: true, ID: "1a"}, nil},
		{"-1", Cursor{Set: true, ID: "-1"}, nil},
		{"+1", Cursor{Set: true, ID: "+1"}, nil},
		{"0x10", Cursor{Set: true, ID: "0x10"}, nil},
		{"1_000", Cursor{Set: true, ID: "1_000"}, nil},
		{"~!@#$%^&*()", Cursor{Set: true, ID: "~!@#$%^&*()"}, nil},
		{strings.Repeat("a", 64), Cursor{Set: true, ID: strings.Repeat("a", 64)}, nil},
		{strings.Repeat("a", 65), Cursor{}, ErrBadCursor},
		{strings.Repeat("1", 65), Cursor{}, ErrBadCursor},
		{" 1", Cursor{}, ErrBadCursor},
		{"1 ", Cursor{}, ErrBadCursor},
		{"a b", Cursor{}, ErrBadCursor},
		{"a\tb", Cursor{}, ErrBadCursor},
		{"\x00", Cursor{}, ErrBadCursor},
		{"a\nb", Cursor{}, ErrBadCursor},
		{"a\x7f", Cursor{}, ErrBadCursor},
		{"é", Cursor{}, ErrBadCursor},
		{"\xff", Cursor{}, ErrBadCursor},
	}
	for _, tt := range tests {
		got, err := ParseCursor(tt.in)
		if got != tt.want || !errors.Is(err, tt.err) {
			t.Errorf("ParseCursor(%q) = %+v, %v; want %+v, %v", tt.in, got, err, tt.want, tt.err)
			continue
		}
		if err != nil {
			continue
		}
		back, err := ParseCursor(got.String())
		if err != nil || back != got {
			t.Errorf("ParseCursor(%q).String() = %q parses to %+v, %v", tt.in, got.String(), back, err)
		}
	}
}

func TestCursorString(t *testing.T) {
	tests := []struct {
		c    Cursor
		want string
	}{
		{Cursor{}, ""},
		{Cursor{Set: true}, "0"},
		{Cursor{Set: true, Seq: 17}, "17"},
		{Cursor{Set: true, ID: "abc"}, "abc"},
	}
	for _, tt := range tests {
		if got := tt.c.String(); got != tt.want {
			t.Errorf("%+v.String() = %q, want %q", tt.c, got, tt.want)
		}
	}
}

// TestOverflowCursorResets checks that a seq too big for uint64 behaves like
// any cursor from the future: the whole cache, flagged Reset.
func TestOverflowCursorResets(t *testing.T) {
	c, err := ParseCursor("99999999999999999999")
	if err != nil {
		t.Fatal(err)
	}
	b := filledBuffer(5, 1, 3)
	r := b.Since(c, 3)
	if len(r.Messages) != 3 || !r.Reset {
		t.Fatalf("Since(%+v) = %d messages, reset %v; want 3, true", c, len(r.Messages), r.Reset)
	}
}
