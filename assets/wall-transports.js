// wall-transports.js: the three ways wall-client.js reads a wall, behind
// one small interface, so the client's fallback, dedupe and resume logic
// never depends on which one is in use.
//
//   open<Name>(cfg, h) → { close(), send?(obj) → boolean }
//
// cfg: { base, wall, token (a string), credentials, cursor() → string,
//        handshakeTimeout, deadAfter, pollTimeout (ms),
//        refresh: null, or () → Promise of a fresh token, which a
//        WebSocket presents over the open socket ahead of its token's exp }
// h:   { open() once the server accepted the subscription,
//        data(obj) for every message or notice object, in wire order,
//        fail(info) once, when the transport has ended by itself:
//          info = { reason, status?, opened, hung? }; status 401 also
//          when the server ended a live stream because its token expired }
//
// After close() or fail() a transport calls nothing more.

// timer is a restartable one-shot timeout.
function timer() {
  let id = 0;
  return {
    set(ms, fn) {
      clearTimeout(id);
      id = setTimeout(fn, ms);
    },
    stop() {
      clearTimeout(id);
    },
  };
}

// endpoint returns the URL of path on the wall server with the read
// arguments; heartbeat asks streaming transports for heartbeats.
function endpoint(cfg, path, heartbeat) {
  const u = new URL(path, cfg.base);
  u.searchParams.set("wall", cfg.wall);
  const cursor = cfg.cursor();
  if (cursor) u.searchParams.set("cursor", cursor);
  if (heartbeat) u.searchParams.set("heartbeat", "1");
  if (cfg.token) u.searchParams.set("token", cfg.token);
  return u;
}

// refusal reads the {"error": "..."} body of a refused request.
async function refusal(res) {
  let msg = "";
  try {
    const data = await res.json();
    if (data && typeof data.error === "string") msg = data.error;
  } catch {
    // not JSON: the status says enough
  }
  return { status: res.status, reason: msg || `HTTP ${res.status}` };
}

// claims returns a JWT's payload, decoded (base64url) but not verified:
// the client only reads when its own token expires. {} if it is no JWT.
function claims(token) {
  try {
    const p = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const c = JSON.parse(atob(p + "===".slice(0, (4 - (p.length % 4)) % 4)));
    return c && typeof c === "object" ? c : {};
  } catch {
    return {};
  }
}

// renewIn is how many ms from now a WebSocket renews token over the open
// socket: ahead of its exp by a tenth of its lifetime (iat to exp, or now
// to exp), at least 5 s and at most 60 s, and never sooner than 1 s from
// now; -1 for a token without exp.
export function renewIn(token, now = Date.now()) {
  const c = claims(token);
  if (typeof c.exp !== "number") return -1;
  const exp = c.exp * 1000;
  const life = exp - (typeof c.iat === "number" ? c.iat * 1000 : now);
  const lead = Math.max(5000, Math.min(60000, life / 10));
  return Math.min(2 ** 31 - 1, Math.max(1000, exp - lead - now)); // setTimeout's longest wait
}

