// wall-order.js: the order of delivery for wall-client.js. Whatever the
// transport, and across reconnects, fallbacks and probes that may bring a
// message twice, each message is delivered once, in seq order, and what
// cannot be delivered is announced: a server notice ({"missed": N},
// {"reset": true}), or a jump in seq or a new epoch the server did not
// announce, becomes a gap before the messages that follow it.

// parseCursor splits "<seq>.<epoch>" (or a plain seq).
export function parseCursor(c) {
  const s = String(c == null ? "" : c);
  const dot = s.indexOf(".");
  const seq = Number(dot < 0 ? s : s.slice(0, dot));
  return { seq: Number.isSafeInteger(seq) && seq >= 0 ? seq : 0, epoch: dot < 0 ? "" : s.slice(dot + 1) };
}

// Order is the position of one client in a wall: the last seq delivered,
// its epoch and its cursor.
export class Order {
  /**
   * @param {string} cursor the cursor to resume after; "" for none
   * @param {(m: object) => void} message delivers a message
   * @param {(g: object) => void} gap announces a gap
   */
  constructor(cursor, message, gap) {
    this.cursor = cursor;
    const c = parseCursor(cursor);
    this.seq = c.seq;
    this.epoch = c.epoch;
    // Without a cursor the client has no history of its own: messages the
    // wall evicted before it came are not a gap to it.
    this.fresh = cursor === "";
    this.gapSaid = false; // the next seq jump was announced
    this.message = message;
    this.gap = gap;
  }

  // notice handles {"missed": N} and {"reset": true}.
  notice(obj) {
    if (obj.reset === true) return this.reset();
    if (!this.fresh || this.seq > 0) this.gap({ missed: obj.missed });
    this.gapSaid = true;
  }

  reset() {
    this.seq = 0;
    this.epoch = "";
    this.gapSaid = true;
    this.gap({ reset: true });
  }

  // deliver hands m on unless it was delivered already.
  deliver(m) {
    const c = parseCursor(m.cursor == null ? m.seq : m.cursor);
    if (this.epoch && c.epoch && c.epoch !== this.epoch) this.reset(); // a new numbering, unannounced
    if (m.seq <= this.seq) return;
    if (this.seq > 0 && m.seq > this.seq + 1 && !this.gapSaid) this.gap({ missed: m.seq - this.seq - 1 });
    this.gapSaid = false;
    this.seq = m.seq;
    if (c.epoch) this.epoch = c.epoch;
    this.cursor = m.cursor == null ? String(m.seq) : m.cursor;
    this.message(m);
  }

  // stored is a message the server answered a post with: delivered at
  // once if it is the next one, otherwise the stream brings it in order.
  stored(m) {
    const c = parseCursor(m.cursor == null ? m.seq : m.cursor);
    if (m.seq === this.seq + 1 && (!c.epoch || c.epoch === this.epoch)) this.deliver(m);
  }
}
