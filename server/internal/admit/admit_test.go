package admit

import (
	"net/http"
	"strings"
	"testing"

	"wall/wall"
)

// source is a request as a table row gives it.
type source struct {
	method  string
	args    map[string]string
	headers map[string]string
	cookies map[string]string
	peer    string
}

func (s source) Method() string { return s.method }
func (s source) Arg(n string) (string, bool) {
	v, ok := s.args[n]
	return v, ok
}
func (s source) Header(n string) string { return s.headers[http.CanonicalHeaderKey(n)] }
func (s source) Peer() string           { return s.peer }
func (s source) Cookie(n string) (string, bool) {
	v, ok := s.cookies[n]
	return v, ok
}

// The steps run in order (XSRF, identity, wall, cursor) with the same
// rules for every kind that takes them.
func TestAdmit(t *testing.T) {
	tok := EncodeXSRF([]byte("0123456789abcdef"))
	other := EncodeXSRF([]byte("fedcba9876543210"))
	a := New(Config{PublishToken: "secret"})
	for _, tc := range []struct {
		name   string
		kind   Kind
		src    source
		status int    // 0: admitted
		wall   string // when admitted
		cursor string
	}{
		{name: "poll GET, defaults", kind: Poll, src: source{method: "GET"}, wall: wall.DefaultWall},
		{name: "poll GET, wall and cursor", kind: Poll, src: source{method: "GET", args: map[string]string{"wall": "a", "cursor": "7"}}, wall: "a", cursor: "7"},
		{name: "empty wall is the default", kind: Poll, src: source{method: "GET", args: map[string]string{"wall": ""}}, wall: wall.DefaultWall},
		{name: "bad wall", kind: Poll, src: source{method: "GET", args: map[string]string{"wall": "a b"}}, status: 400},
		{name: "long wall", kind: Socket, src: source{method: "GET", args: map[string]string{"wall": strings.Repeat("w", 65)}}, status: 400},
		{name: "POST poll without token", kind: Poll, src: source{method: "POST", cookies: map[string]string{"_xsrf": tok}}, status: 403},
		{name: "POST poll, field", kind: Poll, src: source{method: "POST", args: map[string]string{"_xsrf": tok}, cookies: map[string]string{"_xsrf": tok}}, wall: wall.DefaultWall},
		{name: "POST poll, header", kind: Poll, src: source{method: "POST", headers: map[string]string{"X-Xsrftoken": tok}, cookies: map[string]string{"_xsrf": tok}}, wall: wall.DefaultWall},
		{name: "POST poll, other header", kind: Poll, src: source{method: "POST", headers: map[string]string{"X-Csrftoken": tok}, cookies: map[string]string{"_xsrf": tok}}, wall: wall.DefaultWall},
		{name: "POST poll, no cookie", kind: Poll, src: source{method: "POST", args: map[string]string{"_xsrf": tok}}, status: 403},
		{name: "POST poll, mismatch", kind: Poll, src: source{method: "POST", args: map[string]string{"_xsrf": other}, cookies: map[string]string{"_xsrf": tok}}, status: 403},
		{name: "XSRF before wall", kind: Post, src: source{method: "POST", args: map[string]string{"wall": "a b"}}, status: 403},
		{name: "post has no cursor", kind: Post, src: source{method: "POST", args: map[string]string{"_xsrf": tok, "cursor": "5"}, cookies: map[string]string{"_xsrf": tok}}, wall: wall.DefaultWall},
		{name: "page", kind: Page, src: source{method: "GET", args: map[string]string{"wall": "x"}}, wall: "x"},
		{name: "stats", kind: Stats, src: source{method: "GET", args: map[string]string{"wall": "x", "cursor": "5"}}, wall: "x"},
		{name: "publish, no token", kind: Publish, src: source{method: "POST"}, status: 401},
		{name: "publish, wrong token", kind: Publish, src: source{method: "POST", headers: map[string]string{"Authorization": "Bearer nope"}}, status: 401},
		{name: "publish, no XSRF needed", kind: Publish, src: source{method: "POST", headers: map[string]string{"Authorization": "Bearer secret"}, args: map[string]string{"wall": "w"}}, wall: "w"},
		{name: "identity before wall", kind: Publish, src: source{method: "POST", args: map[string]string{"wall": "a b"}}, status: 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tk, err := a.Admit(tc.src, tc.kind)
			switch {
			case tc.status != 0 && err == nil:
				t.Fatalf("admitted %+v, want %d", tk, tc.status)
			case tc.status != 0 && err.Status != tc.status:
				t.Fatalf("refused %d %q, want %d", err.Status, err.Message, tc.status)
			case tc.status == 0 && err != nil:
				t.Fatalf("refused %d %q", err.Status, err.Message)
			case tc.status == 0 && (tk.Wall != tc.wall || tk.Cursor.String() != tc.cursor):
				t.Fatalf("ticket %q %q, want %q %q", tk.Wall, tk.Cursor.String(), tc.wall, tc.cursor)
			}
		})
	}
}

// Without a publish token the API does not exist.
func TestAdmitPublishDisabled(t *testing.T) {
	_, err := New(Config{}).Admit(source{method: "POST", headers: map[string]string{"Authorization": "Bearer "}}, Publish)
	if err == nil || err.Status != http.StatusNotFound {
		t.Fatalf("got %v, want 404", err)
	}
}
