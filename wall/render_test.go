package wall

import (
	"errors"
	"html"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestCleanBody(t *testing.T) {
	tests := []struct {
		name, in, want string
		err            error
	}{
		{"empty", "", "", nil},
		{"plain", "hello", "hello", nil},
		{"invalid utf8", "a\xffb", "", ErrInvalidUTF8},
		{"truncated rune", "\xe6\x97", "", ErrInvalidUTF8},
		{"surrogate half", "\xed\xa0\x80", "", ErrInvalidUTF8},
		{"nul to space", "a\x00b", "a b", nil},
		{"0x01-0x08 to space", "a\x01\x02\x03\x04\x05\x06\x07\x08b", "a        b", nil},
		{"0x0e-0x1f to space", "a\x0e\x0f\x10\x15\x1a\x1b\x1c\x1d\x1e\x1fb", "a" + strings.Repeat(" ", 10) + "b", nil},
		{"tab LF VT FF CR kept inside", "a\tb\nc\vd\fe\rf", "a\tb\nc\vd\fe\rf", nil},
		{"DEL kept", "a\x7fb", "a\x7fb", nil},
		{"DEL at the ends kept", "\x7fa\x7f", "\x7fa\x7f", nil},
		{"C1 control U+0080 kept", "\u0080a", "\u0080a", nil},
		{"ascii whitespace stripped", " \t\n\v\f\r a b \r\n", "a b", nil},
		{"control chars become spaces then stripped", "\x00\x01hi\x1f\x0e", "hi", nil},
		{"NBSP stripped", "\u00a0hi\u00a0", "hi", nil},
		{"EM SPACE stripped", "\u2003hi\u2003", "hi", nil},
		{"ideographic space stripped", "\u3000hi\u3000", "hi", nil},
		{"NEL stripped", "\u0085hi\u0085", "hi", nil},
		{"line and paragraph separators stripped", "\u2028hi\u2029", "hi", nil},
		{"ogham and narrow spaces stripped", "\u1680\u202f\u205fhi\u200a", "hi", nil},
		{"inner unicode spaces kept", "a\u00a0\u3000b", "a\u00a0\u3000b", nil},
		{"zero width space not stripped", "\u200bhi\u200b", "\u200bhi\u200b", nil},
		{"BOM not stripped", "\ufeffhi\ufeff", "\ufeffhi\ufeff", nil},
		{"mongolian vowel separator not stripped", "\u180ehi", "\u180ehi", nil},
		{"whitespace only", " \t\u3000\u00a0\n", "", nil},
		{"controls only", "\x00\x01\x1f", "", nil},
		{"non-ASCII text kept", " é日本😀 ", "é日本😀", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := CleanBody(tt.in)
			if !errors.Is(err, tt.err) || got != tt.want {
				t.Errorf("CleanBody(%q) = %q, %v; want %q, %v", tt.in, got, err, tt.want, tt.err)
			}
		})
	}
}

// TestIsPySpace checks every code point against the set for which Python's
// str.isspace is true (and which Python's re \s matches), as listed by
// Python 3.11.
func TestIsPySpace(t *testing.T) {
	want := map[rune]bool{}
	for _, r := range []rune{0x9, 0xa, 0xb, 0xc, 0xd, 0x1c, 0x1d, 0x1e, 0x1f, 0x20, 0x85, 0xa0, 0x1680,
		0x2000, 0x2001, 0x2002, 0x2003, 0x2004, 0x2005, 0x2006, 0x2007, 0x2008, 0x2009, 0x200a,
		0x2028, 0x2029, 0x202f, 0x205f, 0x3000} {
		want[r] = true
	}
	for r := rune(0); r <= utf8.MaxRune; r++ {
		if got := isPySpace(r); got != want[r] {
			t.Errorf("isPySpace(%U) = %v, want %v", r, got, want[r])
		}
	}
}

