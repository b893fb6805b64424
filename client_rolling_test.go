package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/google/uuid"

	"wall/wall/browsertest"
	"wall/wall/redistest"
)

// The browser client library through nginx across a rolling restart: the
// real /static/wall-client.js in Chromium, on nginx's origin, over each
// transport, while two instances (real processes, Redis behind them) are
// restarted one after the other and drain on SIGTERM.

// rollingPage is the script of a page on nginx's origin, formatted with
// the wall's name and one transport (JavaScript strings). It gets the
// _xsrf cookie as a visit to the site would (the wall's page sets it),
// imports the library, connects over that transport only, and records in
// window.log every message (seq, id, body), gap and state change (with
// Date.now()), and every publish made through window.pub. The pages the
// instances serve allow no inline script (CSP), so the test evaluates it
// in a document of that origin; its import and connections are the
// page's own, under the instances' policy.
const rollingPage = `(async () => {
	await fetch("/", { credentials: "same-origin" });
	const lib = await import("/static/wall-client.js");
	const log = { msgs: [], gaps: [], states: [], pubs: [] };
	const w = lib.connect({ wall: %[1]s, transports: [%[2]s] });
	w.on("message", (m) => log.msgs.push({ seq: m.seq, id: m.id, body: m.body }));
	w.on("gap", (g) => log.gaps.push(g));
	w.on("state", (s) => log.states.push({ state: s.state, transport: s.transport || "", reason: s.reason || "", delay: s.delay ?? -1, at: Date.now() }));
	window.pub = (text) => {
		const p = { text, at: Date.now(), done: false };
		log.pubs.push(p);
		w.publish(text).then(
			(m) => Object.assign(p, { done: true, id: m.id, seq: m.seq }),
			(e) => Object.assign(p, { done: true, err: String(e.message), status: e.status }),
		);
	};
	window.log = log;
	window.w = w;
})()`

// pageLog is a page's window.log.
type pageLog struct {
	Msgs   []wireMsg        `json:"msgs"`
	Gaps   []map[string]any `json:"gaps"`
	States []struct {
		State     string  `json:"state"`
		Transport string  `json:"transport"`
		Reason    string  `json:"reason"`
		Delay     float64 `json:"delay"` // ms until it reconnects; -1 if none
		At        int64   `json:"at"`    // Unix ms
	} `json:"states"`
	Pubs []struct {
		Text   string `json:"text"`
		Done   bool   `json:"done"`
		ID     string `json:"id"`
		Seq    uint64 `json:"seq"`
		Err    string `json:"err"`
		Status int    `json:"status"`
	} `json:"pubs"`
}

// has reports whether the page delivered the message with id.
func (l *pageLog) has(id string) bool {
	for _, m := range l.Msgs {
		if m.ID == id {
			return true
		}
	}
	return false
}

// settled reports whether every publish of the page has resolved or
// rejected.
func (l *pageLog) settled() bool {
	for _, p := range l.Pubs {
		if !p.Done {
			return false
		}
	}
	return true
}

// stopProcessAndWait sends p SIGTERM and waits until it has exited (its
// owner in startProcess reaps it), failing after within.
func stopProcessAndWait(t *testing.T, p *serverProcess, within time.Duration) {
	t.Helper()
	signalProcessAndWait(t, p, syscall.SIGTERM, within)
}

// signalProcessAndWait sends p sig and waits until it has exited, failing
// after within.
func signalProcessAndWait(t *testing.T, p *serverProcess, sig syscall.Signal, within time.Duration) {
	t.Helper()
	if err := syscall.Kill(p.pid, sig); err != nil {
		t.Fatalf("%v to %d: %v", sig, p.pid, err)
	}
	stat := "/proc/" + strconv.Itoa(p.pid) + "/stat"
	waitFor(t, func() bool {
		b, err := os.ReadFile(stat)
		if errors.Is(err, os.ErrNotExist) {
			return true
		}
		// A zombie (state Z, after the command name) has exited too.
		i := strings.LastIndexByte(string(b), ')')
		return err == nil && i >= 0 && i+2 < len(b) && b[i+2] == 'Z'
	}, within)
}

