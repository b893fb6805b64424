package wall

import (
	"encoding/json"
	"strings"
	"testing"
	"unsafe"
)

func TestParseCursor(t *testing.T) {
	const uuid = "0b5f8ea4-1c1e-4c1e-9a4e-2f0b7a1c3d5e"
	const ep = "0123456789abcdef"
	long := strings.Repeat("a", 4096)
	tests := []struct {
		in   string
		want Cursor
	}{
		{"", Cursor{}},
		{"0", Cursor{Set: true, Seq: 0}},
		{"1", Cursor{Set: true, Seq: 1}},
		{"42", Cursor{Set: true, Seq: 42}},
		{"007", Cursor{Set: true, Seq: 7}},
		{"18446744073709551615", Cursor{Set: true, Seq: 1<<64 - 1}},
		// Past uint64 it cannot be a seq we issued; as an id it is simply
		// unknown, which Since answers with the whole cache and Reset.
		{"18446744073709551616", Cursor{Set: true, ID: "18446744073709551616"}},
		// Epoch cursors.
		{"42." + ep, Cursor{Set: true, Seq: 42, Epoch: ep}},
		{"0." + ep, Cursor{Set: true, Seq: 0, Epoch: ep}},
		{"1.x", Cursor{Set: true, Seq: 1, Epoch: "x"}},
		{"1.a.b", Cursor{Set: true, Seq: 1, Epoch: "a.b"}},
		{"18446744073709551615." + ep, Cursor{Set: true, Seq: 1<<64 - 1, Epoch: ep}},
		// Not canonical, or no epoch: an id (unknown: a reset), so that
		// String gives back what was sent.
		{"007." + ep, Cursor{Set: true, ID: "007." + ep}},
		{"42.", Cursor{Set: true, ID: "42."}},
		{".abc", Cursor{Set: true, ID: ".abc"}},
		{"-1." + ep, Cursor{Set: true, ID: "-1." + ep}},
		{"18446744073709551616." + ep, Cursor{Set: true, ID: "18446744073709551616." + ep}},
		// Ids.
		{uuid, Cursor{Set: true, ID: uuid}},
		{"1a", Cursor{Set: true, ID: "1a"}},
		{"-1", Cursor{Set: true, ID: "-1"}},
		{"+1", Cursor{Set: true, ID: "+1"}},
		{"0x10", Cursor{Set: true, ID: "0x10"}},
		{"1_000", Cursor{Set: true, ID: "1_000"}},
		{"~!@#$%^&*()", Cursor{Set: true, ID: "~!@#$%^&*()"}},
		// Tornado answers any cursor it does not know with the whole
		// cache, whatever its length or bytes: so do we.
		{long, Cursor{Set: true, ID: long}},
		{strings.Repeat("1", 65), Cursor{Set: true, ID: strings.Repeat("1", 65)}},
		{" 1", Cursor{Set: true, ID: " 1"}},
		{"1 ", Cursor{Set: true, ID: "1 "}},
		{"a b", Cursor{Set: true, ID: "a b"}},
		{"a\tb", Cursor{Set: true, ID: "a\tb"}},
		{"\x00", Cursor{Set: true, ID: "\x00"}},
		{"a\nb", Cursor{Set: true, ID: "a\nb"}},
		{"a\x7f", Cursor{Set: true, ID: "a\x7f"}},
		{"é", Cursor{Set: true, ID: "é"}},
		{"\xff", Cursor{Set: true, ID: "\xff"}},
		{`"}`, Cursor{Set: true, ID: `"}`}},
	}
	for _, tt := range tests {
		got, err := ParseCursor(tt.in)
		if got != tt.want || err != nil {
			t.Errorf("ParseCursor(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
			continue
		}
		back, _ := ParseCursor(got.String())
		if back != got {
			t.Errorf("ParseCursor(%q).String() = %q parses to %+v", tt.in, got.String(), back)
		}
		if got.Epoch != "" || got.ID != "" || got.Seq != 7 {
			if s := got.String(); s != tt.in {
				t.Errorf("ParseCursor(%q).String() = %q, want it as sent", tt.in, s)
			}
		}
	}
}

// TestParseCursorEpochDoesNotAlias: a poll keeps its cursor while the
// buffer the argument was read from is reused (the long-poll engine).
func TestParseCursorEpochDoesNotAlias(t *testing.T) {
	buf := []byte("42.0123456789abcdef")
	c, _ := ParseCursor(unsafe.String(&buf[0], len(buf))) // a view, as the engine passes
	copy(buf, "99.ffffffffffffffff")
	if c.Seq != 42 || c.Epoch != "0123456789abcdef" {
		t.Fatalf("cursor changed with the buffer: %+v", c)
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
		{Cursor{Set: true, Seq: 17, Epoch: "0123456789abcdef"}, "17.0123456789abcdef"},
		{Cursor{Set: true, ID: "abc"}, "abc"},
	}
	for _, tt := range tests {
		if got := tt.c.String(); got != tt.want {
			t.Errorf("%+v.String() = %q, want %q", tt.c, got, tt.want)
		}
	}
}

// TestCursorAppendJSON: an echoed cursor is valid JSON whatever the client
// sent, and decodes to what it sent when that was UTF-8.
func TestCursorAppendJSON(t *testing.T) {
	for _, in := range []string{"", "0", "42", "42.0123456789abcdef", "1.\"\\\x00é", "a\"b", `\`, "\x00\x1f\x7f",
		"</script>", "é日😀", "\u2028", "\xff\xfe", "a\xc3", strings.Repeat("z", 5000)} {
		c, _ := ParseCursor(in)
		b := c.AppendJSON([]byte("x"))
		if b[0] != 'x' {
			t.Fatalf("%q: AppendJSON overwrote the prefix", in)
		}
		var got string
		if err := json.Unmarshal(b[1:], &got); err != nil {
			t.Errorf("%q: %s is not a JSON string: %v", in, b[1:], err)
			continue
		}
		// Each invalid byte becomes one U+FFFD.
		want := []rune(c.String())
		if got != string(want) {
			t.Errorf("%q: AppendJSON decodes to %q, want %q", in, got, string(want))
		}
		for _, ch := range b[1:] {
			if ch < 0x20 || ch >= 0x7f {
				t.Errorf("%q: %q is not printable ASCII", in, b[1:])
				break
			}
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
	r := b.Since(c, 3, "")
	if len(r.Messages) != 3 || !r.Reset {
		t.Fatalf("Since(%+v) = %d messages, reset %v; want 3, true", c, len(r.Messages), r.Reset)
	}
}

// TestAnyCursorResets: whatever a client sends that is not a cursor of
// ours gets the whole cache and Reset, never an error (Tornado's rule).
func TestAnyCursorResets(t *testing.T) {
	b := filledBuffer(5, 1, 3)
	for _, in := range []string{strings.Repeat("a", 10000), "a b", "\x00", "é", "\xff", "42.", "007.e"} {
		c, err := ParseCursor(in)
		if err != nil {
			t.Fatalf("ParseCursor(%q): %v", in, err)
		}
		if r := b.Since(c, 3, "e"); len(r.Messages) != 3 || !r.Reset {
			t.Errorf("Since(%q) = %d messages, reset %v; want 3, true", in, len(r.Messages), r.Reset)
		}
	}
}

// TestSinceEpoch: a seq cursor of the buffer's epoch is a position; one of
// any other epoch is answered with the whole cache and Reset, even when its
// seq exists in the current numbering (the restart bug: a page open across
// a restart kept showing messages the server no longer had and skipped the
// first new ones). A plain seq is taken in the current epoch.
func TestSinceEpoch(t *testing.T) {
	b := filledBuffer(10, 1, 7)
	tests := []struct {
		name  string
		c     Cursor
		first uint64 // seq of the first message answered
		n     int
		reset bool
	}{
		{"own epoch", Cursor{Set: true, Seq: 5, Epoch: "new"}, 6, 2, false},
		{"own epoch, from the start", Cursor{Set: true, Seq: 0, Epoch: "new"}, 1, 7, false},
		{"other epoch", Cursor{Set: true, Seq: 5, Epoch: "old"}, 1, 7, true},
		{"other epoch at last", Cursor{Set: true, Seq: 7, Epoch: "old"}, 1, 7, true},
		{"plain seq", Cursor{Set: true, Seq: 5}, 6, 2, false},
		{"plain seq ahead", Cursor{Set: true, Seq: 9}, 1, 7, true},
	}
	for _, tt := range tests {
		r := b.Since(tt.c, 7, "new")
		if len(r.Messages) != tt.n || r.Reset != tt.reset || r.Missed != 0 || r.Messages[0].Seq != tt.first {
			t.Errorf("%s: Since(%+v) = %d messages, missed %d, reset %v; want %d from %d, reset %v",
				tt.name, tt.c, len(r.Messages), r.Missed, r.Reset, tt.n, tt.first, tt.reset)
		}
	}
}
