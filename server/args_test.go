package server

import (
	"testing"
	"wall/server/internal/form"
)

// Arguments decode as Python's unquote_plus: '+' is a space, valid escapes
// decode, and a malformed escape stays text instead of failing the request.
func TestUnquotePlus(t *testing.T) {
	for in, want := range map[string]string{
		"":            "",
		"plain":       "plain",
		"a+b":         "a b",
		"50%25":       "50%",
		"50%":         "50%",
		"100%+sure":   "100% sure",
		"%zz%41%4":    "%zzA%4",
		"%E2%82%AC":   "\u20ac",
		"%ff":         "\xff", // bytes, checked for UTF-8 by the caller
		"a%2Bb+c%20d": "a+b c d",
	} {
		if got := form.Unquote(in); got != want {
			t.Errorf("form.Unquote(%q) = %q, want %q", in, got, want)
		}
	}
	a := args{}
	mergeQuery(a, "body=50%&body=60%&x=%41&&=v&k")
	if a["body"] != "60%" || a["x"] != "A" || a[""] != "v" || a["k"] != "" {
		t.Fatalf("mergeQuery: %q", a)
	}
}
