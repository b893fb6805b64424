// Package admit is the one admission function of every entry path: the
// page, the form post, a poll read by net/http or by the long-poll engine,
// the WebSocket handshake, the publish API and event streams all call
// Admitter.Admit, which runs the same steps in the same order:
//
//	arguments (merged the Tornado way by the Source) → XSRF (form POSTs
//	but those whose token is a Bearer header) → identity (the client's
//	token and the anonymous mode, or the publish API's bearer token)
//	→ wall → private wall → cursor → per-client limits (a post's rate,
//	the connections a client holds: limits.go)
//
// and returns one error type, Error, which each path writes its own way
// (a JSON error body, a refused handshake, the engine's raw answer). A
// check added here holds on every path, keep-alive re-polls included.
package admit

import (
	"net/http"
	"net/netip"
	"strings"

	"wall/server/internal/identity"
	"wall/wall"
)

// Error is a refused request: an HTTP status and a short message for the
// client.
type Error struct {
	Status  int
	Message string
	// RetryAfter, if not 0, is the Retry-After of the answer, in seconds
	// (a 429).
	RetryAfter int
}

func (e *Error) Error() string { return e.Message }

// refuse returns the Error for status and msg.
func refuse(status int, msg string) *Error { return &Error{Status: status, Message: msg} }

// Source is one request as admission reads it, whichever path read it.
// Its strings may view a buffer that the caller reuses once Admit returns.
type Source interface {
	// Method is the request's method ("GET", "POST", ...).
	Method() string
	// Arg returns an argument merged the Tornado way (query, then form
	// body; for a repeated name the last value wins), raw bytes decoded.
	Arg(name string) (string, bool)
	// Header returns the first value of a header, like http.Header.Get.
	Header(name string) string
	// Cookie returns the value of the first valid cookie called name,
	// like http.Request.Cookie.
	Cookie(name string) (string, bool)
	// Peer is the address of the connection the request came on,
	// "host:port" (http.Request.RemoteAddr): the client, or a proxy.
	Peer() string
}

// Kind is the entry path a request came by: it decides which steps apply.
type Kind int

// The entry paths.
const (
	Page    Kind = iota // GET / and /w/<wall>: the wall comes from the path (Arg "wall")
	Post                // POST /a/message/new
	Poll                // GET or POST /a/message/updates, through net/http or the engine
	Socket              // the WebSocket handshake
	Publish             // POST /api/publish (bearer token; wall from its JSON body)
	Stream              // an event stream's handshake
	Stats               // GET /api/walls/<wall>: a read of the wall's numbers (wall from Arg "wall")
)

var kindNames = [...]string{"page", "post", "poll", "socket", "publish", "stream", "stats"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "kind?"
}

// cursored reports whether requests of kind k carry a cursor.
func (k Kind) cursored() bool { return k == Poll || k == Socket || k == Stream }

// Ticket is what admission grants: the wall and, for the kinds that take
// one, the cursor, and who is asking.
type Ticket struct {
	// Wall is a valid wall name. It may view the Source's buffer: clone
	// it to keep it past the caller's use of that buffer.
	Wall string
	// Cursor is the request's cursor; its strings are the Ticket's own.
	Cursor wall.Cursor
	// Who is the verified token's holder, zero for an anonymous client
	// (and for the publish API, which is the backend). Its strings are
	// its own.
	Who identity.Identity
	// MayPost says whether this client may post to Wall (the WebSocket
	// frame posts check it; a Post request that may not is refused).
	MayPost bool
	// Client is the address the client's limits are counted under
	// (Admitter.Post takes it for WebSocket frame posts); zero when no
	// limit is on.
	Client netip.Addr
	// Hold, for a WebSocket, an event stream or a poll, is the
	// connection counted against the client's MaxConns: the caller
	// releases it when the connection ends or the poll is answered.
	Hold Hold
}

