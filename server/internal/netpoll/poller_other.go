//go:build !linux

package netpoll

import "errors"

// Handler is told that a watched socket became readable.
type Handler interface{ Readable() }

// Poller is Linux's (epoll): elsewhere waiting connections keep a goroutine.
type Poller struct{}

// NewPoller fails off Linux.
func NewPoller(func(v any, stack []byte)) (*Poller, error) { return nil, errors.ErrUnsupported }

// Add watches nothing off Linux.
func (*Poller) Add(Socket, Handler) bool { return false }

// Remove does nothing off Linux.
func (*Poller) Remove(Socket, Handler) {}

// Close does nothing off Linux.
func (*Poller) Close() {}
