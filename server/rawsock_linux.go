//go:build linux

package server

import (
	"io"
	"net"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// waitReadable parks until the socket has data (or EOF, or an error, or its
// read deadline passes) without reading any of it, so an idle connection
// holds no buffer and a shallow stack. A MSG_PEEK probe runs before each
// wait because the runtime's poller is edge-triggered: data that arrived
// earlier would not wake it again.
func waitReadable(raw syscall.RawConn) error {
	if raw == nil {
		return nil // not a socket: the caller's read blocks instead
	}
	var perr error
	err := raw.Read(func(fd uintptr) bool {
		switch err := peekNow(int(fd)); err {
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

// rawWriter does non-blocking write(v)s on sockets. Its callback for
// RawConn.Write is made once, so a goroutine that keeps one (a flusher
// worker) writes without allocating.
type rawWriter struct {
	bufs net.Buffers
	n    int
	err  error
	fn   func(fd uintptr) bool
	iov  []unix.Iovec
}

// write writes bufs with one non-blocking write(v) and returns how many
// bytes went out; a full socket is not an error (n is then short).
func (w *rawWriter) write(raw syscall.RawConn, bufs net.Buffers) (int, error) {
	if raw == nil || len(bufs) > 512 {
		return 0, nil // let writeLoop do it
	}
	if w.fn == nil {
		w.fn = w.writeFD
	}
	w.bufs, w.n, w.err = bufs, 0, nil
	err := raw.Write(w.fn)
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

func (w *rawWriter) writeFD(fd uintptr) bool {
	for {
		w.n, w.err = rawWritev(fd, w.bufs, &w.iov)
		if w.err != syscall.EINTR {
			return true // never wait: a full socket goes to writeLoop
		}
	}
}

// rawWritev is write(2) or writev(2) on a non-blocking socket, made with
// RawSyscall: such a call returns in microseconds, so the runtime's
// syscall bookkeeping (and sysmon handing the P to another thread while
// it runs) costs more than it saves. iov is the caller's scratch.
func rawWritev(fd uintptr, bufs net.Buffers, iov *[]unix.Iovec) (int, error) {
	var r uintptr
	var e syscall.Errno
	if len(bufs) == 1 {
		return rawWrite(fd, bufs[0])
	} else {
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
		r, _, e = syscall.RawSyscall(syscall.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&v[0])), uintptr(len(v)))
		clear(v) // let go of the buffers
	}
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

// peekNow reports whether the socket has bytes to read (nil), none yet
// (EAGAIN), or hung up (io.EOF, or its error), without reading them or
// waiting.
func peekNow(fd int) error {
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

// tryWrite is rawWriter.write for occasional writers.
func tryWrite(raw syscall.RawConn, bufs net.Buffers) (int, error) {
	var w rawWriter
	return w.write(raw, bufs)
}
