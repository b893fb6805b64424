package redistest

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// NodeTimeout is the cluster-node-timeout of a test cluster: a master that
// stops answering is failed over about two to three times this later.
const NodeTimeout = time.Second

// clusterTimeout bounds forming a cluster and waiting for a failover.
const clusterTimeout = 30 * time.Second

// Cluster is a Redis Cluster of real redis-server processes on loopback
// owned by a test: masters that split the 16384 slots evenly, each with
// its replicas. Nothing is persisted but each node's nodes.conf, so a
// killed node started again rejoins (as a replica if it was failed over).
//
//	c := redistest.StartCluster(t, 3, 1) // skips if redis-server is missing
//	client := c.Client()                 // a ClusterClient, closed at cleanup
//	old := c.KillMasterOf("wall:{main}") // SIGKILL the master of that key
//	c.WaitFailover("wall:{main}", old)   // until a replica took its slots
//	c.KillPubSub()                       // CLIENT KILL TYPE pubsub on every node
//
// The nodes run with cluster-require-full-coverage no, so the slots of the
// other masters keep serving while one is failed over.
type Cluster struct {
	t     testing.TB
	nodes []*Server // masters first, then replicas, as started

	mu      sync.Mutex
	clients []*redis.ClusterClient
}

// StartCluster starts masters*(1+replicas) nodes, forms the cluster and
// waits until every slot is served and every replica is in sync. Every
// node is killed at cleanup.
func StartCluster(t testing.TB, masters, replicas int) *Cluster {
	t.Helper()
	if masters < 1 || replicas < 0 {
		t.Fatalf("redistest: StartCluster(%d, %d)", masters, replicas)
	}
	bin := lookServer(t)
	c := &Cluster{t: t}
	t.Cleanup(c.cleanup)
	for range masters * (1 + replicas) {
		c.nodes = append(c.nodes, startServer(t, bin, func(int) ([]string, error) {
			bus, err := freePort()
			if err != nil {
				return nil, err
			}
			return []string{
				"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
				"--cluster-node-timeout", strconv.Itoa(int(NodeTimeout.Milliseconds())),
				"--cluster-port", strconv.Itoa(bus),
				"--cluster-require-full-coverage", "no",
				"--repl-diskless-sync-delay", "0", // replicas in sync at once
			}, nil
		}))
	}
	ctx, cancel := context.WithTimeout(context.Background(), clusterTimeout)
	defer cancel()
	if err := c.form(ctx, masters); err != nil {
		t.Fatalf("redistest: forming the cluster: %v", err)
	}
	return c
}

// form assigns the slots to the first masters nodes, joins every node and
// makes the others replicas, round robin.
func (c *Cluster) form(ctx context.Context, masters int) error {
	for i := range masters {
		lo, hi := i*16384/masters, (i+1)*16384/masters-1
		if err := c.do(ctx, c.nodes[i], "CLUSTER", "ADDSLOTSRANGE", lo, hi); err != nil {
			return err
		}
	}
	for _, n := range c.nodes[1:] {
		if err := c.do(ctx, c.nodes[0], "CLUSTER", "MEET", "127.0.0.1", n.port, n.busPort()); err != nil {
			return err
		}
	}
	ids := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		cl := c.nodeClient(n)
		id, err := cl.Do(ctx, "CLUSTER", "MYID").Text()
		cl.Close()
		if err != nil {
			return err
		}
		ids[i] = id
	}
	// A node can replicate a master only once it knows it.
	if err := c.waitAll(ctx, "every node knows every other", func(cl *redis.Client) (bool, error) {
		nodes, err := cl.ClusterNodes(ctx).Result()
		return strings.Count(nodes, "\n") >= len(c.nodes), err
	}); err != nil {
		return err
	}
	for i, n := range c.nodes[masters:] {
		if err := c.do(ctx, n, "CLUSTER", "REPLICATE", ids[i%masters]); err != nil {
			return err
		}
	}
	return c.waitHealthy(ctx)
}

