package longpoll

import (
	"encoding/json"
	"strconv"
	"wall/wall"
)

// AppendPollResponse writes {"messages": [...], "cursor": "<cursor>"},
// the cursor being the last message's ("<seq>.<epoch>", its "cursor" key),
// plus "missed" or "reset" when the cursor fell behind the cache. The
// messages are the bytes encoded when they entered: nothing is re-encoded
// per poll.
func AppendPollResponse(b []byte, r wall.Result) []byte {
	n := 64
	for _, m := range r.Messages {
		n += len(m.JSON) + 2
	}
	if b == nil {
		b = make([]byte, 0, n)
	}
	b = append(b, `{"messages": [`...)
	for i, m := range r.Messages {
		if i > 0 {
			b = append(b, ", "...)
		}
		b = append(b, m.JSON...)
	}
	b = append(b, `], "cursor": `...)
	b = r.Messages[len(r.Messages)-1].Cursor().AppendJSON(b)
	if r.Missed > 0 {
		b = append(b, `, "missed": `...)
		b = strconv.AppendUint(b, r.Missed, 10)
	}
	if r.Reset {
		b = append(b, `, "reset": true`...)
	}
	return append(b, '}')
}

// TimeoutResponse answers a poll that waited its full time (or was cut by
// shutdown) without a "messages" key: legacy chat.js then polls again at
// once, where an empty list would make it back off. The cursor is echoed
// as sent, JSON-escaped: any string is a cursor (Tornado's rule), control
// characters, quotes and invalid UTF-8 included.
func TimeoutResponse(c wall.Cursor) []byte {
	b := c.AppendJSON([]byte(`{"cursor": `))
	return append(b, '}')
}

// AppendErrorBody appends {"error": "<msg>"}, the body of every error
// answer, whichever path writes it.
func AppendErrorBody(b []byte, msg string) []byte {
	q, _ := json.Marshal(msg) // a string always encodes
	b = append(b, `{"error": `...)
	b = append(b, q...)
	return append(b, '}')
}
