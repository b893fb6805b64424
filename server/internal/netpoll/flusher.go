package netpoll

import (
	"net"
	"runtime"
	"runtime/debug"
	"sync"
)

// Flusher is a small pool of workers that write pending bytes to many
// connections without blocking. A broadcast to ten thousand subscribers
// then costs ten thousand write calls on a few goroutines, instead of ten
// thousand goroutines woken or started.
type Flusher struct {
	onPanic  func(v any, stack []byte)
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

// NewFlusher starts GOMAXPROCS workers; they end in Close. A Job whose
// Flush panics is reported to onPanic with its stack, and the worker goes
// on with the next job.
func NewFlusher(onPanic func(v any, stack []byte)) *Flusher {
	f := &Flusher{onPanic: onPanic, q: make(chan Job, QueueLen), stop: make(chan struct{}), done: make(chan struct{})}
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
			f.flush(j, &scratch, &w)
		case <-f.stop:
			return
		}
	}
}

// flush runs one job, recovering its panic: one connection's bug must not
// stop a worker that every connection relies on.
func (f *Flusher) flush(j Job, scratch *net.Buffers, w *Writer) {
	defer func() {
		if v := recover(); v != nil {
			f.onPanic(v, debug.Stack())
		}
	}()
	j.Flush(scratch, w)
}

// Close stops the workers; call it once no connection is left to submit.
func (f *Flusher) Close() {
	f.stopOnce.Do(func() { close(f.stop) })
	<-f.done
}