// Config holds what admission checks against.
type Config struct {
	// PublishToken is the bearer token of the publish API; empty disables
	// the API (404).
	PublishToken string
	// Identity is the deployment's tokens, anonymous mode and private
	// walls; the zero value has no tokens and lets everyone post.
	Identity identity.Config
	// Limits are the per-client limits; the zero value has none.
	Limits Limits
}

// Admitter runs the admission steps. It is safe for concurrent use and
// never blocks: the long-poll engine calls it on its reactor goroutine.
type Admitter struct {
	cfg     Config
	id      *identity.Checker
	clients *clients
}

// New returns an Admitter over cfg. cfg.Identity must be valid
// (identity.Config.Validate, which server.New checks first, returning the
// error): New panics otherwise, as a programming error.
func New(cfg Config) *Admitter {
	id, err := identity.New(cfg.Identity)
	if err != nil {
		panic("admit.New: " + err.Error())
	}
	return &Admitter{cfg: cfg, id: id, clients: newClients(cfg.Limits)}
}

// Admit runs the steps for a request of kind k and returns its Ticket, or
// the Error to answer with. Nothing else on any path checks these again.
func (a *Admitter) Admit(src Source, k Kind) (Ticket, *Error) {
	var t Ticket
	// The token is found first (not verified yet): one sent in the
	// Authorization header exempts a POST from the XSRF check, since a
	// cross-site form cannot send that header.
	var token string
	var bearer bool
	if k != Publish && a.id.Enabled() {
		token, bearer = findToken(src)
	}
	// XSRF: every form POST (Tornado checks all POSTs; the publish API is
	// authenticated by its token instead and has no cookie to match).
	if k != Publish && !bearer && src.Method() == http.MethodPost {
		arg, _ := src.Arg(XSRFCookie)
		cookie, ok := src.Cookie(XSRFCookie)
		if msg := matchXSRF(arg, src.Header("X-Xsrftoken"), src.Header("X-Csrftoken"), cookie, ok); msg != "" {
			return t, refuse(http.StatusForbidden, msg)
		}
	}
	if err := a.identify(src, k, token, &t); err != nil {
		return t, err
	}
	name, ok := src.Arg("wall")
	switch {
	case !ok || name == "":
		name = wall.DefaultWall
	case !wall.ValidName(name):
		return t, refuse(http.StatusBadRequest, wall.ErrBadName.Error())
	}
	t.Wall = name
	if err := a.reach(k, &t); err != nil {
		return t, err
	}
	if k.cursored() {
		raw, _ := src.Arg("cursor")
		c, _ := wall.ParseCursor(raw) // never fails: every string is a cursor
		c.ID = strings.Clone(c.ID)    // kept while the poll waits
		t.Cursor = c
	}
	if err := a.limit(src, k, &t); err != nil {
		return t, err
	}
	return t, nil
}

// limit applies the client's limits, last, so that only requests that
// pass every other step count: a post takes a token from its bucket, a
// connection (or a poll) a place among its held ones. The publish API is
// the backend, and is not limited.
func (a *Admitter) limit(src Source, k Kind, t *Ticket) *Error {
	if !a.clients.enabled() || k == Publish {
		return nil
	}
	t.Client = clientAddr(src, a.cfg.Limits.TrustedProxies)
	switch {
	case k == Post:
		return a.clients.post(t.Client)
	case k.cursored():
		h, err := a.clients.hold(t.Client)
		t.Hold = h
		return err
	}
	return nil
}

// Post takes a post from the bucket of client (Ticket.Client), for the
// posts that come without a request of their own: WebSocket frames. Its
// error is a 429 with the wait.
func (a *Admitter) Post(client netip.Addr) *Error { return a.clients.post(client) }

// Private reports whether the wall name is private (an audience prefix,
// or listed by the deployment): what an overview of every wall (the admin
// page) may not show by name.
func (a *Admitter) Private(name string) bool { return a.id.Private(name) }
