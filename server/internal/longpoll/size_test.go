package longpoll

import (
	"testing"
	"unsafe"
)

// TestPollConnSize: every pending poll holds one pollConn, so a field
// that pushes it into the next allocation size class (352 bytes) costs
// every waiting client. Reorder or shrink fields before raising this.
func TestPollConnSize(t *testing.T) {
	if n := unsafe.Sizeof(pollConn{}); n > 320 {
		t.Fatalf("pollConn is %d bytes, over the 320-byte size class", n)
	}
}
