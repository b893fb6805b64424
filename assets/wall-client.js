// @ts-self-types="./wall-client.d.ts"
// wall-client.js: the browser client of a wall server, an ES module with no
// dependencies. Types: wall-client.d.ts.
//
//   import { connect } from "https://wall.example/static/wall-client.js";
//   const w = connect({ wall: "main", url: "https://wall.example", token });
//   // or token: async () => (await fetch("/wall-token")).text(): asked
//   // before each connect, and again at once when the token expires
//   w.on("message", (m) => show(m));       // each message once, in seq order
//   w.on("state", (s) => status(s.state));  // connecting | live | reconnecting | offline | closed
//   w.on("gap", (g) => notice(g));          // {missed: N} or {reset: true}
//   const m = await w.publish("hello");     // the stored message; retries are stored once
//   w.close();
//
// It reads the wall over WebSocket, then server-sent events, then
// long-poll: it falls back to the next when one fails or hangs (a
// handshake unanswered for handshakeTimeout), notices a dead peer (no frame
// or heartbeat for deadAfter), reconnects with capped, jittered backoff and
// resumes from the cursor of the last message it delivered. It delivers
// each message once, in seq order, and says so (a "gap" event) when the
// server reports messages it can no longer send or a new numbering. A
// token given as a function is asked for before each connection and each
// post over HTTP; when the server refuses it (401, or a stream ended at
// the token's exp) it is asked once more, with refresh set, and the
// client reconnects or retries at once. On a live WebSocket it is asked
// ahead of the token's exp, with refresh set, and the fresh token is sent
// over the socket, so the stream outlives the token without a reconnect.

import { Order } from "./wall-order.js";
import { PublishError, Publisher } from "./wall-publish.js";
import { openLongPoll, openSSE, openWebSocket } from "./wall-transports.js";

export { PublishError };

/** The library's version. */
export const VERSION = "1.2.0";

/**
 * @typedef {{id: string, seq: number, cursor?: string, user?: string,
 *   time?: number, body: string, html: string}} Message
 */

const opens = { websocket: openWebSocket, sse: openSSE, longpoll: openLongPoll };

const defaults = {
  wall: "main",
  transports: ["websocket", "sse", "longpoll"],
  handshakeTimeout: 5000, // ms for a WebSocket to open or an event stream to answer
  deadAfter: 40000, // ms without a frame or heartbeat before the peer counts as dead
  pollTimeout: 55000, // ms a poll may be held: the server's 45 s, and slack
  backoffMin: 1000, // ms; the first reconnect waits 0.5–1 s
  backoffMax: 30000,
  probeMin: 5000, // ms before trying a better transport again, doubling
  probeMax: 120000,
};

// A connection live for less than this still counts as failing, so a
// flapping server does not get a reconnect every backoffMin.
const steadyAfter = 10000;

/**
 * connect starts a client of one wall and returns it at once; it connects
 * in the background (listen to "state").
 * @param {import("./wall-client.d.ts").Options} [options]
 * @returns {WallClient}
 */
export function connect(options) {
  return new WallClient(options || {});
}

/** WallClient is one subscription to a wall. Build it with connect(). */
export class WallClient {
  constructor(options) {
    const o = { ...defaults, ...options };
    for (const k of Object.keys(defaults)) if (options[k] == null) o[k] = defaults[k];
    const base = new URL(o.url || location.origin);
    o.base = base.origin;
    o.transports = o.transports.filter((t) => opens[t]);
    if (!o.transports.length) throw new Error("connect: no known transport");
    o.credentials = o.credentials || "same-origin";
    this.o = o;
    /** The wall's name. */
    this.wall = o.wall;
    /** The current state, as last emitted. */
    this.state = "connecting";
    /** The transport in use ("websocket", "sse", "longpoll") or null. */
    this.transport = null;
    this.order = new Order(
      o.cursor == null ? "" : String(o.cursor),
      (m) => this.emit("message", m),
      (g) => this.emit("gap", g),
    );
    this.listeners = { message: new Set(), state: new Set(), gap: new Set() };
    this.index = 0; // the transport tried or in use
    this.cur = null; // its handle
    this.gen = 0; // bumped whenever cur is replaced; stale callbacks compare it
    this.attempt = 0;
    this.liveSince = 0;
    this.retry = 0; // reconnect timer
    this.probe = null; // a better transport being tried
    this.probeTimer = 0;
    this.probeDelay = o.probeMin;
    this.terminal = false; // refused (401/403): no reconnecting
    this.renewed = false; // a 401 led to a fresh token since the client was last live
    this.publisher = new Publisher({
      base: o.base,
      wall: o.wall,
      token: o.token,
      getToken: (refresh) => this.token(refresh),
      credentials: o.credentials,
      xsrf: o.xsrf,
      frames: o.transports.includes("websocket"),
      sendFrame: (obj) => (this.transport === "websocket" && this.cur.send ? this.cur.send(obj) : false),
      stored: (m) => this.order.stored(m),
    });
    this.onOnline = () => {
      if (this.state === "offline" && !this.terminal) this.reconnect(0);
    };
    this.onOffline = () => {
      if (this.state === "closed" || this.terminal) return;
      this.stop();
      clearTimeout(this.retry);
      this.setState("offline", { reason: "no network" });
    };
    addEventListener("online", this.onOnline);
    addEventListener("offline", this.onOffline);
    queueMicrotask(() => this.start()); // listeners added right after connect() see "connecting"
  }

