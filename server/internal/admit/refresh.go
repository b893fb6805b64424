package admit

import (
	"net/http"

	"wall/server/internal/identity"
)

// errOtherSubject refuses a fresh token whose holder is not the
// connection's: identity never changes on an open connection.
var errOtherSubject = &Error{Status: http.StatusForbidden, Message: "this token is for another user than the connection's"}

// errNoTokens answers a token frame on a server without a token secret,
// where every client is anonymous and no token is looked at.
var errNoTokens = &Error{Status: http.StatusBadRequest, Message: "this server takes no tokens"}

// Refresh checks a fresh token presented over an open connection that
// admission granted t (a WebSocket's {"token": ...} frame), and returns
// its holder; without a token secret it is a 400. The token is verified as at admission (the same Checker and
// its cache): a malformed, badly signed, expired or not yet valid token
// gets 401. Its sub must be t.Who's (403 otherwise, an anonymous
// connection included), and it must still allow t.Wall (403: a private
// wall its walls claim no longer grants). The caller moves the
// connection's expiry to the one of the holder returned.
func (a *Admitter) Refresh(t Ticket, token string) (identity.Identity, *Error) {
	if !a.id.Enabled() {
		return identity.Identity{}, errNoTokens
	}
	who, err := a.id.Verify(token)
	if err != nil {
		return identity.Identity{}, refuse(http.StatusUnauthorized, err.Error())
	}
	if who.Sub != t.Who.Sub {
		return identity.Identity{}, errOtherSubject
	}
	if !a.id.Allows(who, t.Wall) {
		return identity.Identity{}, errPrivateOther
	}
	return who, nil
}
