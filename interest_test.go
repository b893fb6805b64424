package main

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"wall/wall/redistest"
)

// TestInterestIdleInstanceDoesNoWork: two instances in processes of their
// own share a Redis; 200 walls are posted to through A, and B has no
// client of any of them (it serves another wall). B subscribes to none of
// their channels and its CPU over the posting stays a small fraction of
// A's. Then the same posting with a WebSocket client of each wall on B:
// B now does work in proportion, which shows that the first measure would
// have seen it.
func TestInterestIdleInstanceDoesNoWork(t *testing.T) {
	srv := redistest.Start(t)
	a := startProcess(t, "-redis", srv.URL())
	b := startProcess(t, "-redis", srv.URL())
	admin := srv.Client()
	const nWalls, perWall = 200, 15
	walls := make([]string, nWalls)
	chans := make([]string, nWalls)
	for i := range walls {
		walls[i] = fmt.Sprintf("iw%d", i)
		chans[i] = "wall:{" + walls[i] + "}:events"
	}
	// B serves a wall of its own meanwhile.
	lobby, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(b.base, "http")+"/ws?wall=lobby", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer lobby.Close()

	// postAll posts perWall messages to every wall through A, 8 at a time.
	posters := make([]*legacyClient, 8)
	for i := range posters {
		posters[i] = newLegacyClient(t, a.base, "")
	}
	postAll := func(phase string) {
		var wg sync.WaitGroup
		next := make(chan string)
		for _, c := range posters {
			wg.Go(func() {
				for w := range next {
					c.wall = w
					for i := range perWall {
						if _, status, err := c.post(fmt.Sprintf("%s %s #%d", phase, w, i)); err != nil || status != 200 {
							t.Errorf("post to %s: %d %v", w, status, err)
							return
						}
					}
				}
			})
		}
		for _, w := range walls {
			next <- w
		}
		close(next)
		wg.Wait()
	}
	measure := func(phase string) (time.Duration, time.Duration) {
		a0, b0 := a.cpu(t), b.cpu(t)
		postAll(phase)
		time.Sleep(300 * time.Millisecond) // B's share of the last messages, if it has one
		return a.cpu(t) - a0, b.cpu(t) - b0
	}

	postAll("warm-up") // A follows the walls from its first post to each
	ca, cb := measure("idle")
	t.Logf("%d posts to %d walls through A, no client of them on B: CPU A %v, B %v", nWalls*perWall, nWalls, ca, cb)
	subs, err := admin.PubSubNumSub(context.Background(), chans...).Result()
	if err != nil {
		t.Fatal(err)
	}
	for ch, n := range subs {
		if n != 1 {
			t.Errorf("%s has %d subscribers, want 1 (A's)", ch, n)
		}
	}
	if cb > ca/10 {
		t.Errorf("B used %v of CPU for walls it does not serve, A %v: want less than a tenth", cb, ca)
	}

	// Control: a client of every wall on B.
	var conns []*websocket.Conn
	for _, w := range walls {
		conn, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(b.base, "http")+"/ws?wall="+w, nil)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, conn)
		go func() { // drain
			for {
				if _, _, err := conn.ReadMessage(); err != nil {
					return
				}
			}
		}()
	}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	ca2, cb2 := measure("served")
	t.Logf("the same with a WebSocket client of every wall on B: CPU A %v, B %v", ca2, cb2)
	if cb2 < 3*cb || cb2 < ca2/10 {
		t.Errorf("serving the walls, B used %v of CPU (A %v; idle B %v): the measure does not see B's work", cb2, ca2, cb)
	}
}
