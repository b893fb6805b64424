//go:build linux

package server

import (
	"io"
	"os"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// reactor watches the sockets of the engine's keep-alive connections on
// an epoll instance of its own, so that a connection waiting for messages
// or for its next request needs no goroutine: one goroutine (loop) serves
// the requests as they come, a batch of sockets per wake-up, and a flusher
// worker answers the polls. Per delivery this saves the park and wake-up
// of a goroutine in the runtime's poller and the read that finds nothing,
// which were a fifth of the engine's CPU.
//
// The epoll descriptor itself sits in the runtime's poller: loop parks
// on it like any socket read, and no thread is held in epoll_wait.
// Sockets are registered edge-triggered for the whole time the engine
// holds them; an event only marks its connection ready (pollConn.ready)
// and serves it if it waits in the reactor (see pollConn.state), so an
// event that comes while someone else has the connection is seen by that
// owner when it parks the connection again.
type reactor struct {
	epfd int
	file *os.File // epfd, in the runtime's poller
	raw  syscall.RawConn

	mu    sync.Mutex
	conns map[int32]*pollConn // by descriptor

	done chan struct{} // closed when loop has returned
}

// newReactor starts a reactor; its goroutine ends after close.
func newReactor() (*reactor, error) {
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
	r := &reactor{epfd: fd, file: f, raw: raw, conns: make(map[int32]*pollConn), done: make(chan struct{})}
	go r.loop()
	return r, nil
}

// add watches pc's socket until remove; false if it cannot be watched.
func (r *reactor) add(pc *pollConn) bool {
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLET, Fd: int32(pc.fd)}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := unix.EpollCtl(r.epfd, unix.EPOLL_CTL_ADD, pc.fd, &ev); err != nil {
		return false
	}
	r.conns[int32(pc.fd)] = pc
	return true
}

// remove stops watching pc's socket; it must come before the socket is
// closed or handed back, since its descriptor may then be reused.
func (r *reactor) remove(pc *pollConn) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.conns[int32(pc.fd)] == pc {
		delete(r.conns, int32(pc.fd))
		unix.EpollCtl(r.epfd, unix.EPOLL_CTL_DEL, pc.fd, nil)
	}
}

// close ends loop once no connection is left (Server.Wait).
func (r *reactor) close() {
	r.file.Close()
	<-r.done
}

// loop is the reactor's goroutine: it takes the ready sockets a batch at
// a time and serves each, parking on the epoll descriptor when there are
// none, until close.
func (r *reactor) loop() {
	defer close(r.done)
	events := make([]unix.EpollEvent, 256)
	batch := make([]*pollConn, 0, len(events))
	r.raw.Read(func(fd uintptr) bool {
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
			r.mu.Lock()
			for _, ev := range events[:n] {
				if pc := r.conns[ev.Fd]; pc != nil {
					batch = append(batch, pc)
				}
			}
			r.mu.Unlock()
			for _, pc := range batch {
				pc.readable()
			}
			clear(batch)
			batch = batch[:0]
		}
	})
}

// epollWaitNow is epoll_wait(2) with no timeout, made with RawSyscall: a
// P in a syscall keeps sysmon polling every 20 µs (it retakes it), which
// cost a tenth of the engine's CPU.
func epollWaitNow(epfd int, events []unix.EpollEvent) (int, error) {
	r, _, e := syscall.RawSyscall6(syscall.SYS_EPOLL_PWAIT, uintptr(epfd), uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)), 0, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}

// The reactor's I/O on a connection it serves: non-blocking, made with
// RawSyscall (see rawWritev), on the descriptor of a socket that cannot
// be closed meanwhile (its pollConn is the caller's).

// readNow reads what the socket has into b: n > 0, or EAGAIN when it has
// nothing, or io.EOF, or its error.
func readNow(fd int, b []byte) (int, error) {
	for {
		n, err := rawRead(uintptr(fd), b)
		switch {
		case err == syscall.EINTR:
			continue
		case err != nil:
			return 0, err
		case n == 0:
			return 0, io.EOF
		}
		return n, nil
	}
}

// writeNow writes as much of b as the socket takes.
func writeNow(fd int, b []byte) (int, error) {
	for {
		n, err := rawWrite(uintptr(fd), b)
		switch err {
		case nil:
			return n, nil
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return 0, nil
		}
		return 0, err
	}
}
