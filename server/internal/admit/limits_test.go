package admit

import (
	"net/http"
	"net/netip"
	"testing"
	"time"
)

// The client is the peer, or the address a trusted proxy names; IPv6 by
// its /64; a peer that is no IP address is no client (no limit).
func TestClientAddr(t *testing.T) {
	trusted, err := ParsePrefixes("10.0.0.0/8, ::1, 192.0.2.7")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		peer, realIP, xff, want string
	}{
		{peer: "198.51.100.1:5000", want: "198.51.100.1"},
		{peer: "198.51.100.1:5000", realIP: "203.0.113.9", want: "198.51.100.1"}, // not a proxy
		{peer: "10.1.2.3:5000", realIP: "203.0.113.9", want: "203.0.113.9"},
		{peer: "10.1.2.3:5000", realIP: " 203.0.113.9 ", xff: "1.1.1.1", want: "203.0.113.9"},
		{peer: "10.1.2.3:5000", realIP: "garbage", xff: "1.1.1.1, 203.0.113.9", want: "203.0.113.9"},
		{peer: "10.1.2.3:5000", xff: "1.1.1.1, 203.0.113.9, 10.9.9.9", want: "203.0.113.9"}, // past a trusted hop
		{peer: "10.1.2.3:5000", xff: "10.9.9.9, 10.8.8.8", want: "10.9.9.9"},                // all trusted: the left-most
		{peer: "10.1.2.3:5000", xff: "1.1.1.1, bogus, 10.8.8.8", want: "10.8.8.8"},          // unreadable: stop
		{peer: "10.1.2.3:5000", want: "10.1.2.3"},
		{peer: "[::1]:5000", realIP: "2001:db8:aa:bb:1:2:3:4", want: "2001:db8:aa:bb::"},
		{peer: "[::ffff:192.0.2.7]:80", realIP: "203.0.113.1", want: "203.0.113.1"}, // mapped IPv4
		{peer: "[2001:db8::1]:80", want: "2001:db8::"},
		{peer: "@", want: "invalid IP"},
		{peer: "", want: "invalid IP"},
	} {
		src := source{headers: map[string]string{}, peer: tc.peer}
		if tc.realIP != "" {
			src.headers["X-Real-Ip"] = tc.realIP
		}
		if tc.xff != "" {
			src.headers["X-Forwarded-For"] = tc.xff
		}
		if got := clientAddr(src, trusted).String(); got != tc.want {
			t.Errorf("peer %q, X-Real-IP %q, X-Forwarded-For %q: %s, want %s", tc.peer, tc.realIP, tc.xff, got, tc.want)
		}
	}
	for _, bad := range []string{"10.0.0.0/33", "nope", "1.2.3.4/x"} {
		if _, err := ParsePrefixes(bad); err == nil {
			t.Errorf("ParsePrefixes(%q) accepted", bad)
		}
	}
}

