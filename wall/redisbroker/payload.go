package redisbroker

import (
	"fmt"
	"strconv"
	"strings"

	"wall/wall"
)

// This file holds the payload the sequencer publishes and stores in the
// history, "<seq> <epoch> <id> <wall>\n<body>", and its parsing into a
// redisEvent and rendering into a wall.Message.

// redisEvent is one message as published by the sequencer.
type redisEvent struct {
	wallName, epoch, id, body string
	seq                       uint64
}

// encodePayload builds the sequencer's payload: "<seq> <epoch> <id> <wall>\n<body>".
func encodePayload(seq uint64, epoch, id, wallName, body string) string {
	return strconv.FormatUint(seq, 10) + " " + epoch + " " + id + " " + wallName + "\n" + body
}

// parsePayload parses a payload made by the sequencer.
func parsePayload(p string) (*redisEvent, error) {
	head, body, ok := strings.Cut(p, "\n")
	if !ok {
		return nil, fmt.Errorf("payload without a body line: %.80q", p)
	}
	f := strings.Fields(head)
	if len(f) != 4 {
		return nil, fmt.Errorf("payload header %.80q", head)
	}
	seq, err := strconv.ParseUint(f[0], 10, 64)
	if err != nil || seq == 0 {
		return nil, fmt.Errorf("payload seq %.20q", f[0])
	}
	return &redisEvent{seq: seq, epoch: f[1], id: f[2], wallName: f[3], body: body}, nil
}

// message renders the event. The body is cleaned again (a redis-cli
// publisher may send anything); cleaning is deterministic, so every
// instance renders the same message.
func (e *redisEvent) message() *wall.Message {
	body, err := wall.CleanBody(e.body)
	if err != nil {
		body, _ = wall.CleanBody(strings.ToValidUTF8(e.body, "\uFFFD"))
	}
	return wall.NewMessage(e.id, e.seq, e.epoch, body)
}
