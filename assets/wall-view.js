// wall-view.js: the inbox of the wall page. Messages are queued as they
// arrive and written to the DOM once per animation frame, in one batch
// (one parse, one append, one trim), so a burst costs a few frames rather
// than a layout per message; the list keeps at most `keep` messages (the
// server's cache size). The scroller is a flex column-reverse box: the
// browser keeps it at the bottom as messages come, without a script
// scrolling it (and without JavaScript it opens at the newest message).

const nearBottom = 40; // px from the bottom that still count as "at the bottom"

// esc escapes text for HTML.
const esc = (s) =>
  String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);

const clock = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
const dated = new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
const full = new Intl.DateTimeFormat(undefined, { dateStyle: "full", timeStyle: "medium" });

// metaHTML renders a message's author and time.
function metaHTML(user, time) {
  let h = user ? `<span class="who">${esc(user)}</span>` : `<span class="who anon">anonymous</span>`;
  if (typeof time === "number" && Number.isFinite(time)) {
    const d = new Date(time);
    const short = d.toDateString() === new Date().toDateString() ? clock.format(d) : dated.format(d);
    h += ` <time datetime="${d.toISOString()}" title="${esc(full.format(d))}">${esc(short)}</time>`;
  }
  return `<p class="meta">${h}</p>`;
}

// gapText says what a gap or reset marker in the list marks.
function gapText(g) {
  if (g.reset) return "The wall restarted: messages from before are gone. Its messages since then follow.";
  return `${g.missed} message${g.missed === 1 ? " was" : "s were"} missed here.`;
}

export class Inbox {
  /**
   * @param {HTMLElement} scroller the scrolling box (column-reverse)
   * @param {HTMLElement} inbox its content
   * @param {HTMLButtonElement} unread the "new messages" button
   * @param {number} keep messages kept shown
   */
  constructor(scroller, inbox, unread, keep) {
    this.scroller = scroller;
    this.unreadButton = unread;
    this.keep = Math.max(1, keep);
    this.list = document.createElement("ol");
    this.list.className = "list";
    this.outbox = document.createElement("ol");
    this.outbox.className = "list outbox";
    this.outbox.setAttribute("aria-label", "Sending");
    this.count = 0; // message items in this.list
    this.queue = []; // {m} or {gap}: what the next frame writes
    this.clear = false; // the next frame starts from an empty list
    this.frame = 0;
    this.unread = 0;
    this.pending = new Map(); // post id → its item in the outbox
    this.inbox = inbox;
    unread.addEventListener("click", () => {
      this.scroller.scrollTop = 0;
      this.seen();
    });
    scroller.addEventListener("scroll", () => this.atBottom() && this.seen(), { passive: true });
  }

  // adopt takes over the messages the server rendered into the inbox, with
  // their meta ([user, time] each, in order).
  adopt(meta) {
    const msgs = [...this.inbox.querySelectorAll(":scope > .message")];
    const t = document.createElement("template");
    t.innerHTML = msgs.map((el, i) => `<li class="item">${metaHTML(...(meta[i] || []))}</li>`).join("");
    msgs.forEach((el, i) => {
      el.dir = "auto";
      t.content.children[i].append(el);
    });
    this.list.append(t.content);
    this.count = msgs.length;
    this.inbox.replaceChildren(this.list, this.outbox);
  }

  // atBottom is a layout read: call it where layout is clean anyway.
  atBottom() {
    return -this.scroller.scrollTop < nearBottom;
  }

  seen() {
    this.unread = 0;
    this.unreadButton.hidden = true;
  }

  add(m) {
    this.queue.push({ m });
    this.schedule();
  }

  gap(g) {
    if (g.reset) {
      this.queue = [];
      this.clear = true;
    }
    this.queue.push({ gap: g });
    this.schedule();
  }

  // schedule asks for a flush at the next frame, or within 250 ms where
  // frames do not come (a hidden tab).
  schedule() {
    if (this.frame) return;
    const run = () => {
      cancelAnimationFrame(raf);
      clearTimeout(late);
      this.frame = 0;
      this.flush();
    };
    const raf = requestAnimationFrame(run);
    const late = setTimeout(run, 250);
    this.frame = 1;
  }

  flush() {
    let q = this.queue;
    this.queue = [];
    // Only the last `keep` messages can stay: do not build the rest.
    let n = 0;
    let from = q.length;
    while (from > 0 && n < this.keep) if (q[--from].m) n++;
    q = q.slice(from);
    const stick = this.atBottom();
    const t = document.createElement("template");
    t.innerHTML = q
      .map((x) =>
        x.m
          ? `<li class="item">${metaHTML(x.m.user, x.m.time)}${x.m.html}</li>`
          : `<li class="marker${x.gap.reset ? " reset" : ""}">${esc(gapText(x.gap))}</li>`,
      )
      .join("");
    for (const li of t.content.children) if (li.lastElementChild) li.lastElementChild.dir = "auto";
    if (this.clear) {
      this.list.replaceChildren();
      this.count = 0;
      this.clear = false;
    }
    this.list.append(t.content);
    this.count += n;
    for (const x of q) if (x.m) this.sent(x.m.id);
    // Trim from the top: messages, then the markers left above them.
    if (this.count > this.keep) {
      while (this.count > this.keep && this.list.firstElementChild) {
        if (this.list.firstElementChild.classList.contains("item")) this.count--;
        this.list.firstElementChild.remove();
      }
      while (this.list.firstElementChild && !this.list.firstElementChild.classList.contains("item")) {
        this.list.firstElementChild.remove();
      }
    }
    if (!stick && n > 0) {
      this.unread += n;
      this.unreadButton.textContent = `${this.unread} new message${this.unread === 1 ? "" : "s"} ↓`;
      this.unreadButton.hidden = false;
    }
  }

  // sending shows text in the outbox until the message with id is shown.
  sending(id, text) {
    const li = document.createElement("li");
    li.className = "item pending";
    const meta = document.createElement("p");
    meta.className = "meta";
    meta.textContent = "sending…";
    const body = document.createElement("div");
    body.className = "message";
    body.dir = "auto";
    body.textContent = text;
    li.append(meta, body);
    this.outbox.append(li);
    this.pending.set(id, li);
    this.scroller.scrollTop = 0; // one's own post: go to it
  }

  // sent removes the outbox item of post id, its message being shown.
  sent(id) {
    const li = this.pending.get(id);
    if (li) {
      li.remove();
      this.pending.delete(id);
    }
  }

  // stored marks post id as stored: its message is on its way.
  stored(id) {
    const li = this.pending.get(id);
    if (li) li.firstElementChild.textContent = "sent";
  }
}
