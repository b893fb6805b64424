package server

import "wall/server/internal/identity"

// What main needs of internal/identity, which only server/ may import:
// the anonymous mode of Config.Identity, and minting tokens (the binary's
// token command).

// AnonymousMode is what clients without a token may do on public walls
// (Config.Identity.Anonymous).
type AnonymousMode = identity.Mode

// TokenClaims are what MintToken puts in a token.
type TokenClaims = identity.Claims

// ParseAnonymous parses an anonymous mode: post, read or none.
func ParseAnonymous(s string) (AnonymousMode, error) { return identity.ParseMode(s) }

// MintToken signs a client token (an HS256 JWT, issued now) with secret.
func MintToken(secret []byte, c TokenClaims) (string, error) { return identity.Mint(secret, c) }
