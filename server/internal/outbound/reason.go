package outbound

import "sync/atomic"

// Reason is why a session ended. The first reason a session meets is the
// one it ends with and is counted under.
type Reason uint8

// Reasons a session ends with.
const (
	Live          Reason = iota // not ended
	PeerClosed                  // the peer closed the connection or hung up
	SlowReader                  // MaxQueue messages queued behind a full socket
	ControlFlood                // MaxNotes frames that are not messages queued (pongs, errors)
	WriteError                  // a write failed
	WriteTimeout                // a blocking write did not finish within WriteWait
	ReadError                   // a read failed
	PongTimeout                 // the peer stayed silent past its read deadline
	ProtocolError               // the peer broke the transport's protocol or a limit
	Shutdown                    // the server is shutting down
	InternalError               // a panic in the connection's code
	TokenExpired                // the token the connection was admitted with expired (exp plus the leeway)
	numReasons
)

var reasonNames = [numReasons]string{
	Live:          "live",
	PeerClosed:    "peer_closed",
	SlowReader:    "slow_reader",
	ControlFlood:  "control_flood",
	WriteError:    "write_error",
	WriteTimeout:  "write_timeout",
	ReadError:     "read_error",
	PongTimeout:   "pong_timeout",
	ProtocolError: "protocol_error",
	Shutdown:      "shutdown",
	InternalError: "internal_error",
	TokenExpired:  "token_expired",
}

// String returns the reason's name, as used in metric labels.
func (r Reason) String() string {
	if r < numReasons {
		return reasonNames[r]
	}
	return "unknown"
}

// Counters count ended sessions per Reason. The zero value is ready.
type Counters struct {
	n [numReasons]atomic.Int64
}

// Add counts one session ended for r.
func (c *Counters) Add(r Reason) {
	if r < numReasons {
		c.n[r].Add(1)
	}
}

// Load returns how many sessions ended for r.
func (c *Counters) Load(r Reason) int64 {
	if r < numReasons {
		return c.n[r].Load()
	}
	return 0
}

// Each calls f for every reason a session can end with (all but Live), in
// order.
func (c *Counters) Each(f func(r Reason, n int64)) {
	for r := Live + 1; r < numReasons; r++ {
		f(r, c.n[r].Load())
	}
}
