package wall

// Transported is implemented by subscribers that name their transport
// ("websocket", "sse", "longpoll"): the wall counts its subscribers per
// transport, for presence (Clients). It is asked once, at Subscribe.
type Transported interface {
	Transport() string
}

// transportCount is the number of a wall's subscribers on one transport.
type transportCount struct {
	transport string
	n         int
}

// countClient adds d to the count of s's transport ("" if s names none).
// w.mu must be held.
func (w *Wall) countClient(s Subscriber, d int) {
	var name string
	if t, ok := s.(Transported); ok {
		name = t.Transport()
	}
	for i := range w.clients {
		if w.clients[i].transport == name {
			w.clients[i].n += d
			return
		}
	}
	w.clients = append(w.clients, transportCount{name, d})
}

// Clients calls f with the number of the wall's live subscribers on each
// transport that has any ("" for subscribers that name none). f is called
// with the wall's lock held and must not call the wall.
func (w *Wall) Clients(f func(transport string, n int)) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, c := range w.clients {
		if c.n > 0 {
			f(c.transport, c.n)
		}
	}
}
