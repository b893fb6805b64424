// Package identity is who a client is: HS256 JSON Web Tokens (RFC 7519)
// verified with the deployment's secret, minted for deployers without a
// JWT library, and the policy of private walls. Admission
// (server/internal/admit) is its one user on the request path: it finds
// the token, calls Checker.Verify and asks Checker.Allows of the wall.
package identity

import (
	"errors"
	"fmt"
	"time"
)

// MinSecret is the shortest token secret accepted: 32 bytes, the output
// size of SHA-256, as RFC 7518 section 3.2 asks of an HS256 key.
const MinSecret = 32

// Identity is a verified token's holder. The zero Identity is an
// anonymous client. Its strings are its own (decoded from the token), so
// it may be kept past the request it came with.
type Identity struct {
	Sub     string    // the user id; "" only for an anonymous client
	Groups  []string  // the groups the user belongs to
	Sid     string    // the session id, if the token has one
	Walls   []string  // private walls granted: names and "prefix*" patterns
	Expires time.Time // zero if the token never expires
}

// Anonymous reports whether i is an anonymous client (no token).
func (i Identity) Anonymous() bool { return i.Sub == "" }

// Mode is what anonymous clients may do on public walls.
type Mode uint8

// The modes; the zero Mode is the default, AnonymousPost.
const (
	AnonymousPost Mode = iota // read and post, as before tokens existed
	AnonymousRead             // read only: posts need a token
	AnonymousNone             // nothing but the page: everything else needs a token
)

var modeNames = [...]string{"post", "read", "none"}

func (m Mode) String() string {
	if int(m) < len(modeNames) {
		return modeNames[m]
	}
	return fmt.Sprintf("Mode(%d)", m)
}

// ParseMode parses "post", "read" or "none".
func ParseMode(s string) (Mode, error) {
	for i, n := range modeNames {
		if s == n {
			return Mode(i), nil
		}
	}
	return 0, fmt.Errorf("anonymous mode %q: want post, read or none", s)
}

// Config is a deployment's identity settings. The zero Config is the
// deployment without tokens: every client anonymous and allowed to post,
// tokens ignored, and the user:, group: and session: walls out of every
// client's reach (no token can own them).
type Config struct {
	// Secret is the HS256 key tokens are signed with, at least MinSecret
	// bytes; empty turns tokens off.
	Secret []byte
	// Anonymous is what clients without a token may do on public walls.
	Anonymous Mode
	// PrivateWalls are more private walls, names or "prefix*" patterns,
	// reached only through a token's walls claim.
	PrivateWalls []string
	// Leeway is the clock skew allowed when checking exp, nbf and iat;
	// zero or less is the default, Leeway (tests shorten it).
	Leeway time.Duration
}

// ClockLeeway is the leeway c's Checker applies.
func (c Config) ClockLeeway() time.Duration {
	if c.Leeway <= 0 {
		return Leeway
	}
	return c.Leeway
}

// RefusedFrom is the instant from which a Checker for c refuses the token
// id came from, expired: its exp plus the leeway. It is zero for a token
// without exp. A connection admitted with that token ends then.
func (c Config) RefusedFrom(id Identity) time.Time {
	if id.Expires.IsZero() {
		return time.Time{}
	}
	return id.Expires.Add(c.ClockLeeway())
}

// Validate reports what is wrong with c, in words for the deployer.
func (c Config) Validate() error {
	_, err := newPolicy(c.PrivateWalls)
	switch {
	case err != nil:
		return err
	case len(c.Secret) > 0 && len(c.Secret) < MinSecret:
		return fmt.Errorf("token secret is %d bytes: it must be at least %d (e.g. openssl rand -hex 32)", len(c.Secret), MinSecret)
	case c.Anonymous > AnonymousNone:
		return fmt.Errorf("anonymous mode %d: want post, read or none", c.Anonymous)
	case len(c.Secret) == 0 && c.Anonymous == AnonymousNone:
		return errors.New("anonymous mode none needs a token secret: without tokens no client could read or post")
	case len(c.Secret) == 0 && len(c.PrivateWalls) > 0:
		return errors.New("private walls need a token secret: without tokens no client could reach them")
	}
	return nil
}
