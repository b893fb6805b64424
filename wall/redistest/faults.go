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

// Pause makes node n stall, as a partitioned master does, without
// crashing or being failed over: CLIENT PAUSE d ALL holds every client's
// commands (a read blocks until its timeout) while the cluster bus goes on
// answering, so no replica is promoted. It returns when the pause is set;
// the node answers again once d has passed.
func (c *Cluster) Pause(n *Server, d time.Duration) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := c.do(ctx, n, "CLIENT", "PAUSE", d.Milliseconds(), "ALL"); err != nil {
		c.t.Fatalf("redistest: pausing %s: %v", n.Addr(), err)
	}
}

// PauseKillingPubSub kills node n's pub/sub connections and pauses it
// for d (CLIENT KILL TYPE pubsub, then CLIENT PAUSE d ALL, in one round
// trip), so that its subscribers reconnect into the pause: their new
// connections are accepted, but nothing they send is answered until d
// has passed. It returns when the pause is set.
func (c *Cluster) PauseKillingPubSub(n *Server, d time.Duration) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	cl := c.nodeClient(n)
	defer cl.Close()
	pipe := cl.Pipeline()
	pipe.ClientKillByFilter(ctx, "TYPE", "pubsub")
	pipe.Do(ctx, "CLIENT", "PAUSE", d.Milliseconds(), "ALL")
	if _, err := pipe.Exec(ctx); err != nil {
		c.t.Fatalf("redistest: killing the pub/sub connections of %s and pausing it: %v", n.Addr(), err)
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

// MoveSlot migrates the slot of key, with its keys, from its master to the
// master to (a resharding step, as redis-cli --cluster reshard does it:
// IMPORTING and MIGRATING, MIGRATE of the keys, then the new owner told to
// every master), and waits until the cluster is healthy.
func (c *Cluster) MoveSlot(key string, to *Server) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), clusterTimeout)
	defer cancel()
	if err := c.moveSlot(ctx, key, to); err != nil {
		c.t.Fatalf("redistest: moving the slot of %q to %s: %v", key, to.Addr(), err)
	}
	if err := c.waitHealthy(ctx); err != nil {
		c.t.Fatalf("redistest: cluster after moving the slot of %q: %v", key, err)
	}
}

func (c *Cluster) moveSlot(ctx context.Context, key string, to *Server) error {
	from, err := c.MasterOf(key)
	if err != nil {
		return err
	}
	if from == to {
		return fmt.Errorf("%s already serves it", to.Addr())
	}
	src, dst := c.nodeClient(from), c.nodeClient(to)
	defer src.Close()
	defer dst.Close()
	slot, err := src.ClusterKeySlot(ctx, key).Result()
	if err != nil {
		return err
	}
	srcID, err := src.Do(ctx, "CLUSTER", "MYID").Text()
	if err != nil {
		return err
	}
	dstID, err := dst.Do(ctx, "CLUSTER", "MYID").Text()
	if err != nil {
		return err
	}
	if err := dst.Do(ctx, "CLUSTER", "SETSLOT", slot, "IMPORTING", srcID).Err(); err != nil {
		return err
	}
	if err := src.Do(ctx, "CLUSTER", "SETSLOT", slot, "MIGRATING", dstID).Err(); err != nil {
		return err
	}
	for {
		keys, err := src.ClusterGetKeysInSlot(ctx, int(slot), 100).Result()
		if err != nil {
			return err
		}
		if len(keys) == 0 {
			break
		}
		args := []any{"MIGRATE", "127.0.0.1", to.port, "", 0, 5000, "KEYS"}
		for _, k := range keys {
			args = append(args, k)
		}
		if err := src.Do(ctx, args...).Err(); err != nil {
			return err
		}
	}
	// The new owner first, then the old, then the others (as redis-cli),
	// each once: a node told again drops the slot's shard subscribers.
	told := map[*Server]bool{}
	for _, n := range append([]*Server{to, from}, c.nodes...) {
		if !n.Running() || told[n] {
			continue
		}
		told[n] = true
		cl := c.nodeClient(n)
		role, err := cl.Do(ctx, "ROLE").Slice()
		if err == nil && len(role) > 0 && role[0] == "master" {
			err = cl.Do(ctx, "CLUSTER", "SETSLOT", slot, "NODE", dstID).Err()
		}
		cl.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", n.Addr(), err)
		}
	}
	return nil
}
