package main

import (
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"wall/server"
)

// tokenCommand is "wall token": it mints a client token (an HS256 JWT)
// with the deployment's secret and prints it, for deployers whose backend
// has no JWT library, and for trying identity out:
//
//	WALL_TOKEN_SECRET=... wall token -sub mary -groups staff -ttl 24h
func tokenCommand(args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("wall token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: wall token -sub <user id> [-groups a,b] [-sid <session id>] [-walls 'name,prefix*'] [-ttl 1h]")
		fmt.Fprintln(stderr, "Prints a client token signed with -token-secret (WALL_TOKEN_SECRET).")
		fs.PrintDefaults()
	}
	var c server.TokenClaims
	var secret, groups, walls string
	fs.StringVar(&secret, "token-secret", getenv("WALL_TOKEN_SECRET"), "the secret the server checks tokens with, at least 32 bytes (WALL_TOKEN_SECRET)")
	fs.StringVar(&c.Sub, "sub", "", "the user id (required): the token owns the walls user:<sub> and user:<sub>:*")
	fs.StringVar(&groups, "groups", "", "comma-separated groups: the token reaches group:<name> and group:<name>:*")
	fs.StringVar(&c.Sid, "sid", "", "a session id: the token reaches session:<sid> and session:<sid>:*")
	fs.StringVar(&walls, "walls", "", "comma-separated names or prefix* patterns of the -private-walls the token reaches")
	fs.DurationVar(&c.TTL, "ttl", time.Hour, "lifetime; 0 for a token that never expires")
	if err := fs.Parse(args); err != nil {
		return err
	}
	switch {
	case fs.NArg() > 0:
		return fmt.Errorf("unexpected arguments: %v", fs.Args())
	case secret == "":
		return fmt.Errorf("no secret: set WALL_TOKEN_SECRET or -token-secret")
	case c.Sub == "":
		return fmt.Errorf("-sub is required")
	}
	c.Groups, c.Walls = splitList(groups), splitList(walls)
	tok, err := server.MintToken([]byte(secret), c)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(stdout, tok)
	return err
}

// splitList splits a comma-separated list, trimming spaces and dropping
// empty entries.
func splitList(s string) []string {
	var out []string
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}
