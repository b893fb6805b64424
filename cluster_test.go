package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"wall/wall/redistest"
)

// The cluster tests run the real thing: redis-server, two instances built
// by run() on the ports the repo's nginx.conf names (7000, 7001), and nginx
// started with that nginx.conf as is, listening on 8080.

const nginxBase = "http://127.0.0.1:8080"

var instanceAddrs = [2]string{"127.0.0.1:7000", "127.0.0.1:7001"}

type cluster struct {
	t     *testing.T
	redis *redistest.Server
	stops [2]func() error
	logs  [2]*logBuffer // each instance's log since it last started
	args  []string
}

// startCluster starts Redis, both instances and nginx, all stopped at
// cleanup.
func startCluster(t *testing.T, args ...string) *cluster {
	t.Helper()
	nginxBin := lookNginx(t)
	c := &cluster{t: t, redis: redistest.Start(t)}
	// All test clients are one address (loopback), posting far faster
	// than a person: no post rate, unless a test asks for one.
	c.args = append([]string{"-redis", c.redis.URL(), "-poll-timeout", "5s", "-shutdown-timeout", "5s"}, args...)
	for i := range instanceAddrs {
		c.startInstance(i)
	}
	startNginx(t, nginxBin)
	return c
}

func (c *cluster) startInstance(i int) {
	c.t.Helper()
	_, stop, logs := startRunLogged(c.t, instanceAddrs[i], c.args...)
	c.stops[i], c.logs[i] = stop, logs
}

func (c *cluster) stopInstance(i int) {
	c.t.Helper()
	if err := c.stops[i](); err != nil {
		c.t.Errorf("instance %d stopped with %v", i, err)
	}
}

func lookNginx(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"nginx", "/usr/sbin/nginx"} {
		if bin, err := exec.LookPath(p); err == nil {
			return bin
		}
	}
	if os.Getenv("WALL_REQUIRE_INTEGRATION") == "1" {
		t.Fatal("nginx not found and WALL_REQUIRE_INTEGRATION=1 (apt-get install nginx)")
	}
	t.Skip("nginx not installed; set WALL_REQUIRE_INTEGRATION=1 to fail instead")
	return ""
}

// startNginx runs `nginx -p DIR -c nginx.conf` with the repository's file.
func startNginx(t *testing.T, bin string) {
	t.Helper()
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "logs"), 0o755); err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755) // workers may run as nobody
	if err := copyFile("nginx.conf", filepath.Join(dir, "nginx.conf")); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-p", dir, "-c", "nginx.conf", "-e", "stderr")
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
		if t.Failed() {
			t.Logf("nginx output:\n%s", out.String())
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(nginxBase + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-exited:
			t.Fatalf("nginx exited: %s", out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("nginx not answering on 8080: %v\n%s", err, out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o644)
}

// wireMsg is a message as clients see it.
type wireMsg struct {
	ID   string `json:"id"`
	Seq  uint64 `json:"seq"`
	User string `json:"user"`
	Body string `json:"body"`
}

// legacyClient behaves like Tornado's chat.js: the _xsrf cookie from the
// page, form posts with the cookie's value, polls with the last id.
type legacyClient struct {
	base   string
	wall   string
	http   *http.Client
	xsrf   string
	cursor string
}

func newLegacyClient(t *testing.T, base, wallName string) *legacyClient {
	t.Helper()
	jar := &cookieJar{}
	c := &legacyClient{base: base, wall: wallName, http: &http.Client{Jar: jar, Timeout: 20 * time.Second}}
	resp, err := c.http.Get(base + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if c.xsrf = jar.get("_xsrf"); c.xsrf == "" {
		t.Fatal("no _xsrf cookie")
	}
	return c
}

// post returns the stored message, or the status of a refused post.
func (c *legacyClient) post(body string) (wireMsg, int, error) { return c.postID(body, "") }

// postID posts body with a client-chosen id (none if empty), as a client
// that retries a post it got no answer for does: a retry of an id still in
// the wall's history stores nothing.
func (c *legacyClient) postID(body, id string) (wireMsg, int, error) {
	form := url.Values{"body": {body}, "_xsrf": {c.xsrf}, "wall": {c.wall}}
	if id != "" {
		form.Set("id", id)
	}
	resp, err := c.http.PostForm(c.base+"/a/message/new", form)
	if err != nil {
		return wireMsg{}, 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		return wireMsg{}, resp.StatusCode, err
	}
	var m wireMsg
	err = json.Unmarshal(b, &m)
	return m, resp.StatusCode, err
}

type pollAnswer struct {
	Messages []wireMsg `json:"messages"`
	Cursor   string    `json:"cursor"`
	Missed   uint64    `json:"missed"`
	Reset    bool      `json:"reset"`
	raw      string
}

// poll is one chat.js poll: POST with _xsrf, cursor when it has one.
func (c *legacyClient) poll() (pollAnswer, error) {
	form := url.Values{"_xsrf": {c.xsrf}, "wall": {c.wall}}
	if c.cursor != "" {
		form.Set("cursor", c.cursor)
	}
	resp, err := c.http.PostForm(c.base+"/a/message/updates", form)
	if err != nil {
		return pollAnswer{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return pollAnswer{}, err
	}
	if resp.StatusCode != http.StatusOK {
		return pollAnswer{}, fmt.Errorf("poll: %d %s", resp.StatusCode, b)
	}
	var a pollAnswer
	if err := json.Unmarshal(b, &a); err != nil {
		return a, fmt.Errorf("poll answer %q: %v", b, err)
	}
	a.raw = string(b)
	if len(a.Messages) > 0 {
		c.cursor = a.Messages[len(a.Messages)-1].ID
	}
	return a, nil
}

// recorder collects what one subscriber saw.
type recorder struct {
	mu   sync.Mutex
	msgs []wireMsg
	errs []string
}

func (r *recorder) add(ms ...wireMsg) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, ms...)
}

func (r *recorder) fail(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

func (r *recorder) last() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.msgs) == 0 {
		return 0
	}
	return r.msgs[len(r.msgs)-1].Seq
}

func (r *recorder) snapshot() ([]wireMsg, []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]wireMsg(nil), r.msgs...), append([]string(nil), r.errs...)
}