// openWebSocket reads the wall over GET /ws with heartbeats: a handshake
// unanswered for handshakeTimeout is a hang, and an open socket silent for
// deadAfter (no message, notice or heartbeat) is a dead peer. With
// cfg.refresh it renews its token over the socket ahead of exp (a frame
// {"token": t}, answered {"refreshed": true, ...}), so the server does not
// end it then; a renewal refused or unanswered changes nothing: the
// server ends the stream at the old exp, and the client reconnects with a
// fresh token as for any expiry.
export function openWebSocket(cfg, h) {
  const u = endpoint(cfg, "/ws", true);
  u.protocol = u.protocol === "https:" ? "wss:" : "ws:";
  const dog = timer();
  const renewal = timer();
  let ws = null;
  let opened = false;
  let done = false;
  let token = cfg.token; // the socket's, as last renewed
  let sent = null; // a renewal sent and not answered yet

  const renew = () => {
    const ms = cfg.refresh ? renewIn(token) : -1;
    if (ms < 0) return;
    renewal.set(ms, async () => {
      let t;
      try {
        t = await cfg.refresh();
      } catch {
        return; // no token now: the stream ends at exp, and the client asks again
      }
      if (done || !t || ws.readyState !== WebSocket.OPEN) return;
      sent = t;
      ws.send(JSON.stringify({ token: t }));
    });
  };
  const detach = () => {
    done = true;
    dog.stop();
    renewal.stop();
    if (ws) ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
  };
  const end = (info) => {
    if (done) return;
    detach();
    try {
      ws.close(opened ? 4000 : undefined);
    } catch {
      // already closing
    }
    h.fail({ opened, ...info });
  };

  try {
    ws = new WebSocket(u);
  } catch (err) {
    queueMicrotask(() => end({ reason: String(err.message || err) }));
    return { close: detach, send: () => false };
  }
  dog.set(cfg.handshakeTimeout, () =>
    end({ reason: "no answer to the WebSocket handshake", hung: true }),
  );
  const alive = () => dog.set(cfg.deadAfter, () => end({ reason: "no heartbeat from the server", hung: true }));
  ws.onopen = () => {
    opened = true;
    alive();
    renew();
    h.open();
  };
  ws.onmessage = (ev) => {
    alive();
    let obj;
    try {
      obj = JSON.parse(ev.data);
    } catch {
      return; // not ours
    }
    if (sent && obj && obj.refreshed === true) {
      token = sent;
      sent = null;
      return renew();
    }
    if (sent && obj && typeof obj.error === "string" && obj.id === undefined) {
      // The renewal's refusal (the server answers frames in order): the
      // socket keeps its old exp, and ends then.
      sent = null;
      return;
    }
    if (expired(obj)) return end({ reason: obj.error, status: 401 }); // the server closes with 1008
    if (obj && typeof obj === "object" && !obj.heartbeat) h.data(obj);
  };
  // The API never says why a handshake failed (a 401 looks like a network
  // error): the client learns that from its HTTP transports.
  ws.onclose = (ev) =>
    end({
      code: ev.code,
      reason: ev.reason || (opened ? `connection closed (${ev.code})` : "WebSocket refused"),
      retryAfter: ev.code === 1012 ? reconnectHint(ev.reason) : undefined,
    });
  return {
    close() {
      if (done) return;
      detach();
      ws.close(1000);
    },
    send(obj) {
      if (done || !opened || ws.readyState !== WebSocket.OPEN) return false;
      ws.send(JSON.stringify(obj));
      return true;
    },
  };
}

// expired reports whether obj is the server's last word to a stream whose
// token expired: {"error": "token expired", "status": 401}, naming no post.
function expired(obj) {
  return !!obj && obj.status === 401 && typeof obj.error === "string" && obj.id === undefined;
}

// reconnectHint reads the delay a draining server gives with its close
// 1012, {"reconnect_ms": N}: its clients come back spread out, not at once.
function reconnectHint(reason) {
  try {
    const ms = JSON.parse(reason).reconnect_ms;
    return typeof ms === "number" && ms >= 0 ? ms : undefined;
  } catch {
    return undefined;
  }
}

