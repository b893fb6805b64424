package main

import (
	"bytes"
	"errors"
	"flag"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

const testSecret = "main-test-token-secret-0123456789abcdef"

// The identity flags read their variables, flags win, and a bad setting
// is refused at start with the flag named.
func TestIdentityFlags(t *testing.T) {
	env := map[string]string{"WALL_TOKEN_SECRET": testSecret, "WALL_ANONYMOUS": "read", "WALL_PRIVATE_WALLS": "staff, ops:* ,"}
	getenv := func(k string) string { return env[k] }
	cfg, err := parseFlags(nil, getenv, io.Discard)
	id := cfg.server.Identity
	if err != nil || string(id.Secret) != testSecret || id.Anonymous.String() != "read" ||
		len(id.PrivateWalls) != 2 || id.PrivateWalls[0] != "staff" || id.PrivateWalls[1] != "ops:*" {
		t.Fatalf("env not applied: %+v %v", id, err)
	}
	cfg, err = parseFlags([]string{"-anonymous", "none", "-private-walls", "x"}, getenv, io.Discard)
	if id := cfg.server.Identity; err != nil || id.Anonymous.String() != "none" || len(id.PrivateWalls) != 1 {
		t.Fatalf("flags must win over env: %+v %v", id, err)
	}
	cfg, err = parseFlags(nil, func(string) string { return "" }, io.Discard)
	if id := cfg.server.Identity; err != nil || len(id.Secret) != 0 || id.Anonymous.String() != "post" || id.PrivateWalls != nil {
		t.Fatalf("defaults: %+v %v", id, err)
	}
	var help bytes.Buffer
	if _, err := parseFlags([]string{"-help"}, func(string) string { return "" }, &help); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("-help: %v", err)
	}
	for _, name := range []string{"WALL_TOKEN_SECRET", "WALL_ANONYMOUS", "WALL_PRIVATE_WALLS"} {
		if !strings.Contains(help.String(), name) {
			t.Errorf("-help does not mention %s", name)
		}
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-token-secret", "short"}, "at least 32"},
		{[]string{"-anonymous", "write"}, "-anonymous: "},
		{[]string{"-anonymous", "none"}, "needs a token secret"},
		{[]string{"-private-walls", "staff"}, "need a token secret"},
		{[]string{"-token-secret", testSecret, "-private-walls", "a b"}, "not a valid wall name"},
		{[]string{"-token-secret", testSecret, "-private-walls", "a*b"}, "'*' may only end"},
	} {
		_, err := parseFlags(tc.args, func(string) string { return "" }, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("parseFlags(%q): %v, want %q", tc.args, err, tc.want)
		}
	}
}

// mint runs "wall token" with args and the secret in the environment.
func mint(t *testing.T, args ...string) string {
	t.Helper()
	var out, errs bytes.Buffer
	if err := tokenCommand(args, func(k string) string {
		if k == "WALL_TOKEN_SECRET" {
			return testSecret
		}
		return ""
	}, &out, &errs); err != nil {
		t.Fatalf("wall token %q: %v\n%s", args, err, errs.String())
	}
	return strings.TrimSuffix(out.String(), "\n")
}

