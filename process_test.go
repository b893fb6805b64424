package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Some tests measure an instance's own CPU, which needs the instance in a
// process of its own: the test binary runs itself as the server when
// WALL_TEST_SERVE holds run's arguments (a JSON array).

func TestMain(m *testing.M) {
	if args := os.Getenv("WALL_TEST_SERVE"); args != "" {
		os.Exit(serveForTest(args))
	}
	os.Exit(m.Run())
}

// serveForTest runs the server as main does, and prints "READY <addr>" on
// stdout once it listens.
func serveForTest(args string) int {
	var a []string
	if err := json.Unmarshal([]byte(args), &a); err != nil {
		fmt.Fprintln(os.Stderr, "WALL_TEST_SERVE:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ready := make(chan string, 1)
	errc := make(chan error, 1)
	go func() { errc <- run(ctx, a, func(string) string { return "" }, os.Stderr, ready) }()
	select {
	case addr := <-ready:
		fmt.Println("READY", addr)
	case err := <-errc:
		fmt.Fprintln(os.Stderr, "run:", err)
		return 1
	}
	if err := <-errc; err != nil {
		fmt.Fprintln(os.Stderr, "run:", err)
		return 1
	}
	return 0
}

// serverProcess is an instance running in a child process.
type serverProcess struct {
	base string
	pid  int
}

// startProcess starts an instance in a child process on a free loopback
// port with args, and stops it (SIGTERM) at cleanup.
func startProcess(t *testing.T, args ...string) *serverProcess {
	t.Helper()
	// -post-rate 0: every test client posts from one address.
	a, _ := json.Marshal(append([]string{"-addr", "127.0.0.1:0", "-log-level", "warn", "-post-rate", "0"}, args...))
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "WALL_TEST_SERVE="+string(a))
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var logs lockedWriter
	var buf strings.Builder
	logs.w = &buf
	cmd.Stderr = &logs
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			default:
			}
		}
		_ = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			logs.mu.Lock()
			t.Logf("log of the instance process %d:\n%s", cmd.Process.Pid, buf.String())
			logs.mu.Unlock()
		}
	})
	select {
	case l := <-lines:
		addr, ok := strings.CutPrefix(l, "READY ")
		if !ok {
			t.Fatalf("instance process said %q", l)
		}
		return &serverProcess{base: "http://" + addr, pid: cmd.Process.Pid}
	case <-exited:
		t.Fatalf("instance process exited at start: %s", buf.String())
	case <-time.After(20 * time.Second):
		t.Fatal("instance process did not start")
	}
	return nil
}

// cpu returns the CPU time the process has used (user + system), from
// /proc/<pid>/stat.
func (p *serverProcess) cpu(t *testing.T) time.Duration {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(p.pid) + "/stat")
	if err != nil {
		t.Fatal(err)
	}
	// Fields after the command name (which may hold spaces) in ")".
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	const ticks = 100 // USER_HZ on Linux
	return time.Duration(utime+stime) * time.Second / ticks
}