// openSSE reads the wall over GET /sse with fetch and a stream reader
// rather than EventSource: it sees the status of a refusal (a 401 is final,
// a 503 is not), times the handshake, and has no reconnect loop of its own
// to fight. Any bytes (events, heartbeats, comments) prove the peer alive.
export function openSSE(cfg, h) {
  const ctrl = new AbortController();
  const dog = timer();
  let opened = false;
  let done = false;
  const end = (info) => {
    if (done) return;
    done = true;
    dog.stop();
    ctrl.abort();
    h.fail({ opened, ...info });
  };
  dog.set(cfg.handshakeTimeout, () => end({ reason: "no answer from the event stream", hung: true }));
  const alive = () => dog.set(cfg.deadAfter, () => end({ reason: "no heartbeat from the server", hung: true }));

  (async () => {
    let res;
    try {
      res = await fetch(endpoint(cfg, "/sse", true), {
        signal: ctrl.signal,
        cache: "no-store",
        credentials: cfg.credentials,
        headers: { Accept: "text/event-stream" },
      });
    } catch {
      return end({ reason: "event stream: network error" });
    }
    if (done) return;
    if (!res.ok) return end(await refusal(res));
    if (!(res.headers.get("Content-Type") || "").startsWith("text/event-stream")) {
      return end({ reason: "not an event stream" });
    }
    opened = true;
    alive();
    h.open();
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = "";
    let event = "";
    let data = [];
    let retry; // the server's last retry: hint, ms
    let draining = false; // it said it is shutting down: use that hint
    for (;;) {
      let chunk;
      try {
        chunk = await reader.read();
      } catch {
        return end({ reason: "event stream: network error" });
      }
      if (done) return;
      if (chunk.done) return end({ reason: "event stream ended", retryAfter: draining ? retry : undefined });
      alive();
      buf += chunk.value;
      const lines = buf.split(/\r\n|\r|\n/);
      buf = lines.pop(); // an incomplete line waits for the next chunk
      for (const line of lines) {
        if (line === "") {
          // An event ends: heartbeats only prove the peer alive.
          if (data.length && event !== "heartbeat") {
            let obj;
            try {
              obj = JSON.parse(data.join("\n"));
            } catch {
              obj = null;
            }
            if (expired(obj)) return end({ reason: obj.error, status: 401 }); // the stream ends
            if (obj && typeof obj === "object") h.data(obj);
            if (done) return;
          }
          event = "";
          data = [];
          continue;
        }
        if (line[0] === ":") {
          if (line.includes("shutting down")) draining = true;
          continue; // a comment
        }
        const i = line.indexOf(":");
        const field = i < 0 ? line : line.slice(0, i);
        let value = i < 0 ? "" : line.slice(i + 1);
        if (value[0] === " ") value = value.slice(1);
        if (field === "data") data.push(value);
        else if (field === "event") event = value;
        else if (field === "retry" && /^\d+$/.test(value)) retry = Number(value);
      }
    }
  })();
  return {
    close() {
      if (done) return;
      done = true;
      dog.stop();
      ctrl.abort();
    },
  };
}

// heldAfter is how long a first poll must be held before it counts as
// connected: the server holds a poll only once it has accepted it.
const heldAfter = 1000;

// openLongPoll reads the wall with GET /a/message/updates, one poll after
// another. A poll held past pollTimeout (the server answers by its own 45 s
// timeout) is a dead peer: it is aborted and the transport fails.
export function openLongPoll(cfg, h) {
  const dog = timer();
  let ctrl = null;
  let opened = false;
  let done = false;
  const open = () => {
    if (!opened && !done) {
      opened = true;
      h.open();
    }
  };
  const end = (info) => {
    if (done) return;
    done = true;
    dog.stop();
    if (ctrl) ctrl.abort();
    h.fail({ opened, ...info });
  };

  (async () => {
    let quick = 0; // answers in a row without messages that came at once
    while (!done) {
      ctrl = new AbortController();
      const started = Date.now();
      const held = opened ? 0 : setTimeout(open, heldAfter);
      dog.set(cfg.pollTimeout, () => end({ reason: "poll held too long", hung: true }));
      let data;
      try {
        const res = await fetch(endpoint(cfg, "/a/message/updates", false), {
          signal: ctrl.signal,
          cache: "no-store",
          credentials: cfg.credentials,
          headers: { Accept: "application/json" },
        });
        if (done) return;
        if (!res.ok) return end(await refusal(res));
        data = await res.json();
      } catch {
        return end({ reason: "long-poll: network error" });
      } finally {
        clearTimeout(held);
      }
      if (done) return;
      dog.stop();
      open();
      if (!data || !Array.isArray(data.messages)) {
        // The server's poll timeout or its shutdown: poll again, unless it
        // keeps answering at once, which would spin.
        quick = Date.now() - started < heldAfter ? quick + 1 : 0;
        if (quick > 1) await new Promise((r) => setTimeout(r, 500 + Math.random() * 1000));
        continue;
      }
      quick = 0;
      if (data.reset) h.data({ reset: true });
      else if (data.missed) h.data({ missed: data.missed });
      for (const m of data.messages) {
        if (done) return;
        h.data(m);
      }
    }
  })();
  return {
    close() {
      if (done) return;
      done = true;
      dog.stop();
      if (ctrl) ctrl.abort();
    },
  };
}
