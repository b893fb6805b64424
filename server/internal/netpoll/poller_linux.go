//go:build linux

package netpoll

import (
	"os"
	"runtime/debug"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Handler is told that a watched socket became readable (or hung up).
type Handler interface {
	// Readable runs on the Poller's goroutine: it must not block.
	Readable()
}

// Poller watches sockets on an epoll instance of its own, so that a
// connection waiting for its peer needs no goroutine: one goroutine (loop)
// calls each ready socket's Handler, a batch of sockets per wake-up. Per
// event this saves the park and wake-up of a goroutine in the runtime's
// poller and the read that finds nothing.
//
// The epoll descriptor itself sits in the runtime's poller: loop parks on
// it like any socket read, and no thread is held in epoll_wait. Sockets
// are registered edge-triggered for as long as they are watched, so an
// event is delivered once per arrival: a Handler that is busy when its
// event comes must remember it (the long-poll engine keeps a ready flag).
type Poller struct {
	epfd int
	file *os.File // epfd, in the runtime's poller
	raw  syscall.RawConn

	mu    sync.Mutex
	conns map[int32]Handler // by descriptor

	onPanic func(v any, stack []byte)

	done chan struct{} // closed when loop has returned
}

// NewPoller starts a Poller; its goroutine ends after Close. A Handler
// whose Readable panics is reported to onPanic with its stack, and the
// Poller goes on with the other sockets.
func NewPoller(onPanic func(v any, stack []byte)) (*Poller, error) {
	fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, os.NewSyscallError("fcntl", err)
	}
	f := os.NewFile(uintptr(fd), "epoll") // non-blocking: the runtime polls it
	raw, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, err
	}
	p := &Poller{epfd: fd, file: f, raw: raw, conns: make(map[int32]Handler), onPanic: onPanic, done: make(chan struct{})}
	go p.loop()
	return p, nil
}

// Add watches s for h until Remove; false if it cannot be watched.
func (p *Poller) Add(s Socket, h Handler) bool {
	if !s.Valid() {
		return false
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLET, Fd: int32(s.fd)}
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, s.fd, &ev); err != nil {
		return false
	}
	p.conns[int32(s.fd)] = h
	return true
}

// Remove stops watching s for h; it must come before the socket is closed
// or handed on, since its descriptor may then be reused. Once it returns,
// h's Readable is not called again (unless it is running now on the
// Poller's goroutine: callers that Remove from elsewhere own h already).
func (p *Poller) Remove(s Socket, h Handler) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conns[int32(s.fd)] == h {
		delete(p.conns, int32(s.fd))
		unix.EpollCtl(p.epfd, unix.EPOLL_CTL_DEL, s.fd, nil)
	}
}

// Close ends the Poller's goroutine; call it once nothing is watched.
func (p *Poller) Close() {
	p.file.Close()
	<-p.done
}

// loop is the Poller's goroutine: it takes the ready sockets a batch at a
// time and calls their Handlers, parking on the epoll descriptor when
// there are none, until Close.
func (p *Poller) loop() {
	defer close(p.done)
	events := make([]unix.EpollEvent, 256)
	batch := make([]Handler, 0, len(events))
	p.raw.Read(func(fd uintptr) bool {
		for {
			n, err := epollWaitNow(int(fd), events)
			switch {
			case err == syscall.EINTR:
				continue
			case err != nil:
				return true // closed
			case n == 0:
				return false // nothing ready: park on the descriptor
			}
			p.mu.Lock()
			for _, ev := range events[:n] {
				if h := p.conns[ev.Fd]; h != nil {
					batch = append(batch, h)
				}
			}
			p.mu.Unlock()
			for _, h := range batch {
				p.readable(h)
			}
			clear(batch)
			batch = batch[:0]
		}
	})
}

// readable calls h, recovering its panic: the Poller's goroutine serves
// every watched socket.
func (p *Poller) readable(h Handler) {
	defer func() {
		if v := recover(); v != nil {
			p.onPanic(v, debug.Stack())
		}
	}()
	h.Readable()
}

// epollWaitNow is epoll_wait(2) with no timeout, made with RawSyscall: a
// P in a syscall keeps sysmon polling every 20 µs (it retakes it).
func epollWaitNow(epfd int, events []unix.EpollEvent) (int, error) {
	r, _, e := syscall.RawSyscall6(syscall.SYS_EPOLL_PWAIT, uintptr(epfd), uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)), 0, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}
