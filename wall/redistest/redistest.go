// Package redistest runs a real, throw-away redis-server for tests.
//
//	srv := redistest.Start(t)            // skips if redis-server is missing
//	client := srv.Client()               // closed at cleanup
//	srv.Stop(); srv.Start()              // restart on the same port, data lost
//
// The server listens on a free loopback port, keeps nothing on disk
// (--save "" --appendonly no) and is killed by t.Cleanup. Set
// WALL_REQUIRE_INTEGRATION=1 (as CI does) to turn a missing redis-server
// into a test failure instead of a skip.
package redistest

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// startTimeout bounds how long a redis-server may take to answer PING.
const startTimeout = 10 * time.Second

// Server is one redis-server process owned by a test. Its methods are safe
// for concurrent use.
type Server struct {
	t    testing.TB
	bin  string
	dir  string
	port int
	args []string // extra redis-server arguments (a cluster node's)

	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{} // closed when cmd has been waited for
	clients []*redis.Client
}

// Start starts a redis-server on a free loopback port and registers its
// shutdown with t.Cleanup. It skips the test when redis-server is not
// installed, unless WALL_REQUIRE_INTEGRATION=1, where it fails.
func Start(t testing.TB) *Server {
	t.Helper()
	return startServer(t, lookServer(t), nil)
}

// lookServer returns the path of redis-server, or skips (or fails, with
// WALL_REQUIRE_INTEGRATION=1) the test.
func lookServer(t testing.TB) string {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("WALL_REQUIRE_INTEGRATION") == "1" {
			t.Fatalf("redistest: redis-server not found in PATH and WALL_REQUIRE_INTEGRATION=1 (install it: apt-get install redis-server)")
		}
		t.Skip("redistest: redis-server not installed; set WALL_REQUIRE_INTEGRATION=1 to fail instead")
	}
	return bin
}

// startServer starts bin on a free loopback port; args(port) returns the
// extra arguments, which may name more free ports.
func startServer(t testing.TB, bin string, args func(port int) ([]string, error)) *Server {
	t.Helper()
	s := &Server{t: t, bin: bin, dir: t.TempDir()}
	t.Cleanup(s.cleanup)
	var lastErr error
	for range 3 { // a free port may be taken between probing and binding
		if s.port, lastErr = freePort(); lastErr != nil {
			continue
		}
		if args != nil {
			if s.args, lastErr = args(s.port); lastErr != nil {
				continue
			}
		}
		if lastErr = s.start(); lastErr == nil {
			return s
		}
	}
	t.Fatalf("redistest: cannot start redis-server: %v", lastErr)
	return nil
}

// Addr returns host:port, for redis.Options.Addr.
func (s *Server) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.port) }

// URL returns a redis:// URL, as given to the server's -redis flag.
func (s *Server) URL() string { return "redis://" + s.Addr() + "/0" }

// Client returns a new client of the server; it is closed at cleanup. Its
// timeouts are short so that tests against a stopped server fail fast.
func (s *Server) Client() *redis.Client {
	c := redis.NewClient(&redis.Options{
		Addr:         s.Addr(),
		DialTimeout:  time.Second,
		ReadTimeout:  2 * time.Second,
		WriteTimeout: 2 * time.Second,
		MaxRetries:   1,
	})
	s.mu.Lock()
	s.clients = append(s.clients, c)
	s.mu.Unlock()
	return c
}

// Kill kills the server with SIGKILL, as a crash would, and waits for it
// to exit. A cluster node keeps its nodes.conf: Start brings it back into
// the cluster (as a replica, if it was failed over meanwhile), empty.
func (s *Server) Kill() {
	s.t.Helper()
	s.signal(syscall.SIGKILL)
}

// Running reports whether the server process is up.
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cmd != nil
}

// Stop shuts the server down (SIGTERM) and waits for it to exit. Nothing
// is persisted: a later Start comes back empty.
func (s *Server) Stop() {
	s.t.Helper()
	s.signal(syscall.SIGTERM)
}

// Start starts a stopped server again on the same port, empty, and waits
// until it answers PING. It is a no-op if the server is running.
func (s *Server) Start() {
	s.t.Helper()
	s.mu.Lock()
	running := s.cmd != nil
	s.mu.Unlock()
	if running {
		return
	}
	if err := s.start(); err != nil {
		s.t.Fatalf("redistest: restart on port %d: %v", s.port, err)
	}
}

func (s *Server) start() error {
	logFile := filepath.Join(s.dir, "redis.log")
	cmd := exec.Command(s.bin,
		"--port", strconv.Itoa(s.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", s.dir,
		"--logfile", logFile, "--daemonize", "no")
	cmd.Args = append(cmd.Args, s.args...)
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }() // ends with the process
	s.mu.Lock()
	s.cmd, s.exited = cmd, exited
	s.mu.Unlock()

	deadline := time.Now().Add(startTimeout)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			s.mu.Lock()
			s.cmd = nil
			s.mu.Unlock()
			return fmt.Errorf("redis-server exited at start: %s", tail(logFile))
		default:
		}
		if ping(s.Addr()) == nil {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	s.signal(syscall.SIGKILL)
	return fmt.Errorf("redis-server did not answer PING within %v: %s", startTimeout, tail(logFile))
}

// signal sends sig to a running server and waits for it to exit.
func (s *Server) signal(sig syscall.Signal) {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
		_ = cmd.Process.Kill()
		<-exited
	}
}

func (s *Server) cleanup() {
	s.mu.Lock()
	clients := s.clients
	s.clients = nil
	s.mu.Unlock()
	for _, c := range clients {
		_ = c.Close()
	}
	s.signal(syscall.SIGKILL)
}

// ping checks that a server answers PING, with a raw connection so that no
// client retry policy gets in the way.
func ping(addr string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(500 * time.Millisecond))
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "+PONG") {
		return fmt.Errorf("unexpected reply %q", line)
	}
	return nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func tail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return strings.TrimSpace(string(b))
}

// StartReplica starts a replica of master on a free loopback port and
// waits until both see it in sync (the master counts it for WAIT); it is
// killed at cleanup like master.
func StartReplica(t testing.TB, master *Server) *Server {
	t.Helper()
	// The master would wait 5 s for more replicas before a diskless sync.
	if err := master.Client().ConfigSet(context.Background(), "repl-diskless-sync-delay", "0").Err(); err != nil {
		t.Fatalf("redistest: %v", err)
	}
	s := startServer(t, lookServer(t), func(int) ([]string, error) {
		return []string{"--replicaof", "127.0.0.1", strconv.Itoa(master.port)}, nil
	})
	c, mc := s.Client(), master.Client()
	deadline := time.Now().Add(startTimeout)
	for {
		info, err := c.Info(context.Background(), "replication").Result()
		minfo, merr := mc.Info(context.Background(), "replication").Result()
		if err == nil && merr == nil && strings.Contains(info, "master_link_status:up") &&
			strings.Contains(minfo, "port="+strconv.Itoa(s.port)+",state=online") {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("redistest: replica of %s not in sync: %v %s", master.Addr(), err, info)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
