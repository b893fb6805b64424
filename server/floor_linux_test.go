//go:build linux

package server

import (
	"io"
	"net"
	"runtime"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// BenchmarkLoopbackWriteFloor measures what no WebSocket delivery can
// avoid: one non-blocking write(2) of a 290-byte frame (a 100-byte post's
// frame) to one of 1000 loopback TCP sockets, whose readers drain them on
// other threads. It reports the writing thread's CPU per write
// (RUSAGE_THREAD), which on loopback includes the receiver's TCP input:
// the sender's softirq runs it. Compare with the server's CPU per
// delivery in the README's fan-out figures.
func BenchmarkLoopbackWriteFloor(b *testing.B) {
	const n = 1000
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	raws := make([]syscall.RawConn, 0, n)
	for range n {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		s, err := ln.Accept()
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		defer s.Close()
		go io.Copy(io.Discard, c) // ends when s closes
		raw, _ := s.(*net.TCPConn).SyscallConn()
		raws = append(raws, raw)
	}
	frame := [][]byte{make([]byte, 290)}
	var iov []unix.Iovec
	var full int
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var before, after unix.Rusage
	unix.Getrusage(unix.RUSAGE_THREAD, &before)
	i := 0
	for b.Loop() {
		raws[i%n].Write(func(fd uintptr) bool {
			if _, err := rawWritev(fd, frame, &iov); err == syscall.EAGAIN {
				full++
			}
			return true
		})
		i++
	}
	unix.Getrusage(unix.RUSAGE_THREAD, &after)
	cpu := float64(unix.TimevalToNsec(after.Utime)+unix.TimevalToNsec(after.Stime)-
		unix.TimevalToNsec(before.Utime)-unix.TimevalToNsec(before.Stime)) / float64(i-full)
	b.ReportMetric(cpu, "cpu-ns/write")
	b.ReportMetric(float64(full)/float64(i), "full/op")
}
