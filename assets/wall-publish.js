// wall-publish.js: publishing for wall-client.js. Every post gets a
// client-chosen id (a lowercase UUID4) and is retried with that same id
// until the server has answered it, so a post whose answer was lost is
// stored once: the server answers a retry of an id still in the wall's
// history with the message it stored.
//
// A post goes first as a frame on the client's WebSocket, when it has one
// live; its acknowledgement is the message with that id arriving on any
// transport, or an error frame naming the id. Retries go over HTTP (POST
// /a/message/new), whose answer is definite, when the client may post over
// HTTP: with a token, or on the wall's own origin with the _xsrf cookie.
// A token given as a function is asked for before each post over HTTP; a
// 401 (the token expired) has it asked once more for a fresh one, and the
// post is sent again at once.

/** @typedef {import("./wall-client.js").Message} Message */

// Retry timing, ms.
const ackWait = 10000; // a frame unacknowledged this long is sent again
const retryMin = 500;
const retryMax = 15000;

/**
 * PublishError is how a publish fails: the server refused it (status is
 * its HTTP status: 400, 401, 403, 413...), or it could not be sent at all
 * (status 0: the client was closed, or it has no way to post).
 */
export class PublishError extends Error {
  /**
   * @param {string} message
   * @param {number} status
   * @param {string} id the post's client id
   */
  constructor(message, status, id) {
    super(message);
    this.name = "PublishError";
    this.status = status;
    this.id = id;
  }
}

