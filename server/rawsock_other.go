//go:build !linux

package server

import (
	"net"
	"syscall"
)

// waitReadable returns at once off Linux: readPump's read then blocks
// with its buffer (more memory per idle connection, same behaviour).
func waitReadable(syscall.RawConn) error { return nil }

// rawWriter writes nothing off Linux: every flush goes to writeLoop.
type rawWriter struct{}

func (*rawWriter) write(syscall.RawConn, net.Buffers) (int, error) { return 0, nil }

// tryWrite writes nothing off Linux: every write goes to the blocking path.
func tryWrite(syscall.RawConn, net.Buffers) (int, error) { return 0, nil }
