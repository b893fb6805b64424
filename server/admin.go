package server

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"wall/wall"
	"wall/wall/presence"
)

// The admin page: GET /admin, behind HTTP Basic authentication whose
// password is Config.AdminToken (any user name; a browser asks for it),
// or the same token as a Bearer header for scripts. It shows the
// instances alive (from the presence reports), their connections per
// transport, post rates and caches, and the walls that have clients,
// private walls only as counts under their prefix (wall.LogName). It is
// server-rendered (views/admin.html) with no script, and refreshes itself
// with a meta refresh.

// adminWallRows bounds the walls listed, busiest first.
const adminWallRows = 500

// adminData is what views/admin.html is executed with.
type adminData struct {
	Now       string
	Partial   bool // the other instances could not be read
	Instances []adminInstance
	Total     presence.Counts
	PostRate  string
	Walls     []adminWall
	More      int // walls with clients not listed
	Static    func(name string) string
}

type adminInstance struct {
	presence.Instance
	Self     bool
	Uptime   string
	Age      string // since its report
	PostRate string
	Cache    string
}

type adminWall struct {
	Name      string // a private wall's prefix only, e.g. "user:…"
	Private   bool   // a row of private walls: Walls counts them; no seq, no instances
	Walls     int
	Last      uint64 // the highest last seq reported
	Clients   presence.Counts
	Instances int // instances that reported clients of it
}

// handleAdmin serves GET /admin.
func (s *Server) handleAdmin(c echo.Context) error {
	if s.cfg.AdminToken == "" {
		return echo.NewHTTPError(http.StatusNotFound, "admin page disabled: no admin token configured")
	}
	h := c.Response().Header()
	h.Set("Cache-Control", "no-store")
	if !adminAuthorized(c.Request().Header.Get("Authorization"), s.cfg.AdminToken) {
		h.Set("WWW-Authenticate", `Basic realm="wall admin", charset="UTF-8"`)
		return c.Blob(http.StatusUnauthorized, jsonType, appendErrorBody(nil, "the admin token is required"))
	}
	now := time.Now()
	reports := []presence.Report{s.report(now)}
	partial := false
	if p := s.cfg.Presence; p != nil {
		snap, err := p.Snapshot(c.Request().Context())
		if err != nil {
			s.log.Warn("admin page: presence snapshot", "err", err)
			partial = true
		} else {
			for _, r := range snap.Reports {
				if r.ID != p.ID() {
					reports = append(reports, r)
				}
			}
		}
	}
	d := s.adminView(reports, now)
	d.Partial = partial
	var b bytes.Buffer
	if err := s.pages.tmpl.ExecuteTemplate(&b, "admin.html", d); err != nil {
		return err
	}
	return c.HTMLBlob(http.StatusOK, b.Bytes())
}

// adminView builds the page from the reports, this instance's first.
func (s *Server) adminView(reports []presence.Report, now time.Time) adminData {
	d := adminData{Now: now.UTC().Format(time.RFC3339), Static: s.pages.static}
	var rate float64
	walls := map[string]*adminWall{}
	for i, r := range reports {
		d.Instances = append(d.Instances, adminInstance{Instance: r.Instance, Self: i == 0,
			Uptime: roundDuration(now.Sub(r.Started)), Age: roundDuration(now.Sub(r.Reported)),
			PostRate: fmt.Sprintf("%.2f", r.PostRate), Cache: cacheText(r.CacheBytes, r.Budget)})
		d.Total.Add(r.Conns)
		rate += r.PostRate
		for name, w := range r.ByWall {
			key, private := name, s.admit.Private(name)
			if private {
				key = privateLabel(name)
			}
			row := walls[key]
			if row == nil {
				row = &adminWall{Name: key}
				walls[key] = row
			}
			row.Clients.Add(w.Counts)
			if private {
				row.Private = true
			} else {
				row.Walls, row.Last = 1, max(row.Last, w.Last)
				row.Instances++
			}
		}
	}
	d.PostRate = fmt.Sprintf("%.2f", rate)
	for label, row := range walls {
		if row.Private {
			row.Walls = privateWalls(reports, label, s.admit.Private)
		}
		d.Walls = append(d.Walls, *row)
	}
	slices.SortFunc(d.Walls, func(a, b adminWall) int {
		return cmp.Or(cmp.Compare(b.Clients.Total(), a.Clients.Total()), strings.Compare(a.Name, b.Name))
	})
	if len(d.Walls) > adminWallRows {
		d.More = len(d.Walls) - adminWallRows
		d.Walls = d.Walls[:adminWallRows]
	}
	return d
}

// privateLabel is what the admin page shows of a private wall's name:
// its prefix with the owner cut (wall.LogName), or only that it is
// private for a listed name without a prefix.
func privateLabel(name string) string {
	if strings.IndexByte(name, ':') >= 0 {
		return wall.LogName(name)
	}
	return "(private)"
}

// privateWalls counts the distinct private walls shown as label.
func privateWalls(reports []presence.Report, label string, private func(string) bool) int {
	seen := map[string]struct{}{}
	for _, r := range reports {
		for name := range r.ByWall {
			if private(name) && privateLabel(name) == label {
				seen[name] = struct{}{}
			}
		}
	}
	return len(seen)
}

// adminAuthorized reports whether an Authorization header carries token:
// as the password of Basic credentials, or as a Bearer token. Schemes
// match case-insensitively (RFC 7235); the token is compared in constant
// time.
func adminAuthorized(header, token string) bool {
	scheme, cred, _ := strings.Cut(strings.TrimSpace(header), " ")
	cred = strings.TrimSpace(cred)
	switch {
	case strings.EqualFold(scheme, "Basic"):
		raw, err := base64.StdEncoding.DecodeString(cred)
		if err != nil {
			return false
		}
		_, pass, ok := strings.Cut(string(raw), ":")
		return ok && sameSecret(pass, token)
	case strings.EqualFold(scheme, "Bearer"):
		return sameSecret(cred, token)
	}
	return false
}

// sameSecret compares two secrets in time independent of their contents
// and lengths.
func sameSecret(a, b string) bool {
	x, y := sha256.Sum256([]byte(a)), sha256.Sum256([]byte(b))
	return subtle.ConstantTimeCompare(x[:], y[:]) == 1
}

// roundDuration formats d to the second (or the tenth, under ten).
func roundDuration(d time.Duration) string {
	if d < 10*time.Second {
		return d.Round(100 * time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}

// cacheText is a cache's bytes and budget for people.
func cacheText(n, budget int64) string {
	if budget <= 0 {
		return mib(n) + " (no budget)"
	}
	return fmt.Sprintf("%s of %s (%.0f%%)", mib(n), mib(budget), 100*float64(n)/float64(budget))
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