// waitHealthy waits until every running node reports cluster_state:ok and
// the same topology, and every running replica is in sync with its master
// and counted online by it.
func (c *Cluster) waitHealthy(ctx context.Context) error {
	return c.waitAll(ctx, "a healthy cluster", func(cl *redis.Client) (bool, error) {
		info, err := cl.ClusterInfo(ctx).Result()
		if err != nil || !strings.Contains(info, "cluster_state:ok") {
			return false, err
		}
		repl, err := cl.Info(ctx, "replication").Result()
		if err != nil {
			return false, err
		}
		if strings.Contains(repl, "role:slave") && !strings.Contains(repl, "master_link_status:up") {
			return false, nil
		}
		for line := range strings.Lines(repl) {
			// A master counts a replica (for WAIT) once it is online.
			if strings.HasPrefix(line, "slave") && strings.Contains(line, "ip=") && !strings.Contains(line, "state=online") {
				return false, nil
			}
		}
		slots, err := cl.ClusterSlots(ctx).Result()
		if err != nil {
			return false, err
		}
		covered := 0
		for _, s := range slots {
			covered += s.End - s.Start + 1
			if len(s.Nodes) == 0 || !c.running(s.Nodes[0].Addr) {
				return false, nil
			}
		}
		return covered == 16384, nil
	})
}

// Addrs returns every node's host:port, the seeds of a ClusterClient (and
// of the server's -redis-cluster flag).
func (c *Cluster) Addrs() []string {
	addrs := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		addrs[i] = n.Addr()
	}
	return addrs
}

// Nodes returns every node, masters first as started (roles change with
// failovers; see MasterOf).
func (c *Cluster) Nodes() []*Server { return c.nodes }

// Client returns a new ClusterClient of the cluster, closed at cleanup,
// with timeouts short enough for tests that kill nodes.
func (c *Cluster) Client() *redis.ClusterClient {
	cl := redis.NewClusterClient(&redis.ClusterOptions{
		Addrs:         c.Addrs(),
		DialTimeout:   time.Second,
		DialerRetries: 1,
		ReadTimeout:   2 * time.Second,
		WriteTimeout:  2 * time.Second,
		MaxRetries:    1,
	})
	c.mu.Lock()
	c.clients = append(c.clients, cl)
	c.mu.Unlock()
	return cl
}

func (c *Cluster) running(addr string) bool {
	for _, n := range c.nodes {
		if n.Addr() == addr {
			return n.Running()
		}
	}
	return false
}

// waitAll polls cond on every running node until it holds on all of them.
func (c *Cluster) waitAll(ctx context.Context, what string, cond func(*redis.Client) (bool, error)) error {
	var lastErr error
	for {
		ok := true
		for _, n := range c.nodes {
			if !n.Running() {
				continue
			}
			cl := c.nodeClient(n)
			good, err := cond(cl)
			cl.Close()
			if err != nil {
				lastErr = fmt.Errorf("%s: %w", n.Addr(), err)
			}
			if !good {
				ok = false
				break
			}
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w (last error: %v)", what, ctx.Err(), lastErr)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// do runs one command on node n.
func (c *Cluster) do(ctx context.Context, n *Server, args ...any) error {
	cl := c.nodeClient(n)
	defer cl.Close()
	if err := cl.Do(ctx, args...).Err(); err != nil {
		return fmt.Errorf("%s %v: %w", n.Addr(), args, err)
	}
	return nil
}

// NodeClient returns a plain client of node n, closed at cleanup.
func (c *Cluster) NodeClient(n *Server) *redis.Client { return n.Client() }

// nodeClient returns a plain client of one node; the caller closes it.
func (c *Cluster) nodeClient(n *Server) *redis.Client {
	return redis.NewClient(&redis.Options{Addr: n.Addr(), DialTimeout: time.Second,
		ReadTimeout: 2 * time.Second, WriteTimeout: 2 * time.Second, MaxRetries: -1})
}

func (c *Cluster) cleanup() {
	c.mu.Lock()
	clients := c.clients
	c.clients = nil
	c.mu.Unlock()
	for _, cl := range clients {
		_ = cl.Close()
	}
	// The nodes are killed by their own cleanups.
}

// busPort returns a cluster node's cluster bus port.
func (s *Server) busPort() string {
	for i, a := range s.args {
		if a == "--cluster-port" && i+1 < len(s.args) {
			return s.args[i+1]
		}
	}
	return strconv.Itoa(s.port + 10000)
}
