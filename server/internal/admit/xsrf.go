package admit

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"net/http"
	"strconv"
	"strings"
	"time"
	"wall/server/internal/form"
)

// XSRF protection is Tornado's double-submit check: every POST carries the
// token of its _xsrf cookie in a field or header. No server secret is
// involved, so a token minted by one instance is accepted by every other.

// XSRFCookie is the name of the cookie (and of the form field) that
// carries the token.
const XSRFCookie = "_xsrf"

// XSRFToken returns the raw token of the request's _xsrf cookie, minting a
// new one (and setting the cookie) when there is none or it is malformed.
func XSRFToken(w http.ResponseWriter, r *http.Request) []byte {
	if c, err := r.Cookie(XSRFCookie); err == nil {
		if tok := DecodeXSRF(c.Value); tok != nil {
			return tok
		}
	}
	tok := make([]byte, 16)
	rand.Read(tok)
	// Tornado sets it with Path=/ only: readable by scripts (legacy chat.js
	// reads document.cookie), and the v2 value ends in a digit, which its
	// \b-terminated regex needs.
	http.SetCookie(w, &http.Cookie{Name: XSRFCookie, Value: EncodeXSRF(tok), Path: "/"})
	return tok
}

// EncodeXSRF masks tok afresh (version 2 format):
// 2|<mask hex>|<masked token hex>|<unix time>.
func EncodeXSRF(tok []byte) string {
	mask := make([]byte, 4)
	rand.Read(mask)
	return "2|" + hex.EncodeToString(mask) + "|" + hex.EncodeToString(xorMask(mask, tok)) +
		"|" + strconv.FormatInt(time.Now().Unix(), 10)
}

// DecodeXSRF unmasks a version 2 token, or returns a version 1 (plain) token
// as is. It returns nil for a malformed value.
func DecodeXSRF(v string) []byte { return appendXSRF(nil, v) }

// appendXSRF is decodeXSRF appending to dst, so that a check can decode
// into stack arrays.
func appendXSRF(dst []byte, v string) []byte {
	if v == "" {
		return nil
	}
	if !strings.HasPrefix(v, "2|") {
		return append(dst, v...)
	}
	mask, rest, _ := strings.Cut(v[2:], "|")
	masked, ts, ok := strings.Cut(rest, "|")
	if !ok || strings.Contains(ts, "|") || mask == "" || masked == "" ||
		len(mask)%2 != 0 || len(masked)%2 != 0 {
		return nil
	}
	out := dst
	for i := 0; i < len(masked); i += 2 {
		m := len(out) - len(dst) // index into the token
		j := 2 * (m % (len(mask) / 2))
		b, ok1 := form.Unhex(masked[i], masked[i+1])
		k, ok2 := form.Unhex(mask[j], mask[j+1])
		if !ok1 || !ok2 {
			return nil
		}
		out = append(out, b^k)
	}
	// Every mask byte must be hex too, as hex.DecodeString required.
	for j := 0; j < len(mask); j += 2 {
		if _, ok := form.Unhex(mask[j], mask[j+1]); !ok {
			return nil
		}
	}
	return out
}

func xorMask(mask, b []byte) []byte {
	out := make([]byte, len(b))
	for i := range b {
		out[i] = b[i] ^ mask[i%len(mask)]
	}
	return out
}

// matchXSRF applies Tornado's check to a POST's parts: the token from its
// _xsrf argument ("" if none) or, failing that, the X-XSRFToken or
// X-CSRFToken header must unmask to the token of its _xsrf cookie, if it
// has one. It returns the 403 message, or "" when the check passes.
func matchXSRF(arg, xsrfHeader, csrfHeader, cookie string, hasCookie bool) string {
	// As Tornado's `get_argument("_xsrf") or header or header`: an empty
	// argument falls back to the headers.
	v := arg
	if v == "" {
		v = xsrfHeader
		if v == "" {
			v = csrfHeader
		}
		if v == "" {
			return "'_xsrf' argument missing from POST"
		}
	}
	if !hasCookie {
		return "XSRF cookie does not match POST argument"
	}
	var gb, wb [64]byte
	got, want := appendXSRF(gb[:0], v), appendXSRF(wb[:0], cookie)
	if got == nil || want == nil || subtle.ConstantTimeCompare(got, want) != 1 {
		return "XSRF cookie does not match POST argument"
	}
	return ""
}

// equalSecret compares secrets in constant time.
func equalSecret(got, want string) bool {
	return subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}
