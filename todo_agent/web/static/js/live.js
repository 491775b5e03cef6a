// The /ws connection: task and list events and reminders as they happen, with reconnect and resume
// (a reconnect asks for everything after the last event id seen; the list is refetched too).
//
//   const live = new LiveConnection({ onTask, onNotification, onOpen, onState });
//   live.start();

import { auth } from "./api.js";

const MAX_DELAY_MS = 10_000;
const PING_EVERY_MS = 25_000;
const PONG_WITHIN_MS = 10_000;
const POLICY_VIOLATION = 1008; // the server refused the token

export class LiveConnection {
  constructor({ onTask, onList, onNotification, onOpen, onState, onReset, onUnauthorized }) {
    Object.assign(this, { onTask, onList, onNotification, onOpen, onState, onReset, onUnauthorized });
    this.socket = null;
    this.attempt = 0;
    this.timer = null;
    this.stopped = true;
    this.lastEventId = null;
    this.seen = new Set(); // event ids already applied (a resume may replay some)
    window.addEventListener("online", () => this.reconnectNow());
    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState === "visible") this.reconnectNow();
    });
  }

  url() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const query = new URLSearchParams();
    if (auth.token) query.set("token", auth.token);
    // The hub replays what was missed since this id before anything live, in order.
    if (this.lastEventId) query.set("last_event_id", this.lastEventId);
    const search = query.toString();
    return `${scheme}://${location.host}/ws${search ? `?${search}` : ""}`;
  }

  start() {
    this.stopped = false;
    this.connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    clearInterval(this.heartbeat);
    this.socket?.close(1000, "signed out");
    this.socket = null;
  }

  reconnectNow() {
    if (this.stopped || (this.socket && this.socket.readyState <= WebSocket.OPEN)) return;
    clearTimeout(this.timer);
    this.connect();
  }

  connect() {
    this.onState(this.attempt === 0 ? "connecting" : "reconnecting");
    let socket;
    try {
      socket = new WebSocket(this.url());
    } catch {
      this.scheduleReconnect();
      return;
    }
    this.socket = socket;
    socket.addEventListener("open", () => {
      this.attempt = 0;
      this.onState("live");
      this.startHeartbeat(socket);
      this.onOpen();
    });
    socket.addEventListener("message", (event) => this.receive(event.data));
    socket.addEventListener("close", (event) => {
      if (this.socket !== socket) return;
      this.socket = null;
      clearInterval(this.heartbeat);
      if (event.code === POLICY_VIOLATION) {
        this.stopped = true;
        this.onUnauthorized(this.refusal ?? "The server did not accept the token.");
      } else if (!this.stopped) {
        this.scheduleReconnect();
      }
    });
  }

  // A connection that silently died (laptop sleep, proxy) is noticed by a missing pong.
  startHeartbeat(socket) {
    clearInterval(this.heartbeat);
    this.heartbeat = setInterval(() => {
      if (socket.readyState !== WebSocket.OPEN) return;
      socket.send(JSON.stringify({ type: "ping" }));
      clearTimeout(this.pongTimer);
      this.pongTimer = setTimeout(() => socket.close(4000, "no pong"), PONG_WITHIN_MS);
    }, PING_EVERY_MS);
  }

  scheduleReconnect() {
    this.attempt += 1;
    this.onState("reconnecting");
    const base = Math.min(MAX_DELAY_MS, 500 * 2 ** (this.attempt - 1));
    const delay = base / 2 + Math.random() * (base / 2);
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.connect(), delay);
  }

  receive(raw) {
    let message;
    try {
      message = JSON.parse(raw);
    } catch {
      return;
    }
    if (message.id) {
      if (this.seen.has(message.id)) return;
      this.seen.add(message.id);
      if (this.seen.size > 500) this.seen.delete(this.seen.values().next().value);
    }
    if (message.id && (!this.lastEventId || Number(message.id) > Number(this.lastEventId))) {
      this.lastEventId = message.id;
    }
    if (message.type === "task") this.onTask(message);
    else if (message.type === "list") this.onList?.(message);
    else if (message.type === "notification") this.onNotification(message);
    else if (message.type === "pong") clearTimeout(this.pongTimer);
    else if (message.type === "reset") this.onReset();
    else if (message.type === "error") this.refusal = message.detail;
  }
}
