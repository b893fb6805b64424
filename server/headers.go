package server

import "github.com/labstack/echo/v4"

// Response headers a deployer's scanner asks for. The page loads its script
// and style sheet from /static only, with no inline script, style or event
// handler (views/index.html, assets/), so the policy allows nothing
// else: an injected <script> or on*= attribute does not run. The
// WebSocket and event-stream connections are same-origin ('self' covers
// ws: and wss: of the page's host in CSP Level 3 browsers); the page
// posts its form to itself; no site may frame it (clickjacking).
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// securityHeaders sets the security headers on every answer that goes
// through the router (the page, assets, JSON answers, errors). Answers the
// long-poll engine writes itself are JSON to scripts, not pages.
func securityHeaders(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		h := c.Response().Header()
		h.Set("Content-Security-Policy", contentSecurityPolicy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY") // frame-ancestors for browsers before CSP 2
		h.Set("Referrer-Policy", "same-origin")
		return next(c)
	}
}
