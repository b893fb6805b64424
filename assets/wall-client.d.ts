// Types of wall-client.js, the browser client of a wall server.

/** The library's version. */
export const VERSION: string;

/** A stored message, as every transport delivers it. */
export interface Message {
  /** The message id: a lowercase UUID4, the one chosen by its poster if it chose one. */
  id: string;
  /** Its position in the wall: 1, 2, 3... within one numbering (epoch). */
  seq: number;
  /** "<seq>.<epoch>": the position to resume after it, on any transport. */
  cursor?: string;
  /** The author (the `sub` of the poster's token); absent for anonymous posts. */
  user?: string;
  /** When the server sequenced it, in milliseconds since the Unix epoch. */
  time?: number;
  /** The text, cleaned by the server. */
  body: string;
  /** The body as an HTML fragment, escaped and linkified by the server. */
  html: string;
}

export type Transport = "websocket" | "sse" | "longpoll";

export type State = "connecting" | "live" | "reconnecting" | "offline" | "closed";

export interface StateEvent {
  state: State;
  /** The transport in use ("live") or being tried ("connecting", "reconnecting"). */
  transport: Transport | null;
  /** Why the client is not live: the last failure, or the server's refusal. */
  reason?: string;
  /** "offline" after a refusal: 401 (a token is needed or was refused) or 403 (not allowed). Final. */
  status?: number;
  /** "reconnecting": ms until the next attempt, and when that is (Date.now() ms). */
  delay?: number;
  retryAt?: number;
}

/** Messages the client will not get: announced before the messages that follow them. */
export type GapEvent = { missed: number } | { reset: true };

/**
 * Where the client gets its token: a JWT, or a function that returns one (or a Promise of one).
 * The function is called before each connection attempt and each post sent over HTTP (a post sent on
 * the live WebSocket goes under that socket's token). When the server refuses the token with 401 (a
 * stream it ended at the token's exp, a poll or handshake refused, a post refused), the function is
 * called once more with `refresh: true` and the client reconnects (from its cursor: nothing lost or
 * repeated) or posts again at once; a second 401 in a row is final, as with a string token.
 *
 * On a live WebSocket (since 1.2.0) the function is also called with `refresh: true` ahead of the
 * current token's `exp` (read from the JWT's payload, not verified): at exp minus a tenth of the
 * token's lifetime, at least 5 s and at most 60 s, never sooner than 1 s from then. The fresh token is
 * sent over the socket (`{"token": "<jwt>"}`) and the server moves the connection's expiry to its
 * own, so the stream outlives the token with no reconnect. If the server refuses it (another user, a
 * wall it does not reach, a bad token) or does not answer, nothing more happens: the stream ends at
 * the old expiry and the client reconnects with a fresh token as above. Event streams and long-polls
 * are not renewed in place: each reconnects (a long-poll presents the token it was opened with on
 * every poll, and polls again at once with a fresh one after the 401).
 */
export type TokenSource = string | ((context: { wall: string; refresh: boolean }) => string | Promise<string>);

export interface Options {
  /** The wall's name. Default "main". */
  wall?: string;
  /**
   * A JWT for identity and private walls, or a function giving one (see TokenSource); sent as the
   * token argument (and as a bearer token on posts). With a string, a token that expires ends the
   * client ("offline" with status 401) when the server ends its connection at exp.
   */
  token?: TokenSource;
  /** The wall server, e.g. "https://wall.example". Default: this page's origin. */
  url?: string;
  /** The transports to use, in order of preference. Default ["websocket", "sse", "longpoll"]. */
  transports?: Transport[];
  /** Resume after this cursor (a message's `cursor`). Default: the wall's recent history. */
  cursor?: string;
  /** The XSRF token for same-origin posts over HTTP. Default: the `_xsrf` cookie. */
  xsrf?: string | (() => string);
  /** fetch credentials for the HTTP transports. Default "same-origin". */
  credentials?: RequestCredentials;
  /** ms a WebSocket may take to open, or an event stream to answer, before the next transport is tried. Default 5000. */
  handshakeTimeout?: number;
  /** ms without a frame or heartbeat after which a streaming connection counts as dead. Default 40000. */
  deadAfter?: number;
  /** ms a long-poll may be held before it counts as dead (the server holds one 45 s). Default 55000. */
  pollTimeout?: number;
  /** Reconnect backoff: the first wait is between half of backoffMin and backoffMin, doubling up to backoffMax. Defaults 1000, 30000. */
  backoffMin?: number;
  backoffMax?: number;
  /** ms before a better transport is tried again while a fallback is in use, doubling up to probeMax. Defaults 5000, 120000. */
  probeMin?: number;
  probeMax?: number;
}

/** How a publish fails. */
export class PublishError extends Error {
  /** The server's HTTP status (400, 401, 403, 413...), or 0 if the post could not be sent (closed client, no way to post). */
  status: number;
  /** The post's client-chosen id. */
  id: string;
}

export interface WallClient {
  readonly wall: string;
  readonly state: State;
  readonly transport: Transport | null;
  /** The cursor after the last message delivered. */
  readonly cursor: string;
  /** Each message once, in seq order. */
  on(event: "message", fn: (m: Message) => void): () => void;
  on(event: "state", fn: (s: StateEvent) => void): () => void;
  on(event: "gap", fn: (g: GapEvent) => void): () => void;
  /**
   * Posts text; resolves with the stored message. Retried until the server answers; stored once.
   * options.id: the post's id (a lowercase UUID4), to match the message when it arrives; default a new one.
   */
  publish(text: string, options?: { id?: string }): Promise<Message>;
  /** Ends the client: no more events or reconnects; pending publishes reject. */
  close(): void;
}

/** Starts a client of one wall; it connects in the background. */
export function connect(options?: Options): WallClient;