// wsSubscriber follows a wall over WebSocket through url base, and
// reconnects with its cursor (the last seq it has) whenever the connection
// ends, as our browser client does, until stop is closed.
func wsSubscriber(base, wallName string, rec *recorder, stop <-chan struct{}, wg *sync.WaitGroup) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			u := "ws" + strings.TrimPrefix(base, "http") + "/ws?wall=" + wallName
			if last := rec.last(); last > 0 {
				u += "&cursor=" + strconv.FormatUint(last, 10)
			}
			conn, _, err := websocket.DefaultDialer.Dial(u, nil)
			if err != nil {
				time.Sleep(50 * time.Millisecond) // instance restarting: retry
				continue
			}
			done := make(chan struct{})
			go func() {
				select {
				case <-stop:
					conn.Close()
				case <-done:
				}
			}()
			for {
				_, data, err := conn.ReadMessage()
				if err != nil {
					break
				}
				var m struct {
					wireMsg
					Missed uint64 `json:"missed"`
					Reset  bool   `json:"reset"`
					Error  string `json:"error"`
				}
				if err := json.Unmarshal(data, &m); err != nil {
					rec.fail("bad frame %q", data)
					continue
				}
				switch {
				case m.Missed > 0 || m.Reset || m.Error != "":
					rec.fail("frame %s", data)
				case m.ID != "":
					rec.add(m.wireMsg)
				}
			}
			close(done)
			conn.Close()
		}
	}()
}

// pollSubscriber follows a wall by GET long-poll with seq cursors through
// base, retrying after errors, until stop is closed.
func pollSubscriber(base, wallName string, rec *recorder, stop <-chan struct{}, wg *sync.WaitGroup) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		client := &http.Client{Timeout: 20 * time.Second}
		for {
			select {
			case <-stop:
				return
			default:
			}
			u := base + "/a/message/updates?wall=" + wallName
			if last := rec.last(); last > 0 {
				u += "&cursor=" + strconv.FormatUint(last, 10)
			}
			resp, err := client.Get(u)
			if err != nil {
				time.Sleep(50 * time.Millisecond)
				continue
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				time.Sleep(50 * time.Millisecond) // 502 while an instance restarts
				continue
			}
			var a pollAnswer
			if err := json.Unmarshal(b, &a); err != nil {
				rec.fail("bad poll answer %q", b)
				continue
			}
			if a.Missed > 0 || a.Reset {
				rec.fail("poll answer %s", b)
			}
			rec.add(a.Messages...)
		}
	}()
}

