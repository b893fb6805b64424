package admit

import (
	"net/http"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"wall/server/internal/identity"
)

// Refresh accepts a fresh token of the connection's holder that still
// reaches its wall, and refuses every other: a bad token 401 with what is
// wrong, another user (or an anonymous connection) and a wall no longer
// granted 403.
func TestRefresh(t *testing.T) {
	a := New(Config{Identity: identity.Config{Secret: testSecret, PrivateWalls: []string{"staff"}}})
	exp := time.Now().Add(time.Minute).Unix()
	mary := Ticket{Wall: "user:mary", Who: identity.Identity{Sub: "mary"}}
	staff := Ticket{Wall: "staff", Who: identity.Identity{Sub: "mary", Walls: []string{"staff"}}}
	fresh := token(t, jwt.SigningMethodHS256, testSecret, jwt.MapClaims{"sub": "mary", "exp": exp})
	who, err := a.Refresh(mary, fresh)
	if err != nil || who.Sub != "mary" || who.Expires.Unix() != exp {
		t.Fatalf("fresh token: %+v, %v; want mary expiring at %d", who, err, exp)
	}
	forever := token(t, jwt.SigningMethodHS256, testSecret, jwt.MapClaims{"sub": "mary", "walls": []string{"staff"}})
	if who, err := a.Refresh(staff, forever); err != nil || !who.Expires.IsZero() {
		t.Fatalf("token without exp on a granted wall: %+v, %v; want no expiry", who, err)
	}
	for _, tc := range badTokens(t) {
		if _, err := a.Refresh(mary, tc.token); err == nil || err.Status != http.StatusUnauthorized || err.Message != tc.msg {
			t.Errorf("%s: %v, want 401 %q", tc.name, err, tc.msg)
		}
	}
	cases := []struct {
		name string
		t    Ticket
		tok  string
	}{
		{"another user", mary, token(t, jwt.SigningMethodHS256, testSecret, jwt.MapClaims{"sub": "bob", "walls": []string{"user:mary"}})},
		{"anonymous connection", Ticket{Wall: "main"}, fresh},
		{"wall no longer granted", staff, fresh},
	}
	for _, tc := range cases {
		if _, err := a.Refresh(tc.t, tc.tok); err == nil || err.Status != http.StatusForbidden {
			t.Errorf("%s: %v, want 403", tc.name, err)
		}
	}
}

// TestRefreshWithoutTokens: a server without a token secret looks at no
// token, so a fresh one over an open connection is a 400 that says so,
// not a signature error.
func TestRefreshWithoutTokens(t *testing.T) {
	a := New(Config{})
	tok := token(t, jwt.SigningMethodHS256, testSecret, jwt.MapClaims{"sub": "mary"})
	if _, err := a.Refresh(Ticket{Wall: "main"}, tok); err == nil || err.Status != http.StatusBadRequest || err.Message != "this server takes no tokens" {
		t.Fatalf("token without a secret: %v, want 400 %q", err, "this server takes no tokens")
	}
}
