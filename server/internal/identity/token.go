package identity

import (
	"encoding/json"
	"errors"
	"math"
	"strconv"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Leeway is the default clock skew allowed when checking exp, nbf and
// iat (Config.Leeway): the backend that mints a token and the instances
// that check it need not agree to the second (a token minted "now" on a
// host whose clock runs a second ahead must not be refused as issued in
// the future).
const Leeway = 5 * time.Second

// The reasons a token is refused; their texts are what clients are told.
var (
	ErrMalformed   = errors.New("malformed token")
	ErrClaims      = errors.New("malformed token claims: sub and sid must be strings, groups and walls arrays of strings, dates numbers")
	ErrAlgorithm   = errors.New("token must be signed with HS256")
	ErrSignature   = errors.New("bad token signature")
	ErrExpired     = errors.New("token expired")
	ErrNotYetValid = errors.New("token not yet valid")
	ErrNoSubject   = errors.New("token has no sub")
)

// Checker verifies tokens and applies the private-wall policy. It is safe
// for concurrent use and never blocks: the long-poll engine calls it on
// its reactor goroutine for every re-poll.
type Checker struct {
	cfg     Config
	private policy
	parser  *jwt.Parser
	key     any // cfg.Secret, boxed once: keyFunc returns it without allocating
	cache   verifiedCache
}

// New returns a Checker for cfg, or what is wrong with cfg.
func New(cfg Config) (*Checker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	p, _ := newPolicy(cfg.PrivateWalls) // valid: checked above
	leeway := cfg.ClockLeeway()
	return &Checker{
		cfg:     cfg,
		private: p,
		key:     cfg.Secret,
		cache:   verifiedCache{leeway: leeway},
		// One parser for every request: the algorithm pinned, exp and nbf
		// always checked when present, iat too (not in the future).
		parser: jwt.NewParser(
			jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
			jwt.WithIssuedAt(),
			jwt.WithLeeway(leeway),
			jwt.WithStrictDecoding(),
		),
	}, nil
}

// Enabled reports whether tokens are in use (a secret is configured).
// Without a secret, tokens are not looked at: every client is anonymous.
func (c *Checker) Enabled() bool { return len(c.cfg.Secret) > 0 }

// Anonymous is what clients without a token may do on public walls.
func (c *Checker) Anonymous() Mode { return c.cfg.Anonymous }

// Verify checks a token and returns its holder, or one of the Err values
// saying what is wrong with it. The first time it sees a token it costs
// one HMAC-SHA256 and the decoding of the token's two JSON objects; a
// token that verified before costs a lookup and a look at the clock. The
// returned Identity's slices are shared: read them, do not change them.
func (c *Checker) Verify(token string) (Identity, error) {
	if !c.Enabled() {
		return Identity{}, ErrSignature // no secret: nothing verifies
	}
	if id, err, ok := c.cache.get(token, time.Now()); ok {
		return id, err
	}
	var cl claims
	tok, err := c.parser.ParseWithClaims(token, &cl, c.keyFunc)
	if err != nil {
		return Identity{}, refusal(tok, err)
	}
	if cl.Sub == "" {
		return Identity{}, ErrNoSubject
	}
	id := Identity{Sub: cl.Sub, Groups: cl.Groups, Sid: cl.Sid, Walls: cl.Walls}
	v := verified{id: id}
	if cl.Exp.set {
		id.Expires = cl.Exp.Time
		v.id.Expires, v.notAfter = cl.Exp.Time, cl.Exp.Time
	}
	for _, d := range []numericDate{cl.Nbf, cl.Iat} {
		if d.set && d.Time.After(v.notBefore) {
			v.notBefore = d.Time
		}
	}
	c.cache.put(token, v)
	return id, nil
}

func (c *Checker) keyFunc(*jwt.Token) (any, error) { return c.key, nil }

// refusal maps the JWT library's error to ours.
func refusal(tok *jwt.Token, err error) error {
	switch {
	case errors.Is(err, jwt.ErrTokenExpired):
		return ErrExpired
	case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return ErrNotYetValid
	case tok != nil && tok.Header != nil && tok.Header["alg"] != jwt.SigningMethodHS256.Alg():
		// "none", another algorithm, an unknown one or none at all.
		return ErrAlgorithm
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return ErrSignature
	case errors.As(err, new(*json.UnmarshalTypeError)), errors.Is(err, errDateType):
		// JSON, but a claim of the wrong type.
		return ErrClaims
	}
	return ErrMalformed
}

// claims are the claims a token may carry, decoded straight into a typed
// struct: a claim of another JSON type refuses the token; claims not
// listed are ignored.
type claims struct {
	Sub    string      `json:"sub"`
	Groups []string    `json:"groups"`
	Sid    string      `json:"sid"`
	Walls  []string    `json:"walls"`
	Exp    numericDate `json:"exp"`
	Nbf    numericDate `json:"nbf"`
	Iat    numericDate `json:"iat"`
}

// numericDate is a JSON number of seconds since the epoch (RFC 7519),
// decoded in place: the library's NumericDate allocates three times per
// date, and also takes a number written as a string, which RFC 7519 does
// not allow.
type numericDate struct {
	jwt.NumericDate
	set bool // false for a claim absent or null
}

var errDateType = errors.New("a date claim must be a JSON number")

func (d *numericDate) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil
	}
	// encoding/json has checked b is one JSON value: a number, unless it
	// starts with something else.
	if len(b) == 0 || (b[0] != '-' && (b[0] < '0' || b[0] > '9')) {
		return errDateType
	}
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil || math.Abs(f) > 1<<62 { // beyond int64 seconds
		return errDateType
	}
	sec, frac := math.Modf(f)
	d.Time = time.Unix(int64(sec), int64(frac*1e9)).Truncate(jwt.TimePrecision)
	d.set = true
	return nil
}

