// Start-up: who am I (sign-in when the server asks for a token), then the panels and live updates.

import { api, ApiError, auth } from "./api.js";
import { ChatPanel } from "./chat.js";
import { $ } from "./dom.js";
import { ListPanel } from "./lists.js";
import { LiveConnection } from "./live.js";
import { TaskStore } from "./store.js";
import { TaskPanel } from "./tasks.js";
import { browserZone, formatWhen } from "./time.js";
import { showError, showToast } from "./toasts.js";
import { Undo } from "./undo.js";

const CONNECTION_TEXT = { connecting: "Connecting…", live: "Live", reconnecting: "Reconnecting…" };

let live = null;
let started = false;

// An identity provider's login page can hand the token over as /#access_token=<JWT>.
function takeTokenFromUrl() {
  const params = new URLSearchParams(location.hash.slice(1));
  const token = params.get("access_token") ?? params.get("token");
  if (token) {
    auth.token = token;
    history.replaceState(null, "", location.pathname + location.search);
  }
}

function show(view) {
  $("#boot").hidden = view !== "boot";
  $("#signin").hidden = view !== "signin";
  $("#app").hidden = view !== "app";
}

function showSignIn(message) {
  live?.stop();
  show("signin");
  const error = $("#signin-error");
  error.textContent = message ?? "";
  error.hidden = !message;
  $("#signin-token").focus();
}

async function boot() {
  takeTokenFromUrl();
  let me;
  try {
    me = await api("/api/me");
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) {
      const rejected = auth.token;
      auth.token = null; // a token the server refuses is of no further use
      showSignIn(rejected ? e.message : null);
      return;
    }
    $("#boot").textContent = `${e.message} Retrying…`;
    setTimeout(boot, 2000);
    return;
  }
  show("app");
  if (me.auth_required) {
    $("#whoami").textContent = me.user_id;
    $("#whoami").title = `Signed in as ${me.user_id}`;
    $("#whoami").hidden = false;
    $("#signout-button").hidden = false;
  }
  syncTimeZone(me);
  if (!started) startApp();
  else live.start();
}

// Natural-language times ("tomorrow 5pm") are read in the user's saved zone; adopt the browser's
// zone when the user never chose one, so what they type means what they see.
function syncTimeZone(me) {
  const zone = browserZone();
  if (!me.timezone && zone && zone !== me.effective_timezone) {
    api("/api/me", { method: "PATCH", body: { timezone: zone } }).catch(() => {});
  }
}

function startApp() {
  started = true;
  const store = new TaskStore();
  const lists = new ListPanel(store);
  const undo = new Undo(store, lists);
  lists.undo = undo;
  new TaskPanel(store, lists, undo);
  const chat = new ChatPanel(store);
  bindTabs();
  bindNotifications();
  lists.refresh().catch((e) => showError(e.message)); // chooses the Inbox and loads its tasks
  chat.start().catch((e) => showError(e.message));
  live = new LiveConnection({
    onState: (state) => {
      const el = $("#connection");
      el.dataset.state = state;
      el.querySelector(".connection-text").textContent = CONNECTION_TEXT[state];
    },
    // Catch up on anything missed while away.
    onOpen: () => lists.refresh().then(() => store.load()).catch(() => {}),
    onTask: (event) => {
      store.noteChange(event);
      if (event.event_type === "deleted") store.remove(event.task_id);
      else if (event.event_type === "created" && store.deletedIds.has(event.task_id)) store.restore(event.task); // an undo
      else store.upsert(event.task, { flash: true });
      lists.refreshSoon(); // open task counts
    },
    onList: () => lists.refreshSoon(),
    onNotification: notify,
    onReset: () => lists.refresh().then(() => store.load()).catch(() => {}),
    onUnauthorized: (detail) => showSignIn(`Please sign in again: ${detail}`),
  });
  live.start();
}

// The server's ``body`` is worded for email; the page says it briefly, in the browser's zone.
function notify(message) {
  const when = message.due_at ? `Due ${formatWhen(message.due_at)}` : "";
  const text = message.title ? [message.title, when].filter(Boolean).join(" — ") : message.body;
  showToast({ title: "Reminder", text, kind: "reminder", timeout: 12_000 });
  if ("Notification" in window && Notification.permission === "granted") {
    try {
      new Notification(`Reminder: ${message.title ?? "a task"}`, { body: when, tag: String(message.id ?? message.task_id) });
    } catch {
      // Some browsers only allow notifications from a service worker; the toast is enough.
    }
  }
}

function bindNotifications() {
  const button = $("#notify-button");
  if (!("Notification" in window) || Notification.permission !== "default") return;
  button.hidden = false;
  button.addEventListener("click", async () => {
    const answer = await Notification.requestPermission();
    button.hidden = true;
    if (answer === "granted") showToast({ text: "Reminders will also appear as notifications." });
  });
}

function bindTabs() {
  const tabs = [$("#tab-chat"), $("#tab-tasks")];
  const select = (tab, focus) => {
    for (const t of tabs) {
      const on = t === tab;
      t.setAttribute("aria-selected", String(on));
      t.tabIndex = on ? 0 : -1;
    }
    $(".layout").dataset.active = tab === tabs[0] ? "chat" : "tasks";
    if (focus) tab.focus();
  };
  for (const tab of tabs) {
    tab.addEventListener("click", () => select(tab, false));
    tab.addEventListener("keydown", (e) => {
      if (e.key === "ArrowRight" || e.key === "ArrowLeft") select(tabs[1 - tabs.indexOf(tab)], true);
    });
  }
}

function bindSignIn() {
  $("#signin-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const token = $("#signin-token").value.trim().replace(/^Bearer\s+/i, "");
    if (!token) return showSignIn("Paste a token first.");
    auth.token = token;
    if (started) location.reload(); // a different user: start from a clean page
    else boot();
  });
  $("#signout-button").addEventListener("click", () => {
    auth.token = null;
    localStorage.removeItem("todo-agent.conversation");
    location.reload();
  });
  window.addEventListener("auth:required", (e) => {
    if (!$("#app").hidden) showSignIn(`Please sign in again: ${e.detail}`);
  });
}

bindSignIn();
boot();
