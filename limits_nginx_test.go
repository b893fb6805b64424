package main

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// clientAt is a browser-like client (cookies kept) whose connections come
// from local address ip: 127.0.0.1 and 127.0.0.2 are two clients to nginx.
func clientAt(ip string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	return &http.Client{Jar: &cookieJar{}, Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return d.DialContext(ctx, network, addr)
		},
	}}
}

// postAs posts body through nginx as client c (fetching the page first
// for its XSRF cookie) and returns the answer.
func postAs(t *testing.T, c *http.Client, body string) *http.Response {
	t.Helper()
	jar := c.Jar.(*cookieJar)
	if jar.get("_xsrf") == "" {
		resp, err := c.Get(nginxBase + "/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	resp, err := c.PostForm(nginxBase+"/a/message/new", url.Values{"body": {body}, "_xsrf": {jar.get("_xsrf")}})
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// Behind the bundled nginx, whose X-Real-IP the instances believe from
// loopback (the default -trusted-proxies), one client past its post burst
// gets 429 with Retry-After while another is unaffected; past its
// connection cap, 429 too. Limits are per instance: behind two, a client
// may make up to twice the burst.
func TestClusterLimitsBehindNginx(t *testing.T) {
	const burst = 3
	startCluster(t, "-post-rate", "0.2", "-post-burst", "3", "-max-conns-per-client", "1")
	a, b := clientAt("127.0.0.1"), clientAt("127.0.0.2")
	ok, limited := 0, 0
	for range 3 * burst {
		switch r := postAs(t, a, "flood"); r.StatusCode {
		case http.StatusOK:
			ok++
		case http.StatusTooManyRequests:
			if r.Header.Get("Retry-After") == "" {
				t.Fatal("429 without Retry-After")
			}
			limited++
		default:
			t.Fatalf("post: %d", r.StatusCode)
		}
	}
	if ok > 2*burst || limited == 0 {
		t.Fatalf("one client: %d posts stored, %d refused; want at most %d stored", ok, limited, 2*burst)
	}
	if r := postAs(t, b, "another client"); r.StatusCode != http.StatusOK {
		t.Fatalf("another client's post: %d", r.StatusCode)
	}

	// Event streams: one per client per instance.
	open := func(c *http.Client) (*http.Response, error) {
		ctx, cancel := context.WithCancel(context.Background())
		t.Cleanup(cancel)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, nginxBase+"/sse?wall=cap", nil)
		return c.Do(req)
	}
	streams, refused := 0, 0
	for range 4 {
		resp, err := open(a)
		if err != nil {
			t.Fatal(err)
		}
		switch resp.StatusCode {
		case http.StatusOK:
			streams++ // left open
		case http.StatusTooManyRequests:
			refused++
			resp.Body.Close()
		default:
			t.Fatalf("stream: %d", resp.StatusCode)
		}
	}
	if streams > 2 || refused == 0 {
		t.Fatalf("one client opened %d streams, %d refused; want at most one per instance", streams, refused)
	}
	if resp, err := open(b); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("another client's stream: %v %v", resp, err)
	}
}

// An HTTP/1.0 request without Host through the bundled nginx is served:
// nginx passes its own server name rather than an empty Host, which the
// instances would refuse with 400.
func TestClusterHTTP10WithoutHost(t *testing.T) {
	startCluster(t)
	if r := postAs(t, clientAt("127.0.0.1"), "hi"); r.StatusCode != http.StatusOK {
		t.Fatalf("post: %d", r.StatusCode)
	}
	for _, path := range []string{"/healthz", "/", "/a/message/updates?wall=main&cursor=0"} {
		c, err := net.Dial("tcp", strings.TrimPrefix(nginxBase, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(c, "GET "+path+" HTTP/1.0\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		body, _ := io.ReadAll(resp.Body)
		c.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("HTTP/1.0 GET %s without Host: %d %s", path, resp.StatusCode, body)
		}
	}
}