/** uuid4 returns a random lowercase UUID4. */
export function uuid4() {
  if (typeof crypto.randomUUID === "function") return crypto.randomUUID();
  // Pages served over plain HTTP (not a secure context) lack randomUUID.
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

const uuidRE = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

// readCookie returns a cookie of this document, or "".
function readCookie(name) {
  const m = document.cookie.match(new RegExp(`(?:^|;\\s*)${name}=([^;]*)`));
  return m ? decodeURIComponent(m[1]) : "";
}

// Publisher holds the posts in flight of one client.
export class Publisher {
  /**
   * @param {object} o
   * @param {string} o.base the server's origin
   * @param {string} o.wall
   * @param {string | Function} [o.token] the client's token option: a string or a function
   * @param {(refresh: boolean) => Promise<string>} o.getToken the token to present now
   * @param {RequestCredentials} o.credentials
   * @param {string | (() => string)} [o.xsrf]
   * @param {boolean} o.frames whether a WebSocket may ever be live
   * @param {(obj: object) => boolean} o.sendFrame sends on the live WebSocket, if any
   * @param {(m: Message) => void} o.stored called with each stored message the server answered
   */
  constructor(o) {
    this.o = o;
    this.sameOrigin = typeof location !== "undefined" && new URL(o.base).origin === location.origin;
    /** @type {Map<string, any>} id → post in flight */
    this.posts = new Map();
    this.closed = null; // the error every later publish fails with
  }

  /**
   * publish posts text and resolves with the stored message.
   * @param {string} text
   * @param {string} [id] the post's id, a lowercase UUID4; default a new one
   * @returns {Promise<Message>}
   */
  publish(text, id = uuid4()) {
    if (!uuidRE.test(id)) return Promise.reject(new TypeError(`publish: id must be a lowercase UUID4, not ${id}`));
    if (this.posts.has(id)) return Promise.reject(new TypeError(`publish: id ${id} is already being posted`));
    if (this.closed) return Promise.reject(new PublishError(this.closed.message, this.closed.status, id));
    return new Promise((resolve, reject) => {
      // renewed: a 401 led to a fresh token, and no other answer came since
      const p = { id, text, resolve, reject, tries: 0, state: "", timer: 0, renewed: false };
      this.posts.set(id, p);
      this.send(p);
    });
  }

  // xsrf returns the token for a same-origin form post.
  xsrf() {
    const x = this.o.xsrf;
    if (typeof x === "function") return x();
    return x || readCookie("_xsrf");
  }

  // httpRefusal says why this client cannot post over HTTP, or "".
  httpRefusal() {
    if (this.o.token) return "";
    if (!this.sameOrigin) return "posting from another origin needs a token (or a live WebSocket)";
    if (!this.xsrf()) {
      return "cookies are blocked for this site: posting needs its _xsrf cookie (or a live WebSocket)";
    }
    return "";
  }

  // send makes one attempt at p: a frame first, HTTP for retries. A post
  // is in one state: "frame" (sent on the WebSocket, waiting for its
  // acknowledgement), "http" (a request or its retry timer pending) or
  // "waiting" (no way to send it until a WebSocket is live).
  send(p) {
    clearTimeout(p.timer);
    if (!this.posts.has(p.id)) return;
    const http = !this.httpRefusal();
    if ((p.tries === 0 || !http) && this.o.sendFrame({ body: p.text, id: p.id })) {
      p.tries++;
      p.state = "frame";
      p.timer = setTimeout(() => this.send(p), ackWait);
    } else if (http) {
      p.state = "http";
      this.post(p);
    } else if (this.o.frames) {
      p.state = "waiting";
    } else {
      this.fail(p, new PublishError(this.httpRefusal(), 0, p.id));
    }
  }

  async post(p) {
    const attempt = ++p.tries;
    let token = "";
    if (this.o.token) {
      try {
        token = await this.o.getToken(p.renewed);
      } catch {
        if (this.posts.has(p.id) && p.tries === attempt) this.later(p); // the application may have one later
        return;
      }
      if (!this.posts.has(p.id) || p.tries !== attempt) return; // settled meanwhile
    }
    const f = new URLSearchParams({ body: p.text, wall: this.o.wall, id: p.id });
    const headers = { Accept: "application/json" };
    if (token) headers.Authorization = `Bearer ${token}`;
    else f.set("_xsrf", this.xsrf());
    let res;
    let data = null;
    try {
      res = await fetch(new URL("/a/message/new", this.o.base), {
        method: "POST",
        body: f,
        headers,
        credentials: this.o.credentials,
        cache: "no-store",
      });
      data = await res.json().catch(() => null);
    } catch {
      res = null; // the answer was lost: retried below with the same id
    }
    if (!this.posts.has(p.id) || p.tries !== attempt) return; // settled meanwhile
    if (res && res.ok && data && data.id === p.id) {
      this.o.stored(data);
      this.settle(data);
      return;
    }
    if (res && res.status === 401 && this.renew(p)) return;
    if (res) p.renewed = false;
    if (res && res.status >= 400 && res.status < 500 && res.status !== 408 && res.status !== 429) {
      this.fail(p, new PublishError((data && data.error) || `HTTP ${res.status}`, res.status, p.id));
      return;
    }
    // Lost, 408, 429 (too many posts: Retry-After says when) or 5xx: again
    // later, with the same id.
    const after = res ? parseFloat(res.headers.get("Retry-After") || "0") * 1000 : 0;
    this.later(p, after);
  }

  // renew sends p again at once over HTTP with a fresh token after a 401,
  // if the token is a function and this is not a second 401 in a row.
  renew(p) {
    if (typeof this.o.token !== "function" || p.renewed || this.httpRefusal()) return false;
    clearTimeout(p.timer);
    p.renewed = true;
    p.state = "http";
    this.post(p);
    return true;
  }

  // later sends p again after a capped, jittered backoff, and no sooner
  // than after ms.
  later(p, after = 0) {
    clearTimeout(p.timer);
    p.state = "http"; // a retry timer pending
    const cap = Math.min(retryMax, retryMin * 2 ** Math.min(p.tries, 10));
    const wait = cap / 2 + (Math.random() * cap) / 2;
    p.timer = setTimeout(() => this.send(p), Math.max(wait, after || 0));
  }

  // settle resolves the post of a message with its id, on whichever way
  // the message came.
  settle(m) {
    const p = this.posts.get(m.id);
    if (!p) return;
    clearTimeout(p.timer);
    this.posts.delete(p.id);
    p.resolve(m);
  }

  // refused handles an error frame: {"error": "...", "id": "...", "status":
  // N}. A frame without an id (an older server) is for the oldest post sent
  // as a frame. A post refused for now (429: too many posts; 5xx: the store
  // is away) is sent again later with its id; any other refusal is final.
  refused(obj) {
    let p = typeof obj.id === "string" ? this.posts.get(obj.id) : undefined;
    if (!p && typeof obj.id !== "string") p = [...this.posts.values()].find((x) => x.state === "frame");
    if (!p) return;
    const status = typeof obj.status === "number" ? obj.status : 400;
    if (status === 401 && this.renew(p)) return; // the socket's token expired
    if (status === 429 || status >= 500) this.later(p);
    else this.fail(p, new PublishError(String(obj.error), status, p.id));
  }

  fail(p, err) {
    clearTimeout(p.timer);
    this.posts.delete(p.id);
    p.reject(err);
  }

  // live is called when the client is live again: posts that were waiting
  // for a way out are sent.
  live() {
    for (const p of this.posts.values()) if (p.state === "waiting") this.send(p);
  }

  // lost is called when the WebSocket has gone: what went out on it
  // unacknowledged is sent again over HTTP, or waits for the next one.
  lost() {
    for (const p of this.posts.values()) if (p.state === "frame") this.send(p);
  }

  // close fails every post in flight, and every later one, with err.
  close(err) {
    this.closed = err;
    for (const p of [...this.posts.values()]) this.fail(p, new PublishError(err.message, err.status, p.id));
  }
}
