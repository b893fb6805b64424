package server

import (
	"encoding/json"
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"wall/server/internal/outbound"
)

// Chromium's own EventSource reads the stream: message events carry the
// message JSON with the cursor as lastEventId; when the server cuts the
// stream, the browser reconnects by itself after the retry: delay and
// sends Last-Event-ID, so the messages posted meanwhile arrive once, in
// order (its URL has no cursor: without the header they would be lost);
// heartbeat=1 streams get heartbeat events.
func TestSSEInChromium(t *testing.T) {
	e := newTestEnv(t, Config{PingInterval: 400 * time.Millisecond}, 10)
	tab := newBrowser(t)
	if err := chromedp.Do(tab, chromedp.Navigate(e.url+"/healthz")); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Run(tab, chromedp.Evaluate[bool](`
		window.got = []; window.errors = 0; window.beats = 0;
		window.es = new EventSource("/sse?wall=br");
		es.onmessage = (ev) => got.push({id: ev.lastEventId, data: ev.data});
		es.onerror = () => { errors++; };
		window.hb = new EventSource("/sse?wall=hb&heartbeat=1");
		hb.addEventListener("heartbeat", (ev) => { if (ev.data === "{}") beats++; });
		true`)); err != nil {
		t.Fatal(err)
	}
	e.subscribed("br", 1)
	waitFor(t, "both streams", 5*time.Second, func() bool { return e.sseCount() == 2 })
	var sent []string
	for _, body := range []string{"one", "two"} {
		sent = append(sent, string(e.publish("br", body).JSON))
	}
	waitGot := func(n int) {
		t.Helper()
		if _, err := chromedp.Run(tab, chromedp.Poll[bool](`got.length >= `+strconv.Itoa(n))); err != nil {
			t.Fatalf("waiting for %d events: %v", n, err)
		}
	}
	waitGot(2)

	// Cut the br stream (as the slow cut-off does) and post while it is
	// down.
	e.srv.streams.Each(func(m outbound.Member) {
		if s, ok := m.(*outbound.Session); ok && s.Transport() == sseTransport {
			s.Close(outbound.SlowReader) // both: the heartbeat stream reconnects too
		}
	})
	e.subscribed("br", 0)
	for _, body := range []string{"three", "four"} {
		sent = append(sent, string(e.publish("br", body).JSON))
	}
	waitGot(4)

	type event struct{ ID, Data string }
	var got []event
	raw, err := chromedp.Run(tab, chromedp.Evaluate[string](`JSON.stringify(got)`))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(raw), &got); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(sent) {
		t.Fatalf("browser got %d events, want %d: %s", len(got), len(sent), raw)
	}
	for i, ev := range got {
		m := decodeMsg(t, []byte(ev.Data))
		if ev.Data != sent[i] || ev.ID != m.Cursor {
			t.Errorf("event %d: id %q data %s, want %s", i, ev.ID, ev.Data, sent[i])
		}
	}
	errors, err := chromedp.Run(tab, chromedp.Evaluate[int](`errors`))
	if err != nil || errors < 1 {
		t.Errorf("the cut was not seen as an error event: %d %v", errors, err)
	}
	if _, err := chromedp.Run(tab, chromedp.Poll[bool](`beats >= 2`)); err != nil {
		t.Errorf("heartbeat events: %v", err)
	}
}
