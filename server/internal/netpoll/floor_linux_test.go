//go:build linux

package netpoll

import (
	"io"
	"net"
	"runtime"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The floor benchmarks measure what no delivery can avoid, with no wall
// code: the kernel's work for the syscalls a delivery needs, on the
// writing thread's CPU (RUSAGE_THREAD). On loopback that includes the
// receiver's TCP input, which the sender's softirq runs. Compare them
// with the server's CPU per delivery in the README's fan-out figures.

// loopbackPairs connects n loopback TCP pairs and returns the server
// sides' descriptors; client runs on each client side in its own
// goroutine until the pair closes at the end of the benchmark.
func loopbackPairs(b *testing.B, n int, client func(net.Conn)) []syscall.RawConn {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
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
		b.Cleanup(func() { c.Close(); s.Close() })
		go client(c) // ends when the pair closes
		raw, _ := s.(*net.TCPConn).SyscallConn()
		raws = append(raws, raw)
	}
	return raws
}

// threadCPU is the calling thread's user and system CPU time.
func threadCPU() time.Duration {
	var u unix.Rusage
	unix.Getrusage(unix.RUSAGE_THREAD, &u)
	return time.Duration(unix.TimevalToNsec(u.Utime) + unix.TimevalToNsec(u.Stime))
}

// BenchmarkLoopbackWriteFloor: one WebSocket delivery is one
// non-blocking write(2) of a 290-byte frame (a 100-byte post's frame),
// here to one of 1000 sockets whose readers drain them.
func BenchmarkLoopbackWriteFloor(b *testing.B) {
	raws := loopbackPairs(b, 1000, func(c net.Conn) { io.Copy(io.Discard, c) })
	frame := [][]byte{make([]byte, 290)}
	var iov []unix.Iovec
	var full int
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	before := threadCPU()
	i := 0
	for b.Loop() {
		raws[i%len(raws)].Write(func(fd uintptr) bool {
			if _, err := rawWritev(fd, frame, &iov); err == syscall.EAGAIN {
				full++
			}
			return true
		})
		i++
	}
	b.ReportMetric(float64(threadCPU()-before)/float64(i-full), "cpu-ns/write")
	b.ReportMetric(float64(full)/float64(i), "full/op")
}

// BenchmarkLoopbackPollFloor: one long-poll delivery is the answer's
// write (430 bytes: head and a 100-byte post's JSON) and the read of the
// client's next request (150 bytes, as wallbench's GET re-poll). 1000
// clients each send their request as soon as they have the answer, and
// the rounds come 100 ms apart, as at 10 posts/s: the answer then comes
// long after the request, so the read ACKs at once, as the server's does.
func BenchmarkLoopbackPollFloor(b *testing.B) {
	const answerSize, requestSize = 430, 150
	raws := loopbackPairs(b, 1000, func(c net.Conn) {
		in, req := make([]byte, answerSize), make([]byte, requestSize)
		for {
			if _, err := io.ReadFull(c, in); err != nil {
				return
			}
			if _, err := c.Write(req); err != nil {
				return
			}
		}
	})
	answer := [][]byte{make([]byte, answerSize)}
	var iov []unix.Iovec
	buf := make([]byte, 4096)
	var waits int
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var cpu time.Duration
	done := 0
	for b.Loop() {
		// The loop runs whole rounds; b.N is rounded up to them.
		start := threadCPU()
		for _, raw := range raws {
			raw.Write(func(fd uintptr) bool {
				if n, err := rawWritev(fd, answer, &iov); n != answerSize {
					b.Fatalf("write: %d, %v", n, err)
				}
				return true
			})
		}
		for _, raw := range raws {
			for got := 0; got < requestSize; {
				raw.Read(func(fd uintptr) bool {
					n, err := rawRead(fd, buf[:requestSize-got])
					switch {
					case err == syscall.EAGAIN:
						waits++
						return false // not there yet: the poller waits
					case err != nil || n == 0:
						b.Fatalf("read: %v", err)
					}
					got += n
					return true
				})
			}
		}
		cpu += threadCPU() - start
		done += len(raws)
		b.StopTimer()
		time.Sleep(100 * time.Millisecond)
		b.StartTimer()
	}
	b.ReportMetric(float64(cpu)/float64(done), "cpu-ns/delivery")
	b.ReportMetric(float64(waits)/float64(done), "waits/delivery")
}
