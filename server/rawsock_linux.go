//go:build linux

package server

import (
	"net"
	"syscall"

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
	var peek [1]byte
	var perr error
	err := raw.Read(func(fd uintptr) bool {
		n, _, err := syscall.Recvfrom(int(fd), peek[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		switch {
		case err == syscall.EAGAIN:
			return false // nothing yet: wait for the poller
		case err == syscall.EINTR:
			return false
		case err != nil:
			perr = err
		case n == 0:
			perr = net.ErrClosed // EOF
		}
		return true
	})
	if err != nil {
		return err
	}
	return perr
}

// tryWrite writes bufs with one non-blocking write(v) and returns how many
// bytes went out; a full socket is not an error (n is then short).
func tryWrite(raw syscall.RawConn, bufs net.Buffers) (int, error) {
	if raw == nil || len(bufs) > 512 {
		return 0, nil // let writeLoop do it
	}
	var n int
	var werr error
	err := raw.Write(func(fd uintptr) bool {
		for {
			if len(bufs) == 1 {
				n, werr = syscall.Write(int(fd), bufs[0])
			} else {
				n, werr = unix.Writev(int(fd), bufs)
			}
			if werr != syscall.EINTR {
				return true // never wait: a full socket goes to writeLoop
			}
		}
	})
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
