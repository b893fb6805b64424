package form

import (
	"net/http"
	"strings"
	"testing"
)

// FindCookie finds what http.Request.Cookie finds.
func FuzzFindCookie(f *testing.F) {
	for _, s := range []string{
		"_xsrf=abc", " _xsrf = abc ; x=1", "x=1; _xsrf=\"q\"", "_xsrf=\"", "_xsrf=a\\b; _xsrf=ok",
		"_xsrf=2|ab|cd|12", "_xsrf", "=_xsrf", "_xsrf=a b", "_xsrf=;_xsrf=b", "a=1;;;_xsrf=\"\"",
		"_xsrf=\x7f; _xsrf=z", strings.Repeat("a;", 3000) + "_xsrf=a",
	} {
		f.Add(s, "")
		f.Add("y=2", s)
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		var lines []string
		for _, l := range []string{a, b} {
			if l != "" {
				lines = append(lines, l)
			}
		}
		r := &http.Request{Header: http.Header{"Cookie": lines}}
		want, ok := "", false
		if c, err := r.Cookie("_xsrf"); err == nil {
			want, ok = c.Value, true
		}
		if got, gok := FindCookie(lines, "_xsrf"); got != want || gok != ok {
			t.Errorf("FindCookie(%q) = %q %v; http.Request.Cookie: %q %v", lines, got, gok, want, ok)
		}
	})
}
