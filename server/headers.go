package server

import (
	"crypto/sha256"
	"encoding/base64"

	"github.com/labstack/echo/v4"
)

// Response headers a deployer's scanner asks for. The page loads its
// scripts and style sheet from /static only, with no inline style or
// event handler (views/, assets/); its one inline script, the import map,
// is the same for the process's life, so the policy allows exactly it by
// its hash (a data block, type="application/json", is never run and needs
// nothing). An injected <script> or on*= attribute does not run. The
// WebSocket and event-stream connections are same-origin ('self' covers
// ws: and wss: of the page's host in CSP Level 3 browsers); the page posts
// its form to itself; no site may frame it (clickjacking).
const cspTail = "; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; " +
	"frame-ancestors 'none'; base-uri 'none'"

// contentSecurityPolicy is the policy for a page whose import map is
// importMap, the exact text of its script element.
func contentSecurityPolicy(importMap []byte) string {
	sum := sha256.Sum256(importMap)
	return "default-src 'none'; script-src 'self' 'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'" + cspTail
}

// securityHeaders sets the security headers on every answer that goes
// through the router (the page, assets, JSON answers, errors). Answers the
// long-poll engine writes itself are JSON to scripts, not pages.
func (s *Server) securityHeaders() echo.MiddlewareFunc {
	csp := contentSecurityPolicy([]byte(s.pages.importMap))
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			h := c.Response().Header()
			h.Set("Content-Security-Policy", csp)
			h.Set("X-Content-Type-Options", "nosniff")
			h.Set("X-Frame-Options", "DENY") // frame-ancestors for browsers before CSP 2
			h.Set("Referrer-Policy", "same-origin")
			return next(c)
		}
	}
}
