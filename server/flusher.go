package server

import (
	"net"
	"runtime"
	"sync"
)

// flusher is a small pool of workers that write pending frames to
// WebSocket connections, and answers to waiting long-polls, without
// blocking. A broadcast to ten thousand subscribers then costs ten
// thousand write calls on a few goroutines, instead of ten thousand
// goroutines woken or started.
type flusher struct {
	q        chan flushable
	stop     chan struct{}
	stopOnce sync.Once
	done     chan struct{}
}

// flushable is a connection with something to write: a wsClient or a
// pollConn. flush must not block; scratch and w are the worker's own.
type flushable interface {
	flush(scratch *net.Buffers, w *rawWriter)
}

func newFlusher() *flusher {
	f := &flusher{q: make(chan flushable, 1<<16), stop: make(chan struct{}), done: make(chan struct{})}
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

// submit queues c for a flush; false if the queue is full (the caller
// then writes another way). It never blocks: it runs under locks.
func (f *flusher) submit(c flushable) bool {
	select {
	case f.q <- c:
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
		case c := <-f.q:
			c.flush(&scratch, &w)
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
