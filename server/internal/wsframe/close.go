package wsframe

import "unicode/utf8"

// Close codes (RFC 6455 section 7.4.1) the server sends or checks.
const (
	CloseNormal          = 1000
	CloseGoingAway       = 1001
	CloseProtocolError   = 1002
	CloseNoStatus        = 1005 // never sent: "the peer's close had no code"
	CloseInvalidPayload  = 1007
	ClosePolicyViolation = 1008
	CloseTooBig          = 1009
	CloseInternalError   = 1011
)

// CloseError is a broken rule and the close code and reason to end the
// connection with.
type CloseError struct {
	Code   int
	Reason string
}

func (e *CloseError) Error() string { return e.Reason }

// The rules a client frame can break.
var (
	ErrNotMasked    = &CloseError{CloseProtocolError, "client frames must be masked"}
	ErrReserved     = &CloseError{CloseProtocolError, "reserved bits set"}
	ErrBadOpcode    = &CloseError{CloseProtocolError, "unknown opcode"}
	ErrBadControl   = &CloseError{CloseProtocolError, "bad control frame"}
	ErrContinuation = &CloseError{CloseProtocolError, "unexpected continuation frame"}
	ErrFragmented   = &CloseError{CloseProtocolError, "expected continuation frame"}
	ErrTooBig       = &CloseError{CloseTooBig, "message too big"}
	ErrInvalidUTF8  = &CloseError{CloseInvalidPayload, "invalid UTF-8"}
	ErrBadCloseCode = &CloseError{CloseProtocolError, "invalid close code"}
	ErrCloseReason  = &CloseError{CloseInvalidPayload, "invalid UTF-8 in close reason"}
)

// CloseFrame encodes a close frame with code and reason; code and reason
// must fit a control frame (2 + 123 bytes).
func CloseFrame(code int, reason string) []byte {
	p := make([]byte, 2, 2+len(reason))
	p[0], p[1] = byte(code>>8), byte(code)
	return Control(OpClose, append(p, reason...))
}

// ParseClose reads a peer's close payload: CloseNoStatus for an empty
// one. A code the peer may not send, a one-byte payload or a reason that
// is not UTF-8 is a *CloseError to answer with instead of an echo.
func ParseClose(payload []byte) (code int, reason string, err error) {
	switch len(payload) {
	case 0:
		return CloseNoStatus, "", nil
	case 1:
		return 0, "", ErrBadControl
	}
	code = int(payload[0])<<8 | int(payload[1])
	if !ValidCloseCode(code) {
		return code, "", ErrBadCloseCode
	}
	if !utf8.Valid(payload[2:]) {
		return code, "", ErrCloseReason
	}
	return code, string(payload[2:]), nil
}

// ValidCloseCode reports whether a peer may send code in a close frame
// (RFC 6455 section 7.4): 1000–1003 and 1007–1014 (the defined and the
// IANA-registered ones), and 3000–4999 (libraries and applications).
// Below 1000, 1004 (reserved), 1005, 1006 and 1015 (never on the wire),
// 1016–2999 (unassigned) and 5000 up are not.
func ValidCloseCode(code int) bool {
	switch {
	case code >= 1000 && code <= 1003, code >= 1007 && code <= 1014:
		return true
	case code >= 3000 && code <= 4999:
		return true
	}
	return false
}