  /**
   * on adds a listener and returns a function that removes it.
   * @param {"message" | "state" | "gap"} event
   * @param {Function} fn
   * @returns {() => void}
   */
  on(event, fn) {
    const set = this.listeners[event];
    if (!set) throw new Error(`unknown event ${event}`);
    set.add(fn);
    return () => set.delete(fn);
  }

  emit(event, arg) {
    for (const fn of this.listeners[event]) {
      try {
        fn(arg);
      } catch (err) {
        queueMicrotask(() => {
          throw err; // reported, without breaking the client
        });
      }
    }
  }

  setState(state, detail) {
    this.state = state;
    this.emit("state", { state, transport: this.transport, ...detail });
  }

  /**
   * publish posts text to the wall and resolves with the stored message
   * (rejects with a PublishError if the server refuses it).
   * @param {string} text
   * @param {{id?: string}} [options] id: the post's id (a lowercase UUID4), to match it up; default a new one
   * @returns {Promise<Message>}
   */
  publish(text, options) {
    return this.publisher.publish(String(text), options && options.id ? options.id : undefined);
  }

  /** close ends the client: no more events, no more reconnects. */
  close() {
    if (this.state === "closed") return;
    this.stop();
    clearTimeout(this.retry);
    removeEventListener("online", this.onOnline);
    removeEventListener("offline", this.onOffline);
    this.publisher.close(new PublishError("client closed", 0, ""));
    this.transport = null;
    this.setState("closed");
  }

  // --- connecting ---------------------------------------------------------

  // token resolves with the token to present: the string option, or what
  // the function option gives (refresh: the last one was refused).
  async token(refresh) {
    const t = this.o.token;
    if (typeof t !== "function") return t || "";
    const v = await t({ wall: this.wall, refresh: !!refresh });
    if (v != null && typeof v !== "string") throw new TypeError("the token function must give a string");
    return v || "";
  }

  start() {
    if (this.state === "closed") return;
    this.setState("connecting", { transport: this.o.transports[0] });
    this.open(0);
  }

  // open tries transport i; refresh asks the token function for a new
  // token (the last one was refused).
  open(i, refresh = false) {
    this.stop();
    if (typeof navigator !== "undefined" && navigator.onLine === false) {
      this.setState("offline", { reason: "no network" }); // the "online" event reconnects
      return;
    }
    this.index = i;
    const gen = ++this.gen;
    const name = this.o.transports[i];
    const go = (token) => {
      if (gen !== this.gen) return; // stopped while the token came
      this.cur = this.openTransport(name, token, {
        open: () => gen === this.gen && this.live(name),
        data: (obj) => gen === this.gen && this.receive(obj),
        fail: (info) => gen === this.gen && this.failed(info),
      });
    };
    if (typeof this.o.token !== "function") return go(this.o.token);
    this.token(refresh).then(go, (err) => {
      if (gen === this.gen) this.failed({ reason: `token: ${(err && err.message) || err}`, tokenError: true });
    });
  }

  openTransport(name, token, h) {
    const o = this.o;
    return opens[name](
      {
        base: o.base,
        wall: o.wall,
        token,
        credentials: o.credentials,
        cursor: () => this.order.cursor || "0",
        handshakeTimeout: o.handshakeTimeout,
        deadAfter: o.deadAfter,
        pollTimeout: o.pollTimeout,
        // A WebSocket renews its token ahead of exp over the open socket.
        refresh: typeof o.token === "function" ? () => this.token(true) : null,
      },
      h,
    );
  }

  // stop ends the current transport and any probe.
  stop() {
    this.gen++;
    const wasSocket = this.transport === "websocket";
    if (this.cur) this.cur.close();
    this.cur = null;
    this.transport = null;
    this.stopProbe();
    if (wasSocket) this.publisher.lost();
  }

