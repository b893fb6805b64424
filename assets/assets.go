// Package assets embeds the browser client (wall.js) and its style
// (wall.css), served under /static with a content-hash cache-buster.
package assets

import "embed"

// FS holds the static files served under /static.
//
//go:embed *.js *.css
var FS embed.FS
