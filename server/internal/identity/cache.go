package identity

import (
	"strings"
	"sync"
	"time"
)

// verifiedMax bounds the tokens the cache holds. Only tokens that verified
// get in, so only holders of the secret's tokens can fill it; a full cache
// drops an entry it happens to find first.
const verifiedMax = 8192

// verifiedCache remembers tokens that verified, so that a client that
// presents the same token again (a long-poll re-poll every few seconds to
// 45 s, a reconnecting socket) costs a map lookup instead of an HMAC and two
// JSON decodings. A hit is checked against the clock again (exp, nbf,
// iat): the token's signature and claims cannot have changed, its validity
// in time can.
type verifiedCache struct {
	leeway time.Duration // the Checker's; zero: the default Leeway
	mu     sync.Mutex
	m      map[string]verified
}

// verified is a token that verified: its holder and when it is valid.
type verified struct {
	id        Identity
	notBefore time.Time // the later of nbf and iat; zero if neither
	notAfter  time.Time // exp; zero if none
}

// get returns the cached verdict on token: its identity, or the error
// its time claims now give. ok is false on a miss.
func (c *verifiedCache) get(token string, now time.Time) (id Identity, err error, ok bool) {
	leeway := c.leeway
	if leeway <= 0 {
		leeway = Leeway
	}
	c.mu.Lock()
	v, ok := c.m[token]
	c.mu.Unlock()
	switch {
	case !ok:
		return Identity{}, nil, false
	case !v.notAfter.IsZero() && now.Add(-leeway).After(v.notAfter):
		c.mu.Lock()
		delete(c.m, token)
		c.mu.Unlock()
		return Identity{}, ErrExpired, true
	case !v.notBefore.IsZero() && now.Add(leeway).Before(v.notBefore):
		return Identity{}, ErrNotYetValid, true
	}
	return v.id, nil, true
}

// put remembers a token that verified. token may view a buffer its caller
// reuses: the key is a copy.
func (c *verifiedCache) put(token string, v verified) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = make(map[string]verified)
	}
	if len(c.m) >= verifiedMax {
		for k := range c.m {
			delete(c.m, k)
			break
		}
	}
	c.m[strings.Clone(token)] = v
}
