// Package wall holds the state of a message wall server: named walls, each
// with a bounded cache of pre-rendered messages, a per-wall seq, live
// subscribers and waiting long-pollers; the Hub that registers them; and the
// Brokers that sequence new messages and deliver them through Wall.Apply.
package wall
