package redistest

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// This file holds the faults a test inflicts on a Cluster and the waits
// that go with them.

// MasterOf returns the node that serves key's slot as master now, asking
// a running node.
func (c *Cluster) MasterOf(key string) (*Server, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var lastErr error
	for _, n := range c.nodes {
		if !n.Running() {
			continue
		}
		cl := c.nodeClient(n)
		master, err := masterOf(ctx, cl, key)
		cl.Close()
		if err != nil {
			lastErr = err
			continue
		}
		for _, m := range c.nodes {
			if m.Addr() == master {
				return m, nil
			}
		}
		return nil, fmt.Errorf("slot of %q served by unknown node %s", key, master)
	}
	return nil, fmt.Errorf("no running node answered: %v", lastErr)
}

// masterOf returns the address of the master serving key's slot, as node cl
// sees the cluster.
func masterOf(ctx context.Context, cl *redis.Client, key string) (string, error) {
	slot, err := cl.ClusterKeySlot(ctx, key).Result()
	if err != nil {
		return "", err
	}
	slots, err := cl.ClusterSlots(ctx).Result()
	if err != nil {
		return "", err
	}
	for _, s := range slots {
		if int64(s.Start) <= slot && slot <= int64(s.End) && len(s.Nodes) > 0 {
			return s.Nodes[0].Addr, nil
		}
	}
	return "", fmt.Errorf("slot %d not served", slot)
}

// KillMasterOf kills (SIGKILL) the master serving key's slot and returns
// it. Its replica is promoted after about 2-3 NodeTimeouts; see
// WaitFailover.
func (c *Cluster) KillMasterOf(key string) *Server {
	c.t.Helper()
	m, err := c.MasterOf(key)
	if err != nil {
		c.t.Fatalf("redistest: master of %q: %v", key, err)
	}
	m.Kill()
	return m
}

// WaitFailover waits until every running node agrees that a running node
// other than old serves key's slot as master and the cluster is healthy
// again, and returns the new master.
func (c *Cluster) WaitFailover(key string, old *Server) *Server {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), clusterTimeout)
	defer cancel()
	err := c.waitAll(ctx, "a running master for "+key, func(cl *redis.Client) (bool, error) {
		addr, err := masterOf(ctx, cl, key)
		return err == nil && addr != old.Addr() && c.running(addr), err
	})
	if err == nil {
		err = c.waitHealthy(ctx)
	}
	if err != nil {
		c.t.Fatalf("redistest: failover of %q: %v", key, err)
	}
	m, err := c.MasterOf(key)
	if err != nil {
		c.t.Fatalf("redistest: master of %q after failover: %v", key, err)
	}
	return m
}

// Restart starts a killed node again; it rejoins the cluster (a failed
// over master as a replica of its successor) and the call waits until the
// cluster is healthy.
func (c *Cluster) Restart(n *Server) {
	c.t.Helper()
	n.Start()
	ctx, cancel := context.WithTimeout(context.Background(), clusterTimeout)
	defer cancel()
	if err := c.waitHealthy(ctx); err != nil {
		c.t.Fatalf("redistest: cluster after restarting %s: %v", n.Addr(), err)
	}
}

// KillPubSub runs CLIENT KILL TYPE pubsub on every running node (sharded
// subscribers included) and returns how many connections were killed.
func (c *Cluster) KillPubSub() (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	total := 0
	for _, n := range c.nodes {
		if !n.Running() {
			continue
		}
		cl := c.nodeClient(n)
		k, err := cl.ClientKillByFilter(ctx, "TYPE", "pubsub").Result()
		cl.Close()
		if err != nil {
			return total, fmt.Errorf("%s: %w", n.Addr(), err)
		}
		total += int(k)
	}
	return total, nil
}
