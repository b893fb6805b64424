// Package views embeds the HTML templates of the wall page, so the binary
// serves them without files on disk.
package views

import "embed"

// FS holds every *.html template; the server parses them with
// template.ParseFS(FS, "*.html") and executes "index.html".
//
//go:embed *.html
var FS embed.FS