// waitReady waits until the instance at addr answers /readyz with 200.
func waitReady(t *testing.T, addr string, within time.Duration) {
	t.Helper()
	waitFor(t, func() bool {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, within)
}

// wallHistory reads every message wall name holds from instance addr: a
// poll from cursor 0, which the cache (-cache, larger than the test's
// messages) answers whole.
func wallHistory(t *testing.T, addr, name string) []wireMsg {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/a/message/updates?wall=" + name + "&cursor=0")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var a pollAnswer
	if err := json.Unmarshal(b, &a); err != nil || resp.StatusCode != http.StatusOK || a.Missed > 0 || a.Reset {
		t.Fatalf("history of %s from %s: %d %.300s (%v)", name, addr, resp.StatusCode, b, err)
	}
	return a.Messages
}

// TestClientRollingRestartThroughNginx: three pages in Chromium on nginx's
// origin run the client library, one per transport, while Go posts 20
// messages a second through nginx and the pages publish too, and the two
// instances behind nginx are restarted one after the other (SIGTERM,
// drained over -drain-time, started again). Every page delivers exactly
// the wall's messages, once each, in order, with no gap; every publish
// resolves with its stored message, stored once; and each streaming page
// was drained off an instance and came back live.
func TestClientRollingRestartThroughNginx(t *testing.T) {
	const drain = 2 * time.Second
	nginxBin := lookNginx(t)
	browser := browsertest.Start(t, 60*time.Second)
	rdb := redistest.Start(t)
	args := func(i int) []string {
		return []string{"-addr", instanceAddrs[i], "-redis", rdb.URL(), "-drain-time", drain.String(),
			"-shutdown-timeout", "5s", "-poll-timeout", "5s", "-cache", "5000"}
	}
	var procs [2]*serverProcess
	for i := range procs {
		procs[i] = startProcess(t, args(i)...)
	}
	startNginx(t, nginxBin)
	name := "roll-" + uuid.NewString()[:8]

	transports := []string{"websocket", "sse", "longpoll"}
	tabs := map[string]context.Context{}
	for _, tr := range transports {
		tab, cancel := chromedp.NewContext(browser)
		t.Cleanup(cancel)
		if err := chromedp.Do(tab, chromedp.Navigate(nginxBase+"/healthz")); err != nil {
			t.Fatalf("open a page on nginx's origin: %v", err)
		}
		if _, err := chromedp.Run(tab, chromedp.Evaluate[any](fmt.Sprintf(rollingPage, jsQuote(name), jsQuote(tr)), chromedp.EvalAwaitPromise)); err != nil {
			t.Fatalf("%s: importing and connecting the library: %v", tr, err)
		}
		tabs[tr] = tab
	}
	readLog := func(tr string) pageLog { return browsertest.Eval[pageLog](t, tabs[tr], `window.log`) }
	waitFor(t, func() bool {
		for _, tr := range transports {
			if browsertest.Eval[string](t, tabs[tr], `w.state`) != "live" {
				return false
			}
		}
		return true
	}, 10*time.Second)

	// Go posts with ids through nginx, each retried with its id until
	// stored, 20 a second.
	poster := newLegacyClient(t, nginxBase, name)
	var mu sync.Mutex
	posted := map[uint64]string{} // seq → id
	postFails := 0
	stopPosting, posting := make(chan struct{}), make(chan struct{})
	endPosting := sync.OnceFunc(func() { close(stopPosting); <-posting })
	t.Cleanup(endPosting) // before the browser and the processes stop, should the test end early
	go func() {
		defer close(posting)
		for i := 0; ; i++ {
			select {
			case <-stopPosting:
				return
			case <-time.After(50 * time.Millisecond):
			}
			id := uuid.NewString()
			for {
				m, status, err := poster.postID(fmt.Sprintf("go %d", i), id)
				if err == nil && status == http.StatusOK {
					mu.Lock()
					posted[m.Seq] = id
					mu.Unlock()
					break
				}
				mu.Lock()
				postFails++
				mu.Unlock()
				if t.Context().Err() != nil {
					return // the test is over: no retrying for ever
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
	}()

	// The pages publish too, one after the other every 300 ms, through
	// the restarts.
	stopPub, pubbing := make(chan struct{}), make(chan struct{})
	endPub := sync.OnceFunc(func() { close(stopPub); <-pubbing })
	t.Cleanup(endPub)
	go func() {
		defer close(pubbing)
		for i := 0; ; i++ {
			select {
			case <-stopPub:
				return
			case <-time.After(300 * time.Millisecond):
			}
			tr := transports[i%len(transports)]
			if _, err := chromedp.Run(tabs[tr], chromedp.Evaluate[any](fmt.Sprintf(`pub("%s %d")`, tr, i/len(transports)))); err != nil {
				t.Errorf("%s: publish: %v", tr, err)
				return
			}
		}
	}()

	time.Sleep(time.Second)
	var terms []time.Time
	for i := range procs {
		terms = append(terms, time.Now())
		stopProcessAndWait(t, procs[i], 5*time.Second+2*time.Second)
		exited := time.Since(terms[i])
		procs[i] = startProcess(t, args(i)...)
		waitReady(t, instanceAddrs[i], 10*time.Second)
		t.Logf("instance %d: exited %v after SIGTERM, ready again %v after it", i,
			exited.Round(time.Millisecond), time.Since(terms[i]).Round(time.Millisecond))
	}
	time.Sleep(time.Second)
	endPub()
	endPosting()
	// The pages' last publishes may still be on their way: the marker
	// goes after them, so that it is the wall's last message.
	waitFor(t, func() bool {
		for _, tr := range transports {
			if l := readLog(tr); !l.settled() {
				return false
			}
		}
		return true
	}, 20*time.Second)

	// A final marker, then every page has it and every publish settled.
	final, status, err := poster.postID("final", uuid.NewString())
	if err != nil || status != http.StatusOK {
		t.Fatalf("final post: %d %v", status, err)
	}
	logs := map[string]pageLog{}
	waitFor(t, func() bool {
		for _, tr := range transports {
			l := readLog(tr)
			if !l.has(final.ID) || !l.settled() {
				return false
			}
			logs[tr] = l
		}
		return true
	}, 20*time.Second)

	// The wall's history, the same on both instances.
	history := wallHistory(t, instanceAddrs[0], name)
	if other := wallHistory(t, instanceAddrs[1], name); fmt.Sprint(other) != fmt.Sprint(history) {
		t.Errorf("the instances hold different histories:\n%v\n%v", history, other)
	}
	ids := map[string]uint64{} // id → seq
	for i, m := range history {
		if m.Seq != uint64(i+1) {
			t.Fatalf("history: message %d has seq %d", i, m.Seq)
		}
		if _, dup := ids[m.ID]; dup {
			t.Errorf("history: id %s stored twice", m.ID)
		}
		ids[m.ID] = m.Seq
	}
	if len(history) == 0 || history[len(history)-1].ID != final.ID {
		t.Fatalf("the wall's history does not end with the final marker %v: %v", final, history)
	}
	mu.Lock()
	for seq, id := range posted {
		if ids[id] != seq {
			t.Errorf("Go's post %s was stored as seq %d, the wall has it at %d", id, seq, ids[id])
		}
	}
	goPosts := len(posted)
	mu.Unlock()

	pubs := 0
	for _, tr := range transports {
		l := logs[tr]
		if len(l.Gaps) > 0 {
			t.Errorf("%s: gap events %v", tr, l.Gaps)
		}
		if len(l.Msgs) != len(history) {
			t.Errorf("%s delivered %d messages, the wall holds %d", tr, len(l.Msgs), len(history))
		}
		for i, m := range l.Msgs {
			if i >= len(history) || m.Seq != history[i].Seq || m.ID != history[i].ID || m.Body != history[i].Body {
				t.Errorf("%s: delivery %d is %+v, the wall's message %d is %+v (lost, twice or out of order)",
					tr, i, m, i, history[min(i, len(history)-1)])
				break
			}
		}
		for _, p := range l.Pubs {
			pubs++
			switch {
			case p.Err != "":
				t.Errorf("%s: publish %q rejected: %s (%d)", tr, p.Text, p.Err, p.Status)
			case p.Seq == 0 || p.Seq > uint64(len(history)) || ids[p.ID] != p.Seq || history[p.Seq-1].Body != p.Text:
				t.Errorf("%s: publish %q resolved with %s seq %d, which the wall does not hold as such", tr, p.Text, p.ID, p.Seq)
			}
		}
		if len(l.Pubs) < 3 {
			t.Errorf("%s published only %d messages during the restarts", tr, len(l.Pubs))
		}
		reconnects := describeReconnects(l, terms)
		t.Logf("%s: %d messages, %d publishes; reconnections: %s",
			tr, len(l.Msgs), len(l.Pubs), reconnects.text)
		if tr == "websocket" {
			checkHintsHonoured(t, l)
		}
		if tr != "longpoll" && reconnects.n == 0 {
			t.Errorf("%s never left live and came back: the drain was not exercised (states %+v)", tr, l.States)
		}
	}
	t.Logf("%d messages: %d Go posts (%d attempts failed mid-restart and were retried), %d page publishes, the marker",
		len(history), goPosts, postFails, pubs)
	if len(history) != goPosts+pubs+1 {
		t.Errorf("the wall holds %d messages, %d were posted: a retried post was stored twice", len(history), goPosts+pubs+1)
	}
}

// checkHintsHonoured asserts that each time the WebSocket page was closed
// with a reconnect hint (1012, {"reconnect_ms": N}) it waited N ms.
func checkHintsHonoured(t *testing.T, l pageLog) {
	t.Helper()
	for _, s := range l.States {
		var h struct {
			ReconnectMS *float64 `json:"reconnect_ms"`
		}
		if s.State != "reconnecting" || json.Unmarshal([]byte(s.Reason), &h) != nil || h.ReconnectMS == nil {
			continue
		}
		if s.Delay != *h.ReconnectMS {
			t.Errorf("websocket: closed with %s, reconnects after %v ms", s.Reason, s.Delay)
		}
	}
}

// reconnects is how often a page left live and came back, in words.
type reconnects struct {
	n    int
	text string
}

// describeReconnects lists each time the page's state left live and each
// time it was live again, relative to the SIGTERMs at terms.
func describeReconnects(l pageLog, terms []time.Time) reconnects {
	var r reconnects
	var parts []string
	// rel places ms after the last SIGTERM before it.
	rel := func(ms int64) string {
		at, k := time.UnixMilli(ms), 0
		for i, term := range terms {
			if at.After(term) {
				k = i
			}
		}
		if d := at.Sub(terms[k]).Round(time.Millisecond); d < 0 {
			return fmt.Sprintf("%v before SIGTERM %d", -d, k)
		} else {
			return fmt.Sprintf("%v after SIGTERM %d", d, k)
		}
	}
	wasLive, left := false, int64(0)
	for _, s := range l.States {
		switch {
		case s.State == "live" && left != 0:
			r.n++
			parts = append(parts, fmt.Sprintf("left live at %s (%s), live again at %s", rel(left), reasonAt(l, left), rel(s.At)))
			left = 0
		case s.State != "live" && wasLive && left == 0:
			left = s.At
		}
		wasLive = wasLive || s.State == "live"
	}
	if left != 0 {
		parts = append(parts, "left live at "+rel(left)+" and never came back")
	}
	if len(parts) == 0 {
		parts = []string{"none"}
	}
	r.text = strings.Join(parts, "; ")
	return r
}

// reasonAt is the reason of the page's state change at ms.
func reasonAt(l pageLog, ms int64) string {
	for _, s := range l.States {
		if s.At == ms && s.State != "live" {
			return s.Reason
		}
	}
	return ""
}

// jsQuote quotes s as a JavaScript string literal.
func jsQuote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
