//go:build !linux

package netpoll

import (
	"errors"
	"net"
)

// Socket is Linux's: elsewhere every connection takes the blocking paths
// (more memory per idle connection, same behaviour).
type Socket struct{}

// NewSocket returns the zero Socket off Linux.
func NewSocket(net.Conn) Socket { return Socket{} }

// Valid is false off Linux.
func (Socket) Valid() bool { return false }

// FD is -1 off Linux.
func (Socket) FD() int { return -1 }

// WaitReadable returns at once off Linux: the caller's read blocks.
func (Socket) WaitReadable() error { return nil }

// Peek is never called without a Poller.
func (Socket) Peek() error { return errors.ErrUnsupported }

// ReadNow is never called without a Poller.
func (Socket) ReadNow([]byte) (int, error) { return 0, errors.ErrUnsupported }

// WriteNow is never called without a Poller.
func (Socket) WriteNow([]byte) (int, error) { return 0, errors.ErrUnsupported }

// Writer writes nothing off Linux: every flush takes the blocking path.
type Writer struct{}

// Write writes nothing off Linux.
func (*Writer) Write(Socket, net.Buffers) (int, error) { return 0, nil }

// TryWrite writes nothing off Linux.
func TryWrite(Socket, net.Buffers) (int, error) { return 0, nil }
