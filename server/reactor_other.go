//go:build !linux

package server

import "errors"

// reactor is Linux's (epoll): elsewhere waiting polls keep a goroutine.
type reactor struct{}

func newReactor() (*reactor, error) { return nil, errors.ErrUnsupported }
func (*reactor) add(*pollConn) bool { return false }
func (*reactor) remove(*pollConn)   {}
func (*reactor) close()             {}

// The reactor's I/O: never called without a reactor.
func peekNow(int) error                 { return errors.ErrUnsupported }
func readNow(int, []byte) (int, error)  { return 0, errors.ErrUnsupported }
func writeNow(int, []byte) (int, error) { return 0, errors.ErrUnsupported }