// Admission applies the limits last, only to the kinds they are for:
// posts spend tokens (a refused post spends none), streams and polls take
// places that Release gives back; the publish API is exempt.
func TestAdmitLimits(t *testing.T) {
	tok := EncodeXSRF([]byte("0123456789abcdef"))
	a := New(Config{PublishToken: "pub", Limits: Limits{PostRate: 0.001, PostBurst: 2, MaxConns: 1}})
	post := source{method: "POST", args: map[string]string{"_xsrf": tok}, cookies: map[string]string{"_xsrf": tok},
		headers: map[string]string{}, peer: "192.0.2.1:1"}
	bad := post
	bad.args = map[string]string{"_xsrf": "wrong"}
	if _, err := a.Admit(bad, Post); err == nil || err.Status != 403 {
		t.Fatalf("bad XSRF: %v", err)
	}
	for i := range 2 {
		if _, err := a.Admit(post, Post); err != nil {
			t.Fatalf("post %d: %v", i, err)
		}
	}
	_, err := a.Admit(post, Post)
	if err == nil || err.Status != http.StatusTooManyRequests || err.Message != MsgRateLimited || err.RetryAfter < 1 {
		t.Fatalf("third post: %+v", err)
	}
	pub := source{method: "POST", headers: map[string]string{"Authorization": "Bearer pub"}, peer: "192.0.2.1:1"}
	for range 3 {
		if _, err := a.Admit(pub, Publish); err != nil {
			t.Fatalf("publish API limited: %v", err)
		}
	}
	poll := source{method: "GET", headers: map[string]string{}, peer: "192.0.2.1:2"}
	tk, err := a.Admit(poll, Poll)
	if err != nil || !tk.Hold.Held() {
		t.Fatalf("first poll: %v %+v", err, tk)
	}
	if _, err := a.Admit(poll, Socket); err == nil || err.Message != MsgTooManyConns || err.RetryAfter != 5 {
		t.Fatalf("second connection: %+v", err)
	}
	page := source{method: "GET", headers: map[string]string{}, peer: "192.0.2.1:3"}
	if _, err := a.Admit(page, Page); err != nil {
		t.Fatalf("a page is no connection: %v", err)
	}
	tk.Hold.Release()
	tk.Hold.Release() // twice is once
	tk2, err := a.Admit(poll, Stream)
	if err != nil {
		t.Fatalf("a connection once the first was released: %v", err)
	}
	if _, err := a.Admit(poll, Stream); err == nil {
		t.Fatal("a second release freed a second place")
	}
	tk2.Hold.Release()
}

// The clients table stays bounded: idle entries (nothing held, bucket
// full) are swept; when it is full of recent posters, those that hold
// nothing are dropped; an entry that holds a connection never is.
func TestClientsBounded(t *testing.T) {
	cs := newClients(Limits{PostRate: 1e-9, PostBurst: 5, MaxConns: 10})
	held := netip.MustParseAddr("192.0.2.1")
	h, err := cs.hold(held)
	if err != nil {
		t.Fatal(err)
	}
	base := netip.MustParseAddr("10.0.0.0").As4()
	for i := range maxClients + 100 {
		b := base
		b[1], b[2], b[3] = byte(i>>16), byte(i>>8), byte(i)
		if err := cs.post(netip.AddrFrom4(b)); err != nil {
			t.Fatal(err)
		}
	}
	cs.mu.Lock()
	n, c := len(cs.m), cs.m[held]
	cs.mu.Unlock()
	if n > maxClients || c == nil || c.conns != 1 {
		t.Fatalf("%d entries (bound %d); the held entry %+v", n, maxClients, c)
	}
	h.Release()
	// Idle entries are dropped by the periodic sweep.
	idle := newClients(Limits{PostRate: 1e6, PostBurst: 1})
	for i := range 1000 {
		b := base
		b[2], b[3] = byte(i>>8), byte(i)
		idle.post(netip.AddrFrom4(b))
	}
	time.Sleep(time.Millisecond) // the buckets refill
	idle.mu.Lock()
	idle.sweep(time.Now())
	left := len(idle.m)
	idle.mu.Unlock()
	if left != 0 {
		t.Fatalf("%d idle entries left after a sweep", left)
	}
}

// The Authorization scheme is case-insensitive (RFC 7235), for the
// publish token and for a client's token alike.
func TestBearerScheme(t *testing.T) {
	for _, h := range []string{"Bearer pub", "bearer pub", "BEARER  pub"} {
		if tok, ok := bearerToken(h); !ok || tok != "pub" {
			t.Errorf("%q: %q %v", h, tok, ok)
		}
	}
	for _, h := range []string{"Basic pub", "Bearer", "Bearer ", "Bearerpub", ""} {
		if tok, ok := bearerToken(h); ok {
			t.Errorf("%q taken for a token: %q", h, tok)
		}
	}
	a := New(Config{PublishToken: "pub"})
	for _, h := range []string{"bearer pub", "BEARER pub"} {
		if _, err := a.Admit(source{method: "POST", headers: map[string]string{"Authorization": h}}, Publish); err != nil {
			t.Errorf("publish with %q: %v", h, err)
		}
	}
}
