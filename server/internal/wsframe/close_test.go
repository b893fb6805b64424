package wsframe

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"strings"
	"testing"
)

// Every code a peer may send is accepted and every other is a 1002
// (RFC 6455 section 7.4); the whole 16-bit range is checked against the
// RFC's list.
func TestValidCloseCode(t *testing.T) {
	valid := map[int]bool{}
	for c := 1000; c <= 1003; c++ {
		valid[c] = true
	}
	for c := 1007; c <= 1014; c++ {
		valid[c] = true
	}
	for c := 3000; c <= 4999; c++ {
		valid[c] = true
	}
	for c := 0; c <= 0xffff; c++ {
		if got := ValidCloseCode(c); got != valid[c] {
			t.Errorf("ValidCloseCode(%d) = %v, want %v", c, got, valid[c])
		}
	}
}

func TestParseClose(t *testing.T) {
	payload := func(code int, reason string) []byte {
		return append(binary.BigEndian.AppendUint16(nil, uint16(code)), reason...)
	}
	for _, tc := range []struct {
		name    string
		payload []byte
		code    int
		reason  string
		errCode int // the close code to answer with instead of an echo, 0 to echo
	}{
		{"empty", nil, CloseNoStatus, "", 0},
		{"1000 with a reason", payload(1000, "bye"), 1000, "bye", 0},
		{"1001", payload(1001, ""), 1001, "", 0},
		{"1003", payload(1003, ""), 1003, "", 0},
		{"1007", payload(1007, ""), 1007, "", 0},
		{"1014", payload(1014, ""), 1014, "", 0},
		{"3000", payload(3000, ""), 3000, "", 0},
		{"4999", payload(4999, "é"), 4999, "é", 0},
		{"one byte", []byte{0x03}, 0, "", CloseProtocolError},
		{"0", payload(0, ""), 0, "", CloseProtocolError},
		{"999", payload(999, ""), 0, "", CloseProtocolError},
		{"1004 reserved", payload(1004, ""), 0, "", CloseProtocolError},
		{"1005 no status", payload(1005, ""), 0, "", CloseProtocolError},
		{"1006 abnormal", payload(1006, ""), 0, "", CloseProtocolError},
		{"1015 TLS", payload(1015, ""), 0, "", CloseProtocolError},
		{"1016 unassigned", payload(1016, ""), 0, "", CloseProtocolError},
		{"2999 unassigned", payload(2999, ""), 0, "", CloseProtocolError},
		{"5000", payload(5000, ""), 0, "", CloseProtocolError},
		{"65535", payload(65535, ""), 0, "", CloseProtocolError},
		{"invalid UTF-8 reason", payload(1000, "\xff"), 0, "", CloseInvalidPayload},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, reason, err := ParseClose(tc.payload)
			if tc.errCode != 0 {
				ce, ok := err.(*CloseError)
				if !ok || ce.Code != tc.errCode {
					t.Fatalf("ParseClose = %d %q %v, want close error %d", code, reason, err, tc.errCode)
				}
				return
			}
			if err != nil || code != tc.code || reason != tc.reason {
				t.Fatalf("ParseClose = %d %q %v, want %d %q", code, reason, err, tc.code, tc.reason)
			}
		})
	}
}

// The server's frames are unmasked, final, and carry what was asked for,
// whatever the length's encoding.
func TestServerFrames(t *testing.T) {
	read := func(b []byte) (byte, []byte) {
		t.Helper()
		// Mask the server frame so the client-frame reader can read it
		// back: set the mask bit and insert a zero key after the length.
		hl := 2
		switch b[1] {
		case 126:
			hl = 4
		case 127:
			hl = 10
		}
		if b[0]&0x80 == 0 || b[1]&0x80 != 0 {
			t.Fatalf("header %x: not final or masked", b[:2])
		}
		in := append(append(append([]byte{}, b[:hl]...), 0, 0, 0, 0), b[hl:]...)
		in[1] |= 0x80
		f, err := ReadClientFrame(bufio.NewReader(bytes.NewReader(in)), 1<<20, nil)
		if err != nil {
			t.Fatal(err)
		}
		return f.Op, f.Payload
	}
	for _, n := range []int{0, 125, 126, 0xffff, 0x10000} {
		body := strings.Repeat("x", n)
		if op, p := read(Text([]byte(body))); op != OpText || string(p) != body {
			t.Fatalf("Text of %d bytes read back as op %x, %d bytes", n, op, len(p))
		}
	}
	if op, p := read(Control(OpPong, []byte("p"))); op != OpPong || string(p) != "p" {
		t.Fatalf("Control: op %x payload %q", op, p)
	}
	if op, p := read(CloseFrame(1008, "slow")); op != OpClose || string(p) != "\x03\xf0slow" {
		t.Fatalf("CloseFrame: op %x payload %q", op, p)
	}
}
