//go:build !linux

package server

import (
	"net"
	"syscall"
)

// waitReadable returns at once off Linux: readPump's read then blocks
// with its buffer (more memory per idle connection, same behaviour).
func waitReadable(syscall.RawConn) error { return nil }

// tryWrite writes nothing off Linux: every flush goes to writeLoop.
func tryWrite(syscall.RawConn, net.Buffers) (int, error) { return 0, nil }