// "wall token" prints an HS256 token with the claims asked for, which
// golang-jwt reads back with the secret.
func TestTokenCommand(t *testing.T) {
	tok := mint(t, "-sub", "mary", "-groups", "a, b", "-sid", "s1", "-walls", "staff,ops:*", "-ttl", "2h")
	var c struct {
		jwt.RegisteredClaims
		Groups []string `json:"groups"`
		Sid    string   `json:"sid"`
		Walls  []string `json:"walls"`
	}
	parsed, err := jwt.ParseWithClaims(tok, &c, func(*jwt.Token) (any, error) { return []byte(testSecret), nil },
		jwt.WithValidMethods([]string{"HS256"}))
	if err != nil || parsed.Header["alg"] != "HS256" {
		t.Fatalf("%q: %v", tok, err)
	}
	if c.Subject != "mary" || strings.Join(c.Groups, ",") != "a,b" || c.Sid != "s1" || strings.Join(c.Walls, ",") != "staff,ops:*" {
		t.Errorf("claims %+v", c)
	}
	if d := time.Until(c.ExpiresAt.Time); d < 119*time.Minute || d > 2*time.Hour || c.IssuedAt == nil {
		t.Errorf("exp in %v, iat %v", d, c.IssuedAt)
	}
	c.ExpiresAt = nil
	if _, err := jwt.ParseWithClaims(mint(t, "-sub", "svc", "-ttl", "0"), &c, func(*jwt.Token) (any, error) { return []byte(testSecret), nil }); err != nil || c.ExpiresAt != nil {
		t.Errorf("-ttl 0: %v, exp %v", err, c.ExpiresAt)
	}
	// The default lifetime is an hour; -token-secret wins over the variable.
	other := strings.Repeat("s", 32)
	var out bytes.Buffer
	if err := tokenCommand([]string{"-sub", "m", "-token-secret", other}, func(string) string { return testSecret }, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	if _, err := jwt.ParseWithClaims(strings.TrimSpace(out.String()), &c, func(*jwt.Token) (any, error) { return []byte(other), nil }); err != nil ||
		time.Until(c.ExpiresAt.Time) > time.Hour || time.Until(c.ExpiresAt.Time) < 59*time.Minute {
		t.Errorf("default -ttl or -token-secret: %v %v", err, c.ExpiresAt)
	}
	for _, tc := range []struct {
		args   []string
		secret string
		want   string
	}{
		{[]string{"-sub", "m"}, "", "no secret"},
		{[]string{"-groups", "a"}, testSecret, "-sub is required"},
		{[]string{"-sub", "m"}, "short", "at least 32"},
		{[]string{"-sub", "m", "-ttl", "-1h"}, testSecret, "negative"},
		{[]string{"-sub", "m", "extra"}, testSecret, "unexpected arguments"},
	} {
		var out bytes.Buffer
		err := tokenCommand(tc.args, func(string) string { return tc.secret }, &out, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) || out.Len() != 0 {
			t.Errorf("wall token %q: %v %q, want %q", tc.args, err, out.String(), tc.want)
		}
	}
	var help bytes.Buffer
	if err := tokenCommand([]string{"-h"}, func(string) string { return "" }, io.Discard, &help); !errors.Is(err, flag.ErrHelp) || !strings.Contains(help.String(), "usage: wall token -sub") {
		t.Errorf("-h: %v %s", err, help.String())
	}
}

// A token from "wall token" works against a server run with the same
// secret: mary posts to her wall with the Bearer header (no XSRF token)
// and reads it with the cookie; bob's token gets 403 and no token 401.
func TestRunWithTokens(t *testing.T) {
	base, _ := startRun(t, "-token-secret", testSecret, "-private-walls", "staff")
	mary, bob := mint(t, "-sub", "mary"), mint(t, "-sub", "bob", "-walls", "staff")
	do := func(req *http.Request) (int, string) {
		t.Helper()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	req, _ := http.NewRequest(http.MethodPost, base+"/a/message/new", strings.NewReader(url.Values{"body": {"mine"}, "wall": {"user:mary"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", "Bearer "+mary)
	if code, b := do(req); code != 200 || !strings.Contains(b, `"body": "mine"`) {
		t.Fatalf("mary's post: %d %s", code, b)
	}
	poll := func(cookie string) (int, string) {
		req, _ := http.NewRequest(http.MethodGet, base+"/a/message/updates?wall=user:mary&cursor=0", nil)
		if cookie != "" {
			req.AddCookie(&http.Cookie{Name: "wall_token", Value: cookie})
		}
		return do(req)
	}
	if code, b := poll(mary); code != 200 || !strings.Contains(b, `"body": "mine"`) {
		t.Errorf("mary's poll: %d %s", code, b)
	}
	if code, b := poll(bob); code != 403 || b != `{"error": "this wall is private: this token may not use it"}` {
		t.Errorf("bob's poll: %d %s", code, b)
	}
	if code, b := poll(""); code != 401 || b != `{"error": "this wall is private: a token is required"}` {
		t.Errorf("anonymous poll: %d %s", code, b)
	}
	if code, b := poll(mary + "x"); code != 401 || !strings.Contains(b, "token") {
		t.Errorf("bad token: %d %s", code, b)
	}
}
