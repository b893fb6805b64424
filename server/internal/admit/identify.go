package admit

import (
	"net/http"
	"strings"

	"wall/server/internal/identity"
)

// TokenCookie is the cookie that carries a client's token (identity), so
// that a backend on the same site can sign a browser in for every
// transport, legacy clients included.
const TokenCookie = "wall_token"

// The refusals of the identity steps.
var (
	errTokenRequired = &Error{Status: http.StatusUnauthorized, Message: "a token is required"}
	errReadOnly      = &Error{Status: http.StatusUnauthorized, Message: "anonymous clients may only read: a token is required to post"}
	errPrivateAnon   = &Error{Status: http.StatusUnauthorized, Message: "this wall is private: a token is required"}
	errPrivateOther  = &Error{Status: http.StatusForbidden, Message: "this wall is private: this token may not use it"}
)

// findToken returns the token a request presents, from the first of its
// carriers that has one: the token argument, an "Authorization: Bearer"
// header, the wall_token cookie. bearer reports that it came in the
// header. An empty value counts as no token.
func findToken(src Source) (token string, bearer bool) {
	if v, ok := src.Arg("token"); ok && v != "" {
		return v, false
	}
	if cred, ok := bearerToken(src.Header("Authorization")); ok {
		return cred, true
	}
	if v, ok := src.Cookie(TokenCookie); ok && v != "" {
		return v, false
	}
	return "", false
}

// bearerToken returns the credentials of an "Authorization: Bearer <x>"
// header. The scheme is case-insensitive (RFC 7235 section 2.1) and may be
// followed by several spaces; another scheme (Basic, say, from a proxy),
// or none, is not a token.
func bearerToken(h string) (string, bool) {
	scheme, cred, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	cred = strings.TrimLeft(cred, " ")
	return cred, cred != ""
}

// identify checks who is asking. The publish API is the backend, known by
// its bearer token, and never reads a client token. A client with a token
// must present a valid one (401 otherwise, saying what is wrong with
// it); a client without one is anonymous, and the anonymous mode says
// what it may do. Without a token secret, tokens are not looked for:
// every client is anonymous, as before identity existed.
func (a *Admitter) identify(src Source, k Kind, token string, t *Ticket) *Error {
	if k == Publish {
		if a.cfg.PublishToken == "" {
			return refuse(http.StatusNotFound, "publish API disabled: no token configured")
		}
		auth, ok := bearerToken(src.Header("Authorization"))
		if !ok || !equalSecret(auth, a.cfg.PublishToken) {
			return &Error{Status: http.StatusUnauthorized, Message: "missing or wrong bearer token"}
		}
		return nil
	}
	if token != "" {
		who, err := a.id.Verify(token)
		if err != nil {
			return refuse(http.StatusUnauthorized, err.Error())
		}
		t.Who = who
		return nil
	}
	switch a.id.Anonymous() {
	case identity.AnonymousNone:
		if k != Page {
			return errTokenRequired
		}
	case identity.AnonymousRead:
		if k == Post {
			return errReadOnly
		}
	}
	return nil
}

// reach checks that the client may use the ticket's wall, once its name
// is known, and whether it may post there. A private wall is its
// audience's only: anyone else gets 403, an anonymous client 401. The
// publish API reaches every wall.
func (a *Admitter) reach(k Kind, t *Ticket) *Error {
	if k == Publish {
		t.MayPost = true
		return nil
	}
	if !a.id.Allows(t.Who, t.Wall) {
		if t.Who.Anonymous() {
			return errPrivateAnon
		}
		return errPrivateOther
	}
	t.MayPost = !t.Who.Anonymous() || a.id.Anonymous() == identity.AnonymousPost
	return nil
}
