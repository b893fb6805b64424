// wall.js: the browser client of a wall page.
//
// It keeps the inbox live over a WebSocket (/ws), falls back to long-polling
// (/a/message/updates) when the socket cannot open, and resumes from the
// cursor of the newest message it has seen after every reconnect, so nothing
// is missed or shown twice. Posting goes over the socket when it is open and
// over POST /a/message/new otherwise. Without JavaScript the page still
// works: the form posts and the server redirects back.
(() => {
  "use strict";

  const MIN_BACKOFF = 500; // ms; doubles per failed attempt
  const MAX_BACKOFF = 30000;
  const PROBE_MIN = 5000; // ms before retrying the WebSocket while on long-poll
  const PROBE_MAX = 120000;
  const HELD_AFTER = 1000; // ms a held poll takes to count as connected

  const body = document.body;
  const inbox = document.getElementById("inbox");
  const form = document.getElementById("messageform");
  const input = document.getElementById("message");
  const button = form.querySelector("button[type=submit]");
  const statusEl = document.getElementById("status");
  const noticeEl = document.getElementById("notice");
  const errorEl = document.getElementById("form-error");

  // state is exposed as window.wallClient for tests and curious people; the
  // client never reads anything back from it that it did not write itself.
  const state = {
    wall: body.dataset.wall || "main",
    cursor: parseInt(body.dataset.last, 10) || 0, // highest seq in the inbox, for order
    // resume is what the server is sent: the newest message's "cursor"
    // ("<seq>.<epoch>"), so a cursor from before a server restart is
    // answered with a reset rather than read in the new numbering.
    resume: body.dataset.last || "0",
    transport: "none", // "websocket", "longpoll" or "none"
    status: "connecting",
    attempt: 0, // failed connection attempts since the last success
    gen: 0, // bumped on every (re)connect; stale callbacks compare it
    forceLongPoll: new URLSearchParams(location.search).get("transport") === "longpoll",
  };
  window.wallClient = state;

  let ws = null; // the current socket (open or opening)
  let poll = null; // AbortController of the poll in flight
  let retryTimer = 0;
  let countdown = 0;
  let probeTimer = 0;
  let probeDelay = PROBE_MIN;
  let pending = ""; // text sent over the socket, restored if the server refuses it

  // --- connection state -------------------------------------------------

  function setStatus(kind, text) {
    state.status = text;
    statusEl.dataset.state = kind;
    statusEl.textContent = text;
  }

  function showNotice(text) {
    noticeEl.textContent = text;
    noticeEl.hidden = false;
  }

  function showError(text) {
    errorEl.textContent = text;
    errorEl.hidden = !text;
  }

  // teardown stops the current transport and any pending retry; callbacks of
  // the old transport see a stale generation and do nothing.
  function teardown() {
    state.gen++;
    clearTimeout(retryTimer);
    clearInterval(countdown);
    clearTimeout(probeTimer);
    if (poll) poll.abort();
    poll = null;
    if (ws) {
      const old = ws;
      ws = null;
      old.onopen = old.onmessage = old.onclose = old.onerror = null;
      old.close(1000);
    }
    state.transport = "none";
  }

  function connect() {
    teardown();
    if (!navigator.onLine) {
      setStatus("offline", "offline");
      return; // the "online" event reconnects
    }
    setStatus("connecting", "connecting…");
    if (state.forceLongPoll || !("WebSocket" in window)) startPoll();
    else openSocket(false);
  }

  // reconnectLater waits a capped exponential backoff with full jitter, so a
  // restarted server is not hit by every tab at once.
  function reconnectLater() {
    teardown();
    const cap = Math.min(MAX_BACKOFF, MIN_BACKOFF * 2 ** state.attempt);
    state.attempt++;
    const delay = Math.random() * cap;
    const until = Date.now() + delay;
    const tick = () => {
      const s = Math.max(0, Math.ceil((until - Date.now()) / 1000));
      setStatus("reconnecting", `reconnecting in ${s}s…`);
    };
    tick();
    countdown = setInterval(tick, 1000);
    retryTimer = setTimeout(connect, delay);
  }

  function live(transport) {
    state.transport = transport;
    state.attempt = 0;
    if (transport === "websocket") probeDelay = PROBE_MIN;
    setStatus("live", transport === "websocket" ? "live (WebSocket)" : "live (long-poll)");
  }

  // --- messages ----------------------------------------------------------

  // apply appends one message unless it is already shown; messages must come
  // in seq order. It returns whether the message was new.
  function apply(m) {
    if (!m || typeof m.html !== "string") return false;
    if (typeof m.seq === "number" && m.seq <= state.cursor) return false;
    if (typeof m.seq === "number") {
      state.cursor = m.seq;
      state.resume = typeof m.cursor === "string" ? m.cursor : String(m.seq);
    }
    if (document.getElementById("m" + m.id)) return false;
    const stick = inbox.scrollHeight - inbox.scrollTop - inbox.clientHeight < 40;
    // The fragment was escaped and linkified by the server.
    inbox.insertAdjacentHTML("beforeend", m.html);
    if (stick) inbox.scrollTop = inbox.scrollHeight;
    return true;
  }

  // replaceAll shows a fresh snapshot of the wall (its cursor was unknown to
  // the server, e.g. after a restart).
  function replaceAll(msgs) {
    inbox.replaceChildren();
    state.cursor = 0;
    state.resume = "0";
    msgs.forEach(apply);
    inbox.scrollTop = inbox.scrollHeight;
  }

  function missed(n) {
    if (n > 0) showNotice(`${n} earlier message${n === 1 ? " was" : "s were"} missed.`);
  }

  // --- WebSocket ---------------------------------------------------------

  function socketURL() {
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    const q = new URLSearchParams({ wall: state.wall, cursor: state.resume });
    return `${proto}//${location.host}/ws?${q}`;
  }

  // openSocket opens a WebSocket. A probe is a retry made while long-polling
  // works: it replaces the poll only once it is open.
  function openSocket(probe) {
    const gen = state.gen;
    const sock = new WebSocket(socketURL());
    let opened = false;
    if (!probe) ws = sock;

    sock.onopen = () => {
      if (probe) {
        if (gen !== state.gen || state.transport !== "longpoll") return sock.close(1000);
        teardown(); // stops the poll
        ws = sock;
      } else if (gen !== state.gen) return;
      opened = true;
      live("websocket");
    };

    sock.onmessage = (ev) => {
      if (ws !== sock) return;
      let m;
      try {
        m = JSON.parse(ev.data);
      } catch {
        return;
      }
      if (m.error) {
        showError(m.error);
        if (pending && !input.value) input.value = pending;
        pending = "";
        return;
      }
      if (m.reset) {
        // The server did not know our cursor (it restarted): its whole
        // cache follows.
        inbox.replaceChildren();
        state.cursor = 0;
        state.resume = "0";
        return;
      }
      if (m.missed) return missed(m.missed);
      if (typeof m.seq !== "number") return apply(m);
      // A gap the server did not announce (it should): say so all the same.
      if (m.seq > state.cursor + 1 && state.cursor > 0) missed(m.seq - state.cursor - 1);
      if (apply(m) && pending && m.body === pending.trim()) pending = "";
    };

    sock.onclose = (ev) => {
      if (probe && !opened) {
        // Still blocked: try again later, less often.
        if (state.transport === "longpoll" && gen === state.gen) scheduleProbe(gen);
        return;
      }
      if (ws !== sock) return;
      ws = null;
      if (!opened) {
        // The socket never opened (blocked by a proxy, refused): long-poll,
        // and retry the socket from time to time.
        startPoll();
        return;
      }
      if (ev.code === 1008 || ev.code === 1009 || (ev.code >= 4000 && ev.code < 5000)) {
        showError(ev.reason || `connection closed (${ev.code})`);
      }
      reconnectLater();
    };
  }

  function scheduleProbe(gen) {
    clearTimeout(probeTimer);
    probeTimer = setTimeout(() => {
      if (gen === state.gen && state.transport === "longpoll") openSocket(true);
    }, probeDelay);
    probeDelay = Math.min(PROBE_MAX, probeDelay * 2);
  }

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  // --- long-poll ---------------------------------------------------------

  async function startPoll() {
    teardown();
    const gen = state.gen;
    state.transport = "longpoll";
    if (!state.forceLongPoll && "WebSocket" in window) scheduleProbe(gen);
    let ok = false;
    while (gen === state.gen) {
      const ctrl = new AbortController();
      poll = ctrl;
      const q = new URLSearchParams({ wall: state.wall, cursor: state.resume });
      const started = Date.now();
      // An empty wall holds the poll until a message comes, so a poll that
      // is still held after a moment also counts as connected.
      const held = ok ? 0 : setTimeout(() => {
        if (gen === state.gen && !ok) {
          ok = true;
          live("longpoll");
        }
      }, HELD_AFTER);
      let data;
      try {
        const res = await fetch(`/a/message/updates?${q}`, {
          signal: ctrl.signal,
          cache: "no-store",
          headers: { Accept: "application/json" },
        });
        if (!res.ok) throw new Error(`HTTP ${res.status}`);
        data = await res.json();
      } catch {
        if (gen === state.gen) reconnectLater();
        return;
      } finally {
        clearTimeout(held);
      }
      if (gen !== state.gen) return;
      if (!ok) {
        ok = true;
        live("longpoll");
      }
      state.attempt = 0;
      if (!data || !Array.isArray(data.messages)) {
        // The server's poll timeout (or its shutdown): poll again at once,
        // unless it answers instantly, which would make this loop spin.
        if (Date.now() - started < 1000) await sleep(MIN_BACKOFF + Math.random() * 1000);
        continue;
      }
      if (data.reset) replaceAll(data.messages);
      else {
        missed(data.missed || 0);
        data.messages.forEach(apply);
      }
    }
  }

  // --- posting -----------------------------------------------------------

  function xsrf() {
    const m = document.cookie.match(/(?:^|;\s*)_xsrf=([^;]*)/);
    return m ? decodeURIComponent(m[1]) : form.elements._xsrf.value;
  }

  async function post(text) {
    if (ws && ws.readyState === WebSocket.OPEN) {
      ws.send(JSON.stringify({ body: text }));
      pending = text;
      input.value = "";
      return;
    }
    button.disabled = true;
    try {
      const res = await fetch("/a/message/new", {
        method: "POST",
        headers: { Accept: "application/json" },
        body: new URLSearchParams({ body: text, wall: state.wall, _xsrf: xsrf() }),
      });
      let data = null;
      try {
        data = await res.json();
      } catch {
        // An error page that is not JSON: reported below by status.
      }
      if (!res.ok) {
        showError((data && data.error) || `could not post (HTTP ${res.status})`);
        return;
      }
      if (input.value === text) input.value = "";
      // Show it now only if it is next in order; otherwise the stream
      // brings it after the messages before it.
      if (data && data.seq === state.cursor + 1) apply(data);
    } catch {
      showError("could not post: network error");
    } finally {
      button.disabled = false;
      input.focus();
    }
  }

  form.addEventListener("submit", (ev) => {
    ev.preventDefault(); // Enter in the input submits too
    const text = input.value;
    if (!text.trim()) {
      showError("Write something first.");
      return;
    }
    showError("");
    post(text);
  });

  window.addEventListener("offline", () => {
    teardown();
    setStatus("offline", "offline");
  });
  window.addEventListener("online", () => {
    state.attempt = 0;
    connect();
  });

  inbox.scrollTop = inbox.scrollHeight;
  connect();
})();
