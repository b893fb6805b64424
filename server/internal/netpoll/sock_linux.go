//go:build linux

package netpoll

import (
	"io"
	"net"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Socket is a connection's descriptor, for I/O that never waits. The zero
// Socket is no socket: every call on it says so (see each method).
type Socket struct {
	raw syscall.RawConn
	fd  int
}

// NewSocket returns c's Socket, or the zero Socket when c is not a socket
// (a net.Pipe in tests, a TLS connection): callers then fall back to
// ordinary blocking I/O on c.
func NewSocket(c net.Conn) Socket {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return Socket{}
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return Socket{}
	}
	s := Socket{raw: raw, fd: -1}
	raw.Control(func(fd uintptr) { s.fd = int(fd) })
	if s.fd < 0 {
		return Socket{}
	}
	return s
}

// Valid reports whether s is a socket.
func (s Socket) Valid() bool { return s.raw != nil }

// FD returns the descriptor, for a Poller.
func (s Socket) FD() int { return s.fd }

// WaitReadable parks until the socket has data (or EOF, or an error, or
// its read deadline passes) without reading any of it, so an idle
// connection holds no buffer and a shallow stack. A MSG_PEEK probe runs
// before each wait because the runtime's poller is edge-triggered: data
// that arrived earlier would not wake it again. On no socket it returns
// nil at once: the caller's read then blocks instead.
func (s Socket) WaitReadable() error {
	if s.raw == nil {
		return nil
	}
	var perr error
	err := s.raw.Read(func(fd uintptr) bool {
		switch err := peek(int(fd)); err {
		case syscall.EAGAIN:
			return false // nothing yet: wait for the poller
		case nil:
		case io.EOF:
			perr = net.ErrClosed
		default:
			perr = err
		}
		return true
	})
	if err != nil {
		return err
	}
	return perr
}

// Peek reports whether the socket has bytes to read (nil), none yet
// (syscall.EAGAIN), or hung up (io.EOF, or its error), without reading
// them or waiting. The caller must hold the connection open.
func (s Socket) Peek() error { return peek(s.fd) }

func peek(fd int) error {
	var b [1]byte
	for {
		r, _, e := syscall.RawSyscall6(syscall.SYS_RECVFROM, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), 1,
			syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
		switch {
		case e == syscall.EINTR:
			continue
		case e != 0:
			return e
		case r == 0:
			return io.EOF
		}
		return nil
	}
}

// ReadNow reads what the socket has into b: n > 0, or syscall.EAGAIN when
// it has nothing, or io.EOF, or its error. The caller must hold the
// connection open.
func (s Socket) ReadNow(b []byte) (int, error) {
	for {
		n, err := rawRead(uintptr(s.fd), b)
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

// WriteNow writes as much of b as the socket takes; a full socket is not
// an error (n is then short). The caller must hold the connection open.
func (s Socket) WriteNow(b []byte) (int, error) {
	for {
		n, err := rawWrite(uintptr(s.fd), b)
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

// Writer does non-blocking write(v)s through a socket's RawConn, safe
// against a concurrent Close. Its callback is made once, so a goroutine
// that keeps one (a flusher worker) writes without allocating.
type Writer struct {
	bufs net.Buffers
	n    int
	err  error
	fn   func(fd uintptr) bool
	iov  []unix.Iovec
}

// Write writes bufs with one non-blocking write(v) and returns how many
// bytes went out; a full socket is not an error (n is then short). On no
// socket, or for more buffers than one writev takes, it writes nothing:
// the caller's blocking path does.
func (w *Writer) Write(s Socket, bufs net.Buffers) (int, error) {
	if s.raw == nil || len(bufs) > 512 {
		return 0, nil
	}
	if w.fn == nil {
		w.fn = w.writeFD
	}
	w.bufs, w.n, w.err = bufs, 0, nil
	err := s.raw.Write(w.fn)
	n, werr := w.n, w.err
	w.bufs = nil
	if n < 0 {
		n = 0
	}
	if werr == syscall.EAGAIN {
		werr = nil
	}
	if err != nil {
		return n, err
	}
	return n, werr
}

func (w *Writer) writeFD(fd uintptr) bool {
	for {
		w.n, w.err = rawWritev(fd, w.bufs, &w.iov)
		if w.err != syscall.EINTR {
			return true // never wait: a full socket goes to the blocking path
		}
	}
}

// TryWrite is Writer.Write for occasional writers.
func TryWrite(s Socket, bufs net.Buffers) (int, error) {
	var w Writer
	return w.Write(s, bufs)
}

// rawWritev is write(2) or writev(2) on a non-blocking socket, made with
// RawSyscall: such a call returns in microseconds, so the runtime's
// syscall bookkeeping (and sysmon handing the P to another thread while
// it runs) costs more than it saves. iov is the caller's scratch.
func rawWritev(fd uintptr, bufs net.Buffers, iov *[]unix.Iovec) (int, error) {
	if len(bufs) == 1 {
		return rawWrite(fd, bufs[0])
	}
	v := (*iov)[:0]
	for _, b := range bufs {
		if len(b) > 0 {
			v = append(v, unix.Iovec{Base: &b[0], Len: uint64(len(b))})
		}
	}
	*iov = v
	if len(v) == 0 {
		return 0, nil
	}
	r, _, e := syscall.RawSyscall(syscall.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&v[0])), uintptr(len(v)))
	clear(v) // let go of the buffers
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}

// rawWrite is write(2) made with RawSyscall, for the same reason as
// rawWritev.
func rawWrite(fd uintptr, b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	r, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}

// rawRead is a non-blocking read(2) made with RawSyscall, for the same
// reason as rawWritev.
func rawRead(fd uintptr, b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	r, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}
