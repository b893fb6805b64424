package identity

import (
	"fmt"
	"slices"
	"strings"

	"wall/wall"
)

// Private walls. Three prefixes name a wall's audience, after ws4redis:
//
//	user:<sub>[:<anything>]       tokens whose sub is <sub>
//	group:<name>[:<anything>]     tokens whose groups contain <name>
//	session:<sid>[:<anything>]    tokens whose sid is <sid>
//
// The owner is the segment after the prefix, up to the next ':' (what
// follows is a facility), so a sub, group or sid that contains ':' owns
// no wall: "user:a:b" is a's wall "b", never the wall of user "a:b". The
// prefixes are lowercase and exact. The deployment's PrivateWalls
// (names or "prefix*" patterns) are private too, reached only by a token
// whose walls claim matches the name; the claim reaches no prefix wall.

// audiences are the prefixes of private walls, in the order of the
// Identity fields they are matched against.
var audiences = [...]string{"user:", "group:", "session:"}

// owner returns which audience prefix (index into audiences) name has and
// the owner segment after it, ok false if it has none.
func owner(name string) (aud int, who string, ok bool) {
	if strings.IndexByte(name, ':') < 0 { // most walls: no prefix at all
		return 0, "", false
	}
	for i, p := range audiences {
		if rest, found := strings.CutPrefix(name, p); found {
			who, _, _ = strings.Cut(rest, ":")
			return i, who, true
		}
	}
	return 0, "", false
}

// pattern is a private-wall name, or a prefix if it ended in '*'.
type pattern struct {
	s      string
	prefix bool
}

func (p pattern) match(name string) bool {
	if p.prefix {
		return strings.HasPrefix(name, p.s)
	}
	return name == p.s
}

// policy is the deployment's list of private names and patterns.
type policy []pattern

// newPolicy parses the PrivateWalls setting: each entry a wall name, or a
// prefix of one followed by '*' ("*" alone makes every wall private).
func newPolicy(list []string) (policy, error) {
	p := make(policy, 0, len(list))
	for _, s := range list {
		prefix, isPrefix := strings.CutSuffix(s, "*")
		switch {
		case strings.Contains(prefix, "*"):
			return nil, fmt.Errorf("private wall pattern %q: '*' may only end a pattern", s)
		case isPrefix && prefix != "" && !wall.ValidName(prefix):
			return nil, fmt.Errorf("private wall pattern %q: not the start of a valid wall name", s)
		case !isPrefix && !wall.ValidName(s):
			return nil, fmt.Errorf("private wall %q: not a valid wall name (1-64 bytes of letters, digits, '-', '_', '.', '~', ':')", s)
		}
		p = append(p, pattern{prefix, isPrefix})
	}
	return p, nil
}

func (p policy) match(name string) bool {
	return slices.ContainsFunc(p, func(q pattern) bool { return q.match(name) })
}

// claimMatches reports whether an entry of a token's walls claim (a name,
// or a prefix ending in '*') matches name.
func claimMatches(walls []string, name string) bool {
	for _, w := range walls {
		if prefix, ok := strings.CutSuffix(w, "*"); ok {
			if strings.HasPrefix(name, prefix) {
				return true
			}
		} else if w == name {
			return true
		}
	}
	return false
}

// Private reports whether the wall name is private: it has an audience
// prefix, or the deployment lists it.
func (c *Checker) Private(name string) bool {
	_, _, ok := owner(name)
	return ok || c.private.match(name)
}

// Allows reports whether id may read and post on the wall name: every
// client may use a public wall; a private one only its audience (the
// owner of its prefix, or a token whose walls claim matches a listed
// name). An anonymous client may use no private wall.
func (c *Checker) Allows(id Identity, name string) bool {
	aud, who, prefixed := owner(name)
	listed := c.private.match(name)
	switch {
	case !prefixed && !listed:
		return true
	case id.Anonymous():
		return false
	case listed && claimMatches(id.Walls, name):
		return true
	case !prefixed || who == "":
		return false
	}
	switch aud {
	case 0:
		return id.Sub == who
	case 1:
		return slices.Contains(id.Groups, who)
	default:
		return id.Sid == who
	}
}