func (d *numericDate) get() (*jwt.NumericDate, error) {
	if !d.set {
		return nil, nil
	}
	return &d.NumericDate, nil
}

// The jwt.Claims methods, which the library's validator reads.
func (c *claims) GetExpirationTime() (*jwt.NumericDate, error) { return c.Exp.get() }
func (c *claims) GetNotBefore() (*jwt.NumericDate, error)      { return c.Nbf.get() }
func (c *claims) GetIssuedAt() (*jwt.NumericDate, error)       { return c.Iat.get() }
func (c *claims) GetIssuer() (string, error)                   { return "", nil }
func (c *claims) GetSubject() (string, error)                  { return c.Sub, nil }
func (c *claims) GetAudience() (jwt.ClaimStrings, error)       { return nil, nil }

// Claims are what Mint puts in a token.
type Claims struct {
	Sub    string        // required
	Groups []string      // optional
	Sid    string        // optional
	Walls  []string      // optional: private walls granted, names or "prefix*" patterns
	TTL    time.Duration // lifetime from now; 0 mints a token that never expires
}

// mintClaims is the JSON of a minted token's claims.
type mintClaims struct {
	Sub    string           `json:"sub"`
	Groups []string         `json:"groups,omitempty"`
	Sid    string           `json:"sid,omitempty"`
	Walls  []string         `json:"walls,omitempty"`
	Iat    *jwt.NumericDate `json:"iat"`
	Exp    *jwt.NumericDate `json:"exp,omitempty"`
}

func (c mintClaims) GetExpirationTime() (*jwt.NumericDate, error) { return c.Exp, nil }
func (c mintClaims) GetNotBefore() (*jwt.NumericDate, error)      { return nil, nil }
func (c mintClaims) GetIssuedAt() (*jwt.NumericDate, error)       { return c.Iat, nil }
func (c mintClaims) GetIssuer() (string, error)                   { return "", nil }
func (c mintClaims) GetSubject() (string, error)                  { return c.Sub, nil }
func (c mintClaims) GetAudience() (jwt.ClaimStrings, error)       { return nil, nil }

// Mint signs a token for c with secret (HS256), issued now, as any JWT
// library would: for deployers without one (the binary's token command).
func Mint(secret []byte, c Claims) (string, error) {
	switch {
	case len(secret) < MinSecret:
		return "", errors.New("token secret must be at least 32 bytes")
	case c.Sub == "":
		return "", errors.New("a token needs a sub (user id)")
	case c.TTL < 0:
		return "", errors.New("a token's lifetime cannot be negative")
	}
	now := time.Now()
	mc := mintClaims{Sub: c.Sub, Groups: c.Groups, Sid: c.Sid, Walls: c.Walls, Iat: jwt.NewNumericDate(now)}
	if c.TTL > 0 {
		mc.Exp = jwt.NewNumericDate(now.Add(c.TTL))
	}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, mc).SignedString(secret)
}