  live(name) {
    this.transport = name;
    this.renewed = false; // the token was accepted
    this.liveSince = Date.now();
    this.setState("live");
    this.publisher.live();
    if (this.index > 0) this.scheduleProbe();
    else this.probeDelay = this.o.probeMin;
  }

  failed(info) {
    const wasLive = this.transport !== null;
    this.stop();
    if (info.tokenError) {
      // The application could not give a token: ask again later.
      this.reconnect(this.backoff(), this.index, info.reason);
      return;
    }
    if (info.status === 401 && typeof this.o.token === "function" && !this.renewed) {
      // Expired (a stream the server ended, a poll or handshake refused):
      // a fresh token, and at once, from the cursor. A handshake refused
      // may be why the transports before this one failed too (a browser
      // does not show a WebSocket's 401): start over from the first.
      this.renewed = true;
      this.reconnect(0, info.opened ? this.index : 0, info.reason, true);
      return;
    }
    if (info.status === 401 || info.status === 403) {
      // Not allowed: reconnecting would not change that.
      this.terminal = true;
      this.setState("offline", { reason: info.reason, status: info.status });
      this.publisher.close(new PublishError(info.reason, info.status, ""));
      return;
    }
    if (!info.opened && this.index + 1 < this.o.transports.length) {
      // Refused or hung before it was live: the next transport, now.
      this.setState(this.state === "live" ? "reconnecting" : this.state, {
        transport: this.o.transports[this.index + 1],
        reason: info.reason,
      });
      this.open(this.index + 1);
      return;
    }
    // A live connection dropped (retry the same transport), or every
    // transport failed (start over from the first).
    const next = info.opened ? this.index : 0;
    if (wasLive && Date.now() - this.liveSince >= steadyAfter) this.attempt = 0;
    // A draining server says when to come back (WebSocket 1012's
    // reconnect_ms, SSE's retry:), spreading its clients over its drain.
    const delay = typeof info.retryAfter === "number" ? info.retryAfter : this.backoff();
    this.reconnect(delay, next, info.reason);
  }

  backoff() {
    const cap = Math.min(this.o.backoffMax, this.o.backoffMin * 2 ** Math.min(this.attempt, 16));
    this.attempt++;
    return cap / 2 + (Math.random() * cap) / 2;
  }

  // reconnect opens transport i after delay ms (refresh: with a new token).
  reconnect(delay, i = this.index, reason = "", refresh = false) {
    this.stop();
    clearTimeout(this.retry);
    this.setState("reconnecting", { reason, delay, retryAt: Date.now() + delay });
    this.retry = setTimeout(() => this.open(i, refresh), delay);
  }

  // A better transport (the first) is tried from time to time while a
  // fallback is in use; it replaces the fallback once it is live.
  scheduleProbe() {
    clearTimeout(this.probeTimer);
    const gen = this.gen;
    this.probeTimer = setTimeout(() => gen === this.gen && this.startProbe(gen), this.probeDelay);
    this.probeDelay = Math.min(this.o.probeMax, this.probeDelay * 2);
  }

  startProbe(gen) {
    if (typeof this.o.token !== "function") return this.probeWith(gen, this.o.token);
    this.token(false).then(
      (token) => gen === this.gen && this.probeWith(gen, token),
      () => gen === this.gen && this.scheduleProbe(),
    );
  }

  probeWith(gen, token) {
    const name = this.o.transports[0];
    let handle = null;
    let adopted = false;
    handle = this.openTransport(name, token, {
      open: () => {
        if (gen !== this.gen) return handle.close();
        // Adopt it: what the old transport delivered meanwhile is deduped.
        this.probe = null;
        this.stop();
        this.index = 0;
        this.cur = handle;
        adopted = ++this.gen;
        this.live(name);
      },
      data: (obj) => adopted === this.gen && this.receive(obj),
      fail: (info) => {
        if (adopted) {
          if (adopted === this.gen) this.failed(info);
          return;
        }
        this.probe = null;
        if (gen === this.gen) this.scheduleProbe();
      },
    });
    this.probe = handle;
  }

  stopProbe() {
    clearTimeout(this.probeTimer);
    if (this.probe) this.probe.close();
    this.probe = null;
  }

  // --- receiving -----------------------------------------------------------

  /** The cursor after the last message delivered; sent to resume. */
  get cursor() {
    return this.order.cursor;
  }

  // receive handles one object from the server, in wire order.
  receive(obj) {
    if (typeof obj.error === "string") return this.publisher.refused(obj);
    if (obj.reset === true || typeof obj.missed === "number") return this.order.notice(obj);
    if (typeof obj.seq !== "number" || typeof obj.id !== "string") return;
    this.publisher.settle(obj); // a post's acknowledgement, even a duplicate
    this.order.deliver(obj);
  }
}
