package redisbroker

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"unicode/utf8"

	"wall/wall"
)

// This file holds the payload the sequencer publishes and stores in the
// history, "<seq> <epoch> <id> <wall> t=<ms> [u=<user>]\n<body>", and its
// parsing into a redisEvent and rendering into a wall.Message.

// redisEvent is one message as published by the sequencer.
type redisEvent struct {
	wallName, epoch, id, user, body string
	seq                             uint64
	time                            int64
}

// encodePayload builds the sequencer's payload for a message (of epoch)
// this instance holds, as wall_restore puts it back.
func encodePayload(wallName, epoch string, m *wall.Message) string {
	var b strings.Builder
	b.WriteString(strconv.FormatUint(m.Seq, 10))
	b.WriteString(" " + epoch + " " + m.ID + " " + wallName)
	if m.Time > 0 {
		b.WriteString(" t=" + strconv.FormatInt(m.Time, 10))
	}
	if m.User != "" {
		b.WriteString(" u=" + url.PathEscape(m.User))
	}
	b.WriteString("\n" + m.Body)
	return b.String()
}

// parsePayload parses a payload made by the sequencer. Fields after the
// wall that it does not know are ignored, so a newer sequencer can add
// some.
func parsePayload(p string) (*redisEvent, error) {
	head, body, ok := strings.Cut(p, "\n")
	if !ok {
		return nil, fmt.Errorf("payload without a body line: %.80q", p)
	}
	f := strings.Fields(head)
	if len(f) < 4 {
		return nil, fmt.Errorf("payload header %.80q", head)
	}
	seq, err := strconv.ParseUint(f[0], 10, 64)
	if err != nil || seq == 0 {
		return nil, fmt.Errorf("payload seq %.20q", f[0])
	}
	e := &redisEvent{seq: seq, epoch: f[1], id: f[2], wallName: f[3], body: body}
	for _, kv := range f[4:] {
		switch k, v, _ := strings.Cut(kv, "="); k {
		case "t":
			if e.time, err = strconv.ParseInt(v, 10, 64); err != nil || e.time < 0 {
				return nil, fmt.Errorf("payload time %.20q", v)
			}
		case "u":
			if e.user, err = url.PathUnescape(v); err != nil || !utf8.ValidString(e.user) {
				return nil, fmt.Errorf("payload user %.80q", v)
			}
		}
	}
	return e, nil
}

// message renders the event. The body is cleaned again (a redis-cli
// publisher may send anything); cleaning is deterministic, so every
// instance renders the same message.
func (e *redisEvent) message() *wall.Message {
	body, err := wall.CleanBody(e.body)
	if err != nil {
		body, _ = wall.CleanBody(strings.ToValidUTF8(e.body, "\uFFFD"))
	}
	return wall.Build(wall.Message{ID: e.id, Seq: e.seq, Epoch: e.epoch, User: e.user, Time: e.time, Body: body})
}
