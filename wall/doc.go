// Package wall holds the state of a message wall server: named walls, each
// with a bounded cache of pre-rendered messages, a per-wall seq and epoch,
// live subscribers and waiting long-pollers; the Hub that registers them;
// and the Broker interface with the in-process MemoryBroker, which sequence
// new messages and deliver them through Wall.Apply. It uses the standard
// library only: the Redis broker lives in wall/redisbroker.
package wall
