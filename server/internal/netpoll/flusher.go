package netpoll

import (
	"net"
	"runtime"
	"sync"
)

// Flusher is a small pool of workers that write pending bytes to many
// connections without blocking. A broadcast to ten thousand subscribers
// then costs ten thousand write calls on a few goroutines, instead of ten
// thousand goroutines woken or started.
type Flusher struct {
	q        chan Job
	stop     chan struct{}
	stopOnce sync.Once
	done     chan struct{}
}

// Job is a connection with something to write.
type Job interface {
	// Flush writes without blocking; scratch and w are the worker's own.
	// What the socket does not take is left to the job's own goroutine.
	Flush(scratch *net.Buffers, w *Writer)
}

// QueueLen is how many jobs wait for a worker before Submit refuses.
const QueueLen = 1 << 16

// NewFlusher starts GOMAXPROCS workers; they end in Close.
func NewFlusher() *Flusher {
	f := &Flusher{q: make(chan Job, QueueLen), stop: make(chan struct{}), done: make(chan struct{})}
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

// Submit queues j for a flush; false if the queue is full (the caller then
// writes another way). It never blocks: it runs under locks.
func (f *Flusher) Submit(j Job) bool {
	select {
	case f.q <- j:
		return true
	default:
		return false
	}
}

func (f *Flusher) work(exited chan<- struct{}) {
	defer func() { exited <- struct{}{} }()
	var scratch net.Buffers
	var w Writer
	for {
		select {
		case j := <-f.q:
			j.Flush(&scratch, &w)
		case <-f.stop:
			return
		}
	}
}

// Close stops the workers; call it once no connection is left to submit.
func (f *Flusher) Close() {
	f.stopOnce.Do(func() { close(f.stop) })
	<-f.done
}
