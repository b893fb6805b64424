package server

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"sync"
	"testing"
)

// BenchmarkFanoutSSE is BenchmarkFanoutWS over event streams: per
// iteration one ~100-byte message is published and the benchmark waits
// until all N streams have read its event.
func BenchmarkFanoutSSE(b *testing.B) {
	for _, n := range []int{1000, 5000} {
		b.Run(fmt.Sprintf("N=%d", n), func(b *testing.B) { benchFanoutSSE(b, n, false) })
	}
	b.Run("N=1000,http", func(b *testing.B) { benchFanoutSSE(b, 1000, true) })
}

func benchFanoutSSE(b *testing.B, n int, viaHTTP bool) {
	f := benchStartFanout(b)
	e := benchNewEnv(b)
	defer e.close()
	f.baseline()

	req := []byte("GET /sse?wall=" + benchWall + " HTTP/1.1\r\nHost: b\r\nAccept: text/event-stream\r\n\r\n")
	type stream struct {
		c net.Conn
		r *bufio.Reader
	}
	streams := benchRamp(b, n, func() (stream, error) {
		c, err := net.DialTimeout("tcp", e.addr, benchWait)
		if err != nil {
			return stream{}, err
		}
		r := bufio.NewReaderSize(c, 512)
		if _, err := c.Write(req); err != nil {
			c.Close()
			return stream{}, err
		}
		if err := benchReadSSEHead(r); err != nil {
			c.Close()
			return stream{}, err
		}
		return stream{c, r}, nil
	})
	cnt := benchNewCounter()
	var readers sync.WaitGroup
	for _, s := range streams {
		readers.Add(1)
		go func() {
			defer readers.Done()
			benchReadSSE(s.r, cnt)
		}()
	}
	defer func() {
		for _, s := range streams {
			s.c.Close()
		}
		readers.Wait()
		benchWaitUnsubscribed(b, e.hub)
	}()
	w := e.hub.Lookup(benchWall)
	if w == nil || w.Subscribers() != n {
		b.Fatalf("want %d subscribers", n)
	}

	publish := e.publish
	if viaHTTP {
		p := benchDialPoster(b, e.addr)
		defer p.conn.Close()
		publish = p.post
	}

	f.run(b, n, cnt, publish, "events")
}

// benchReadSSEHead reads a stream's response head, which must be a 200.
func benchReadSSEHead(r *bufio.Reader) error {
	line, err := r.ReadSlice('\n')
	if err != nil {
		return err
	}
	if !bytes.HasPrefix(line, []byte("HTTP/1.1 200 ")) {
		return fmt.Errorf("stream answered %q", line)
	}
	for {
		line, err := r.ReadSlice('\n')
		if err != nil {
			return err
		}
		if len(line) == 2 { // "\r\n"
			return nil
		}
	}
}

// benchReadSSE reads events from r until the connection ends and counts
// each data: line. It allocates nothing.
func benchReadSSE(r *bufio.Reader, cnt *benchCounter) {
	data := []byte("data: ")
	start := true // at the start of a line
	for {
		line, err := r.ReadSlice('\n')
		if err != nil && err != bufio.ErrBufferFull {
			return // closed
		}
		if start && bytes.HasPrefix(line, data) {
			cnt.add(1)
		}
		start = err == nil // a line longer than the buffer goes on
	}
}
