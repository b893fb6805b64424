package wall

import (
	"errors"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"
)

// ErrInvalidUTF8 is returned by CleanBody for bodies that are not UTF-8.
var ErrInvalidUTF8 = errors.New("invalid unicode in body")

// CleanBody applies Tornado's standard argument processing to a raw body:
// it rejects invalid UTF-8, replaces the control characters U+0000–U+0008
// and U+000E–U+001F with spaces, and strips leading and trailing whitespace
// as Python's str.strip does (NBSP, EM SPACE, ideographic space included).
func CleanBody(raw string) (string, error) {
	if !utf8.ValidString(raw) {
		return "", ErrInvalidUTF8
	}
	s := raw
	if strings.IndexFunc(s, isReplacedControl) >= 0 {
		s = strings.Map(func(r rune) rune {
			if isReplacedControl(r) {
				return ' '
			}
			return r
		}, s)
	}
	return strings.TrimFunc(s, isPySpace), nil
}

func isReplacedControl(r rune) bool {
	return r <= 0x08 || (r >= 0x0e && r <= 0x1f)
}

// isPySpace reports whether Python's str.isspace is true for r.
func isPySpace(r rune) bool {
	switch r {
	case '\t', '\n', '\v', '\f', '\r', 0x1c, 0x1d, 0x1e, 0x1f, ' ', 0x85, 0xa0,
		0x1680, 0x2028, 0x2029, 0x202f, 0x205f, 0x3000:
		return true
	}
	return r >= 0x2000 && r <= 0x200a
}

// isPyWord reports whether r matches Python's Unicode \w.
func isPyWord(r rune) bool {
	return r == '_' || unicode.IsLetter(r) || unicode.IsNumber(r)
}

// escapeHTML escapes text exactly as Tornado's xhtml_escape does in the
// chat demo's rendering: & < > " and ' (as &#39;).
func escapeHTML(s string) string {
	return htmlEscaper.Replace(s)
}

var htmlEscaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;", "'", "&#39;")

// pySpaceClass is Python's Unicode \s as a character-class body.
const pySpaceClass = `\t\n\v\f\r\x{1c}-\x{1f} \x{85}\x{a0}\x{1680}\x{2000}-\x{200a}\x{2028}\x{2029}\x{202f}\x{205f}\x{3000}`

// urlRE is Tornado's _URL_RE translated to RE2: \w and \s are spelled out
// with Python's Unicode meaning, and the leading \b (which RE2 only knows for
// ASCII) is checked by hand in linkify.
var urlRE = regexp.MustCompile(`^((?:([\p{L}\p{N}_-]+):(/{1,3})|www[.])(?:(?:(?:[^` + pySpaceClass + `&()]|&amp;|&quot;)*(?:[^!"#$%&'()*+,.:;<=>?@\[\]^` + "`" + `{|}~` + pySpaceClass + `]))|(?:\((?:[^` + pySpaceClass + `&()]|&amp;|&quot;)*\)))+)`)

// urlStart finds candidate positions cheaply before the full regexp runs.
var urlStart = regexp.MustCompile(`[\p{L}\p{N}_-]+:/|www\.`)

// linkify HTML-escapes text and turns http(s) URLs and www. hosts into links,
// byte for byte as tornado.escape.linkify with its defaults.
func linkify(text string) string {
	esc := escapeHTML(text)
	if !urlStart.MatchString(esc) {
		return esc
	}
	var b strings.Builder
	b.Grow(len(esc) + 32)
	last := 0     // esc[:last] has been written
	runEnd := 0   // end of the [\w-] run holding pos, while pos < runEnd
	deadRun := -1 // runEnd of a run whose `[\w-]+:` branch cannot match
	for pos := 0; pos < len(esc); {
		_, size := utf8.DecodeRuneInString(esc[pos:])
		// Python's re.sub tries every position left to right; a match must
		// start at a word boundary.
		if !wordBoundary(esc, pos) {
			pos += size
			continue
		}
		if pos >= runEnd {
			runEnd = pos + wordRunLen(esc[pos:])
		}
		// The `([\w-]+):` branch must take the whole [\w-] run up to its
		// end, so it matches or fails alike at every position of one run.
		// Once it failed, only a "www." start can match later in the run.
		// Skipping the rest keeps linkify linear: without it a 16 KiB body
		// like "a-a-a-…a:/" costs O(n²) regexp steps (seconds of CPU).
		if runEnd == deadRun && !strings.HasPrefix(esc[pos:], "www.") {
			pos += size
			continue
		}
		m := urlRE.FindStringSubmatchIndex(esc[pos:])
		if m == nil || m[4] < 0 {
			deadRun = runEnd
		}
		if m == nil {
			pos += size
			continue
		}
		url := esc[pos+m[2] : pos+m[3]]
		proto := ""
		if m[4] >= 0 {
			proto = esc[pos+m[4] : pos+m[5]]
		}
		b.WriteString(esc[last:pos])
		writeLink(&b, url, proto)
		pos += m[1]
		last = pos
	}
	b.WriteString(esc[last:])
	return b.String()
}

// wordRunLen returns the length of the run of [\w-] characters that s
// starts with.
func wordRunLen(s string) int {
	for i, r := range s {
		if r != '-' && !isPyWord(r) {
			return i
		}
	}
	return len(s)
}

func wordBoundary(s string, i int) bool {
	before, after := false, false
	if i > 0 {
		r, _ := utf8.DecodeLastRuneInString(s[:i])
		before = isPyWord(r)
	}
	if i < len(s) {
		r, _ := utf8.DecodeRuneInString(s[i:])
		after = isPyWord(r)
	}
	return before != after
}

// writeLink writes a matched url as Tornado's linkify does (no extra
// params, no shortening): a link when the protocol is http, https or
// absent (then http:// is prepended), the bare text otherwise.
func writeLink(b *strings.Builder, url, proto string) {
	switch proto {
	case "":
		b.WriteString(`<a href="http://` + url + `">` + url + `</a>`)
	case "http", "https":
		b.WriteString(`<a href="` + url + `">` + url + `</a>`)
	default:
		b.WriteString(url)
	}
}
