package wall

import (
	"strings"
	"testing"
)

// benchMessageBodies are ~100-byte bodies: plain text, and text with a URL
// and characters to escape, which takes linkify's slow path.
var benchMessageBodies = []struct{ name, body string }{
	{"plain", strings.Repeat("fan-out benchmark message ", 4)[:100]},
	{"url", `see https://example.com/wall?x=1&y=2 for "the" <details> — it's all there, more text to reach 100 b`},
}

// BenchmarkNewMessage measures what every post costs once, whatever the
// number of readers: rendering the HTML fragment and encoding the JSON.
func BenchmarkNewMessage(b *testing.B) {
	const id = "0f8fad5b-d9cb-469f-a165-70867728950e"
	for _, tc := range benchMessageBodies {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			var m *Message
			for b.Loop() {
				m = NewMessage(id, 12345, "0123456789abcdef", tc.body)
			}
			b.ReportMetric(float64(len(m.JSON)), "json-bytes")
		})
	}
}
