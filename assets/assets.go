// Package assets embeds the browser files served under /static: the client
// library (wall-client.js; its modules wall-order.js, wall-publish.js and
// wall-transports.js; its types, wall-client.d.ts),
// the wall page's script (wall.js, wall-view.js) and its style (wall.css).
// The page links them with a content-hash cache-buster.
package assets

import "embed"

// FS holds the static files served under /static.
//
//go:embed *.js *.css *.d.ts
var FS embed.FS