// checkSeen asserts that rec saw exactly seqs 1..n, in order, once each,
// with the ids in want (seq → id).
func checkSeen(t *testing.T, name string, rec *recorder, want map[uint64]string, n uint64) {
	t.Helper()
	msgs, errs := rec.snapshot()
	for _, e := range errs {
		t.Errorf("%s: %s", name, e)
	}
	if uint64(len(msgs)) != n {
		t.Errorf("%s saw %d messages, want %d", name, len(msgs), n)
	}
	for i, m := range msgs {
		if m.Seq != uint64(i+1) {
			t.Errorf("%s: message %d has seq %d (lost, duplicated or reordered)", name, i, m.Seq)
			return
		}
		if id, ok := want[m.Seq]; ok && id != m.ID {
			t.Errorf("%s: seq %d is %s, but the poster got %s", name, m.Seq, m.ID, id)
			return
		}
	}
}

// waitSeen waits until every recorder has n messages.
func waitSeen(t *testing.T, recs map[string]*recorder, n uint64, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for name, rec := range recs {
		for rec.last() < n {
			if time.Now().After(deadline) {
				t.Errorf("%s reached seq %d of %d in time", name, rec.last(), n)
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

func TestClusterEveryClientSeesEveryMessageOnceInOrder(t *testing.T) {
	startCluster(t)
	const wallName = "cluster"
	stop := make(chan struct{})
	var wg sync.WaitGroup
	recs := map[string]*recorder{}
	bases := map[string]string{"nginx": nginxBase, "a": "http://" + instanceAddrs[0], "b": "http://" + instanceAddrs[1]}
	for name, base := range bases {
		for i := range 2 {
			ws, lp := &recorder{}, &recorder{}
			recs[fmt.Sprintf("ws-%s-%d", name, i)] = ws
			recs[fmt.Sprintf("poll-%s-%d", name, i)] = lp
			wsSubscriber(base, wallName, ws, stop, &wg)
			pollSubscriber(base, wallName, lp, stop, &wg)
		}
	}
	defer func() { close(stop); wg.Wait() }()
	// Let the subscribers connect before the first post: without a cursor
	// a WebSocket gets live messages only.
	time.Sleep(300 * time.Millisecond)

	const perPoster = 25
	var mu sync.Mutex
	posted := map[uint64]string{}
	var pwg sync.WaitGroup
	for _, base := range []string{nginxBase, nginxBase, bases["a"], bases["b"]} {
		pwg.Add(1)
		go func() {
			defer pwg.Done()
			c := newLegacyClient(t, base, wallName)
			for i := range perPoster {
				m, status, err := c.post(fmt.Sprintf("hello %d via %s", i, base))
				if err != nil || status != http.StatusOK {
					t.Errorf("post via %s: %d %v", base, status, err)
					return
				}
				mu.Lock()
				if prev, dup := posted[m.Seq]; dup {
					t.Errorf("seq %d given to %s and %s", m.Seq, prev, m.ID)
				}
				posted[m.Seq] = m.ID
				mu.Unlock()
			}
		}()
	}
	pwg.Wait()
	n := uint64(4 * perPoster)
	waitSeen(t, recs, n, 20*time.Second)
	for name, rec := range recs {
		checkSeen(t, name, rec, posted, n)
	}

	// The same cursor means the same answer on both instances.
	for _, cursor := range []string{"", "0", "50", "99", posted[40]} {
		if a, b := pollBoth(t, wallName, cursor); a != b {
			t.Errorf("cursor %q: instance answers differ:\n%s\n%s", cursor, a, b)
		}
	}
}

func TestClusterLegacyClientReadsItsWritesThroughNginx(t *testing.T) {
	startCluster(t)
	c := newLegacyClient(t, nginxBase, "rw")
	other := newLegacyClient(t, nginxBase, "rw")
	for i := range 20 {
		m, status, err := c.post(fmt.Sprintf("mine %d", i))
		if err != nil || status != http.StatusOK {
			t.Fatalf("post: %d %v", status, err)
		}
		// The next request may land on the other instance: the cursor it
		// got from this one must be placed there, not treated as unknown.
		c.cursor = m.ID
		got := make(chan pollAnswer, 1)
		errc := make(chan error, 1)
		go func() {
			a, err := c.poll()
			if err != nil {
				errc <- err
				return
			}
			got <- a
		}()
		next, status, err := other.post(fmt.Sprintf("next %d", i))
		if err != nil || status != http.StatusOK {
			t.Fatalf("post: %d %v", status, err)
		}
		select {
		case a := <-got:
			if len(a.Messages) != 1 || a.Messages[0].ID != next.ID || a.Reset {
				t.Fatalf("poll after own post %d answered %s; want exactly the next message", i, a.raw)
			}
		case err := <-errc:
			t.Fatal(err)
		case <-time.After(10 * time.Second):
			t.Fatal("poll did not answer")
		}
	}
}

func TestClusterSurvivesFaults(t *testing.T) {
	c := startCluster(t)
	const wallName = "faults"
	stop := make(chan struct{})
	var wg sync.WaitGroup
	recs := map[string]*recorder{}
	for i := range 3 {
		ws, lp := &recorder{}, &recorder{}
		recs[fmt.Sprintf("ws-%d", i)] = ws
		recs[fmt.Sprintf("poll-%d", i)] = lp
		wsSubscriber(nginxBase, wallName, ws, stop, &wg)
		pollSubscriber(nginxBase, wallName, lp, stop, &wg)
	}
	defer func() { close(stop); wg.Wait() }()
	time.Sleep(300 * time.Millisecond)

	poster := newLegacyClient(t, nginxBase, wallName)
	posted := map[uint64]string{}
	var last uint64
	refused := 0
	post := func(k int, phase string) {
		t.Helper()
		for i := range k {
			m, status, err := poster.post(fmt.Sprintf("%s %d", phase, i))
			switch {
			case err == nil && status == http.StatusOK:
				if m.Seq != last+1 {
					t.Errorf("%s: post got seq %d after %d", phase, m.Seq, last)
				}
				posted[m.Seq], last = m.ID, m.Seq
			case status == http.StatusServiceUnavailable:
				refused++
			default:
				t.Errorf("%s: post answered %d %v", phase, status, err)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	post(20, "before")

	// The pub/sub connections die mid-stream; go-redis resubscribes.
	admin := c.redis.Client()
	if err := admin.Do(t.Context(), "CLIENT", "KILL", "TYPE", "pubsub").Err(); err != nil {
		t.Fatal(err)
	}
	post(20, "after-pubsub-kill")

	// Redis away for a few seconds: posts are refused with 503, nothing
	// half-stored; Redis comes back empty and the instances restore it.
	c.redis.Stop()
	refusedBefore := refused
	post(5, "redis-down")
	if refused-refusedBefore != 5 {
		t.Errorf("with Redis down %d of 5 posts were refused; want all with 503", refused-refusedBefore)
	}
	time.Sleep(time.Second)
	c.redis.Start()
	waitFor(t, func() bool {
		_, status, _ := newLegacyClient(t, "http://"+instanceAddrs[0], "probe").post("probe")
		return status == http.StatusOK
	}, 20*time.Second)
	post(20, "after-redis-restart")

	// One instance restarts while the other keeps serving.
	c.stopInstance(0)
	post(10, "instance-down")
	c.startInstance(0)
	post(20, "after-instance-restart")

	waitSeen(t, recs, last, 30*time.Second)
	for name, rec := range recs {
		checkSeen(t, name, rec, posted, last)
	}
	// The restarted instance serves the same cache as its peer.
	if a, b := pollBoth(t, wallName, ""); a != b {
		t.Errorf("caches differ after faults:\n%s\n%s", a, b)
	}
}

// pollBoth asks each instance directly for the messages after cursor.
func pollBoth(t *testing.T, wallName, cursor string) (string, string) {
	t.Helper()
	var bodies [2]string
	for i, addr := range instanceAddrs {
		resp, err := http.Get("http://" + addr + "/a/message/updates?wall=" + wallName + "&cursor=" + cursor)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		bodies[i] = string(b)
	}
	return bodies[0], bodies[1]
}
