package server

import (
	"net"
	"runtime"
	"sync"
)

// flusher is a small pool of workers that write pending frames to
// WebSocket connections without blocking. A broadcast to ten thousand
// subscribers then costs ten thousand write calls on a few goroutines,
// instead of ten thousand goroutines woken or started.
type flusher struct {
	q        chan *wsClient
	stop     chan struct{}
	stopOnce sync.Once
	done     chan struct{}
}

func newFlusher() *flusher {
	f := &flusher{q: make(chan *wsClient, 1<<16), stop: make(chan struct{}), done: make(chan struct{})}
	n := runtime.GOMAXPROCS(0)
	exited := make(chan struct{}, n)
	for range n {
		go f.work(exited)
	}
	go func() {
		for range n {
			<-exited
		}
		close(f.done)
	}()
	return f
}

// submit queues cl for a flush; false if the queue is full (the caller
// then starts a writer goroutine). It never blocks: it runs under locks.
func (f *flusher) submit(cl *wsClient) bool {
	select {
	case f.q <- cl:
		return true
	default:
		return false
	}
}

func (f *flusher) work(exited chan<- struct{}) {
	defer func() { exited <- struct{}{} }()
	var scratch net.Buffers
	var w rawWriter
	for {
		select {
		case cl := <-f.q:
			cl.flush(&scratch, &w)
		case <-f.stop:
			return
		}
	}
}

// close stops the workers once no connection is left to submit; see
// Server.Wait.
func (f *flusher) close() {
	f.stopOnce.Do(func() { close(f.stop) })
	<-f.done
}