// TestLinkify pins linkify against tornado.escape.linkify. Every expected
// string was produced by Python 3.11's re module running Tornado's _URL_RE
// and linkify's make_link (default arguments) over xhtml_escape'd text.
func TestLinkify(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"empty", "", ""},
		{"plain", "hello world", "hello world"},
		{"protocol example", "see http://example.com/?a=1&b=2 '", "see <a href=\"http://example.com/?a=1&amp;b=2\">http://example.com/?a=1&amp;b=2</a> &#39;"},
		{"www", "www.example.com", "<a href=\"http://www.example.com\">www.example.com</a>"},
		{"https", "https://example.com/path", "<a href=\"https://example.com/path\">https://example.com/path</a>"},
		{"port fragment and unreserved", "http://x.com:8080/a_b-c~d?e=f#g", "<a href=\"http://x.com:8080/a_b-c~d?e=f#g\">http://x.com:8080/a_b-c~d?e=f#g</a>"},
		{"trailing dot", "go to http://x.com.", "go to <a href=\"http://x.com\">http://x.com</a>."},
		{"trailing comma", "http://x.com, then", "<a href=\"http://x.com\">http://x.com</a>, then"},
		{"trailing paren", "http://x.com)", "<a href=\"http://x.com\">http://x.com</a>)"},
		{"trailing punctuation run", "http://x.com/a?!...", "<a href=\"http://x.com/a\">http://x.com/a</a>?!..."},
		{"wrapped in parens", "(http://x.com/a)", "(<a href=\"http://x.com/a\">http://x.com/a</a>)"},
		{"wrapped in angle brackets", "<http://x.com>", "&lt;<a href=\"http://x.com\">http://x.com</a>&gt;"},
		{"parens inside kept", "http://en.wikipedia.org/wiki/Foo_(bar)", "<a href=\"http://en.wikipedia.org/wiki/Foo_(bar)\">http://en.wikipedia.org/wiki/Foo_(bar)</a>"},
		{"parens then more", "http://x.com/(a)b(c)d", "<a href=\"http://x.com/(a)b(c)d\">http://x.com/(a)b(c)d</a>"},
		{"unbalanced open paren", "http://x.com/a(b", "<a href=\"http://x.com/a\">http://x.com/a</a>(b"},
		{"javascript", "javascript:alert(1)", "javascript:alert(1)"},
		{"javascript slashes", "javascript://%0aalert(1)", "javascript://%0aalert(1)"},
		{"ftp", "ftp://x.org", "ftp://x.org"},
		{"mailto", "mailto:a@b.com", "mailto:a@b.com"},
		{"uppercase proto", "HTTP://X.COM", "HTTP://X.COM"},
		{"mixed case proto", "Http://x.com", "Http://x.com"},
		{"uppercase www", "WWW.X.COM", "WWW.X.COM"},
		{"script", "<script>alert('x')</script>", "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"},
		{"url with quote", "http://x.com/\"onmouseover=\"alert(1)", "<a href=\"http://x.com/&quot;onmouseover=&quot;alert(1)\">http://x.com/&quot;onmouseover=&quot;alert(1)</a>"},
		{"url with lt", "http://x.com/<b>", "<a href=\"http://x.com/\">http://x.com/</a>&lt;b&gt;"},
		{"url with apostrophe", "http://x.com/it's", "<a href=\"http://x.com/it\">http://x.com/it</a>&#39;s"},
		{"quot inside url", "http://x.com/?q=\"a\"&r=1", "<a href=\"http://x.com/?q=&quot;a&quot;&amp;r=1\">http://x.com/?q=&quot;a&quot;&amp;r=1</a>"},
		{"literal entity text", "http://a.com&quot;", "<a href=\"http://a.com&amp;quot\">http://a.com&amp;quot</a>;"},
		{"amp entity run", "http://x.com/?a=1&&b", "<a href=\"http://x.com/?a=1&amp;&amp;b\">http://x.com/?a=1&amp;&amp;b</a>"},
		{"no word boundary www", "xwww.foo.com", "xwww.foo.com"},
		{"four w", "wwww.x.com", "wwww.x.com"},
		{"www word boundary after punct", "-www.foo.com", "-<a href=\"http://www.foo.com\">www.foo.com</a>"},
		{"http word boundary after punct", "-http://x.com", "-<a href=\"http://x.com\">http://x.com</a>"},
		{"no word boundary http", "xhttp://x.com", "xhttp://x.com"},
		{"unicode letter before http", "éhttp://x.com", "éhttp://x.com"},
		{"unicode letter before www", "éwww.x.com", "éwww.x.com"},
		{"cjk before url", "日本http://x.com", "日本http://x.com"},
		{"unicode after url", "http://x.com/é日本 ok", "<a href=\"http://x.com/é日本\">http://x.com/é日本</a> ok"},
		{"digit before", "1http://x.com", "1http://x.com"},
		{"underscore before", "_www.x.com", "_www.x.com"},
		{"hyphen scheme", "a-http://x.com", "a-http://x.com"},
		{"hyphen scheme x", "x-http://y.com", "x-http://y.com"},
		{"www hyphen scheme", "www-http://x.com", "www-http://x.com"},
		{"www after dead hyphen run", "a-a-www.x.com", "a-a-<a href=\"http://www.x.com\">www.x.com</a>"},
		{"dash run then colon", "a-a-a-a:/x", "a-a-a-a:/x"},
		{"unknown scheme then parens", "a:/(b)", "a:/(b)"},
		{"nbsp ends url", "http://x.com/a\u00a0b", "<a href=\"http://x.com/a\">http://x.com/a</a>\u00a0b"},
		{"ideographic space ends url", "http://x.com\u3000next", "<a href=\"http://x.com\">http://x.com</a>\u3000next"},
		{"zero width space inside url", "http://x.com/a\u200bb", "<a href=\"http://x.com/a\u200bb\">http://x.com/a\u200bb</a>"},
		{"three slashes", "http:///x.com", "<a href=\"http:///x.com\">http:///x.com</a>"},
		{"four slashes", "http:////x.com", "<a href=\"http:////x.com\">http:////x.com</a>"},
		{"one slash", "http:/x.com", "<a href=\"http:/x.com\">http:/x.com</a>"},
		{"scheme only", "http://", "<a href=\"http://\">http://</a>"},
		{"scheme then punct", "http://.", "<a href=\"http://\">http://</a>."},
		{"www only", "www.", "www."},
		{"two urls", "http://a.com and www.b.com.", "<a href=\"http://a.com\">http://a.com</a> and <a href=\"http://www.b.com\">www.b.com</a>."},
		{"adjacent urls", "http://a.com/http://b.com", "<a href=\"http://a.com/http://b.com\">http://a.com/http://b.com</a>"},
		{"tab and newline", "a\thttp://x.com\nwww.y.org", "a\t<a href=\"http://x.com\">http://x.com</a>\n<a href=\"http://www.y.org\">www.y.org</a>"},
		{"emoji", "😀 http://x.com/😀", "😀 <a href=\"http://x.com/😀\">http://x.com/😀</a>"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := linkify(tt.in); got != tt.want {
				t.Errorf("linkify(%q)\n got %q\nwant %q", tt.in, got, tt.want)
			}
			if got := linkifySlow(tt.in); got != tt.want {
				t.Errorf("linkifySlow(%q)\n got %q\nwant %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestRenderHTML(t *testing.T) {
	const id = "0b5f8ea4-1c1e-4c1e-9a4e-2f0b7a1c3d5e"
	tests := []struct{ body, want string }{
		{"", `<div class="message" id="m` + id + `"></div>` + "\n"},
		{"hi <b>", `<div class="message" id="m` + id + `">hi &lt;b&gt;</div>` + "\n"},
		{"www.x.com", `<div class="message" id="m` + id + `"><a href="http://www.x.com">www.x.com</a></div>` + "\n"},
	}
	for _, tt := range tests {
		if got := RenderHTML(id, tt.body); got != tt.want {
			t.Errorf("RenderHTML(%q) = %q, want %q", tt.body, got, tt.want)
		}
	}
}

// TestLinkifyLinear guards against quadratic scans: every position of a
// long [\w-] run is a word boundary, and a naive scan runs the regexp to
// the end of the run from each of them (about 20 s for 16 KiB).
func TestLinkifyLinear(t *testing.T) {
	for _, body := range []string{
		strings.Repeat("a-", 8192) + ":/ ",
		strings.Repeat("a-", 8192) + ":/",
		strings.Repeat("a-", 8192) + "www",
		strings.Repeat("www-", 4096) + ":",
	} {
		start := time.Now()
		out := linkify(body)
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("linkify of %d bytes took %v", len(body), d)
		}
		if out != escapeHTML(body) {
			t.Errorf("linkify of %q... linked something", body[:16])
		}
	}
}

// linkifySlow is the direct transcription of Python's re.sub: try the
// anchored regexp at every word boundary. linkify must agree with it.
func linkifySlow(text string) string {
	esc := escapeHTML(text)
	var b strings.Builder
	last := 0
	for pos := 0; pos < len(esc); {
		_, size := utf8.DecodeRuneInString(esc[pos:])
		var m []int
		if wordBoundary(esc, pos) {
			m = urlRE.FindStringSubmatchIndex(esc[pos:])
		}
		if m == nil {
			pos += size
			continue
		}
		url := esc[pos+m[2] : pos+m[3]]
		b.WriteString(esc[last:pos])
		proto := ""
		if m[4] >= 0 {
			proto = esc[pos+m[4] : pos+m[5]]
		}
		writeLink(&b, url, proto)
		pos += m[1]
		last = pos
	}
	return b.String() + esc[last:]
}

var linkTagRE = regexp.MustCompile(`<a href="([^"<>]*)">([^<>]*)</a>`)

func FuzzLinkify(f *testing.F) {
	for _, s := range []string{
		"", "see http://example.com/?a=1&b=2 '", "www.example.com", "(http://x.com/a)",
		"http://en.wikipedia.org/wiki/Foo_(bar)", "javascript:alert(1)", "<script>", "éhttp://x.com",
		"a-a-www.x.com", "http://a.com&quot;", "xwww.foo.com", "http://x.com/\"><img>", "a:/ b-c:// www.", "http:/0",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if !utf8.ValidString(s) {
			return // CleanBody rejects it before rendering
		}
		out := linkify(s)
		if len(s) <= 1024 {
			if slow := linkifySlow(s); out != slow {
				t.Fatalf("linkify(%q) = %q, direct re.sub transcription gives %q", s, out, slow)
			}
		}
		// Every tag is a well-formed link whose href is its text, with
		// http:// prepended for www. hosts.
		for _, m := range linkTagRE.FindAllStringSubmatch(out, -1) {
			href, text := m[1], m[2]
			switch {
			case strings.HasPrefix(text, "http:/"), strings.HasPrefix(text, "https:/"):
				if href != text {
					t.Fatalf("linkify(%q): href %q for text %q", s, href, text)
				}
			case strings.HasPrefix(text, "www."):
				if href != "http://"+text {
					t.Fatalf("linkify(%q): href %q for text %q", s, href, text)
				}
			default:
				t.Fatalf("linkify(%q): linked %q", s, text)
			}
		}
		// Outside the links there is no markup, and dropping the tags and
		// unescaping gives the input back.
		plain := linkTagRE.ReplaceAllString(out, "$2")
		if strings.ContainsAny(plain, `<>"'`) {
			t.Fatalf("linkify(%q) = %q: raw markup outside the links", s, out)
		}
		if got := html.UnescapeString(plain); got != s {
			t.Fatalf("linkify(%q) = %q: text is %q", s, out, got)
		}
	})
}
