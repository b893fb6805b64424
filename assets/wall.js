// wall.js: the wall page, built on wall-client.js (the library any page
// can use) and wall-view.js (the inbox). The server rendered the newest
// messages and the form; this script keeps the inbox live from the
// page's cursor, posts with the library (each post retried until it is
// stored, once), and says what is going on: a polite status line, gap and
// reset notices that mark where and then go away, a "new messages"
// button when the reader has scrolled up. Without JavaScript the page
// still works: the form posts and the server redirects back.

import { connect, PublishError } from "./wall-client.js";
import { uuid4 } from "./wall-publish.js";
import { Inbox } from "./wall-view.js";

const ds = document.body.dataset;
const $ = (id) => document.getElementById(id);
const form = $("messageform");
const input = $("message");
const statusEl = $("status");
const countdownEl = $("countdown");
const noticeEl = $("notice");
const errorEl = $("form-error");

const names = { websocket: "WebSocket", sse: "SSE", longpoll: "long-poll" };
const noticeFor = 10000; // ms a gap or reset notice stays

const inbox = new Inbox($("scroller"), $("inbox"), $("unread"), Number(ds.keep) || 200);
inbox.adopt(JSON.parse($("wall-meta").textContent || "[]"));

// ?transport=longpoll (or sse, or a list) picks the transports: for
// trying each one, and for networks that need one.
const query = new URLSearchParams(location.search);
const only = query.get("transport");
const client = connect({
  wall: ds.wall || "main",
  cursor: ds.last || "0",
  transports: only ? only.split(",") : undefined,
  deadAfter: Number(ds.deadAfter) || undefined,
  pollTimeout: Number(ds.pollTimeout) || undefined,
  // A page opened with ?token= (a sign-in link) connects with it; otherwise
  // the wall_token cookie, if any, goes with every request by itself.
  token: query.get("token") || undefined,
});
window.wallClient = client; // for tests and curious people

// --- status ------------------------------------------------------------------

// The status element is a polite live region: it changes (and is read
// out) only when the state does. The countdown beside it is for the eye.
let ticking = 0;
function setStatus(kind, text, until) {
  statusEl.dataset.state = kind;
  if (statusEl.textContent !== text) statusEl.textContent = text;
  clearInterval(ticking);
  countdownEl.textContent = "";
  if (until) {
    const tick = () => {
      const s = Math.ceil((until - Date.now()) / 1000);
      countdownEl.textContent = s > 0 ? `in ${s} s` : "";
    };
    tick();
    ticking = setInterval(tick, 1000);
  }
}

// notice shows a passing notice (gaps, resets), which goes away by itself.
let noticeTimer = 0;
function notice(text) {
  clearTimeout(noticeTimer);
  noticeEl.querySelector(".text").textContent = text;
  noticeEl.hidden = false;
  noticeTimer = setTimeout(() => (noticeEl.hidden = true), noticeFor);
}

// warn shows what stays true until the page is reloaded.
function warn(text) {
  const w = $("warning");
  w.textContent = text;
  w.hidden = false;
}
noticeEl.querySelector(".dismiss").addEventListener("click", () => (noticeEl.hidden = true));

// errors shown next to the form; network trouble is cleared once live.
let errorKind = "";
function showError(text, kind = "refused") {
  errorEl.textContent = text;
  errorEl.hidden = !text;
  errorKind = text ? kind : "";
}

client.on("state", (s) => {
  switch (s.state) {
    case "connecting":
      setStatus("connecting", "connecting…");
      break;
    case "live":
      setStatus("live", `live (${names[s.transport]})`);
      if (errorKind === "network") showError("");
      break;
    case "reconnecting":
      setStatus("reconnecting", "reconnecting…", s.retryAt);
      break;
    case "offline":
      if (s.status === 401 || s.status === 403) {
        setStatus("denied", "not allowed");
        warn(
          s.status === 401
            ? `Not allowed: this wall needs you to sign in (${s.reason}).`
            : `Not allowed: you may not read this wall (${s.reason}).`,
        );
        input.disabled = true;
      } else {
        setStatus("offline", "offline");
      }
      break;
    case "closed":
      setStatus("offline", "closed");
  }
});

client.on("message", (m) => inbox.add(m));
client.on("gap", (g) => {
  inbox.gap(g);
  notice(
    g.reset
      ? "The wall restarted: messages from before it are gone. A line in the list marks where."
      : `${g.missed} message${g.missed === 1 ? " was" : "s were"} missed: a line in the list marks where.`,
  );
});

// --- posting -----------------------------------------------------------------

const limit = Number(ds.bodyLimit) || 0;
const utf8 = new TextEncoder();

form.addEventListener("submit", (ev) => {
  ev.preventDefault();
  const text = input.value;
  if (!text.trim()) {
    showError("Write something first.");
    return;
  }
  const size = utf8.encode(text).length;
  if (limit && size > limit) {
    showError(`Too long: ${size} bytes, at most ${limit}. Shorten it and post again.`);
    return;
  }
  showError("");
  const id = uuid4();
  inbox.sending(id, text);
  input.value = "";
  client.publish(text, { id }).then(
    () => inbox.stored(id),
    (err) => {
      inbox.sent(id);
      if (!input.value) input.value = text; // nothing typed is lost
      const why = err instanceof PublishError ? err.message : String(err);
      showError(`Not posted: ${why}`, err.status ? "refused" : "network");
    },
  );
  input.focus();
});

// Enter sends; Shift+Enter (or an input method composing) makes a new line.
// The line break of an Enter that sent is refused in beforeinput too: some
// key event sources (automation, remote desktops) deliver it separately.
let sentByEnter = false;
input.addEventListener("keydown", (ev) => {
  sentByEnter = false;
  if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing && !ev.altKey && !ev.ctrlKey && !ev.metaKey) {
    ev.preventDefault();
    sentByEnter = true;
    form.requestSubmit();
  }
});
input.addEventListener("beforeinput", (ev) => {
  if (sentByEnter && (ev.inputType === "insertLineBreak" || ev.inputType === "insertParagraph")) ev.preventDefault();
  sentByEnter = false;
});
input.addEventListener("keyup", () => (sentByEnter = false));
$("form-hint").hidden = false;

// Posting over HTTP needs this site's _xsrf cookie: say so if it is blocked.
if (!navigator.cookieEnabled || !/(?:^|;\s*)_xsrf=/.test(document.cookie)) {
  warn(
    "Cookies are blocked for this site: posts can go only over a live WebSocket, not over HTTP. " +
      "Allow cookies for this site to post reliably.",
  );
}
