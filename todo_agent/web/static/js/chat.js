// The chat panel: streamed replies (SSE over fetch), tool chips, confirmations, and the conversation list.
//
// A turn whose tool call needs the user's yes ends with a `confirm` event: the reply shows the question
// with Confirm and Cancel. Pressing one answers that confirmation on the server (at most once); typing
// "yes" or "no" works too, and any new message leaves the open question behind.

import { api, ApiError, readJson, request } from "./api.js";
import { $, h, icon } from "./dom.js";
import { readEvents } from "./sse.js";
import { formatAgo, formatWhen } from "./time.js";
import { showError } from "./toasts.js";

const CONVERSATION_KEY = "todo-agent.conversation";
const WORKING = {
  add_task: "Adding…", update_task: "Updating…", complete_task: "Completing…", delete_task: "Deleting…",
  list_tasks: "Looking…", set_reminder: "Setting a reminder…", delete_tasks: "Deleting…",
  change_tasks: "Changing…", edit_list: "Deleting the list…",
};
let confirmSerial = 0;

function parseOutput(output) {
  if (typeof output !== "string") return output;
  try {
    return JSON.parse(output);
  } catch {
    return output;
  }
}

const withDue = (title, iso) => (iso ? `${title} — ${formatWhen(iso)}` : title);

// What a finished tool call looks like as a chip: { kind, iconName, text }.
export function describeToolResult(name, rawOutput, isError) {
  const out = parseOutput(rawOutput);
  if (isError) {
    const why = typeof out === "string" ? out : out?.detail ?? out?.error ?? out?.message ?? "it failed";
    return { kind: "error", iconName: "alert", text: `${name.replaceAll("_", " ")}: ${why}` };
  }
  const task = out && typeof out === "object" ? out : {};
  switch (name) {
    case "add_task":
      return { kind: "added", iconName: "plus", text: `Added: ${withDue(task.title, task.due_at)}` };
    case "complete_task":
      return { kind: "completed", iconName: "check", text: `Completed: ${task.title}` };
    case "delete_task":
      return { kind: "deleted", iconName: "trash", text: `Deleted: ${task.title}` };
    case "set_reminder":
      return { kind: "updated", iconName: "bell", text: withDue(`Reminder: ${task.title}`, task.remind_at) };
    case "update_task":
      return { kind: "updated", iconName: "edit", text: `Updated: ${withDue(task.title, task.due_at)}` };
    case "list_tasks": {
      const n = Array.isArray(task.items) ? task.items.length : 0;
      return { kind: "listed", iconName: "list", text: `Listed ${n} ${n === 1 ? "task" : "tasks"}` };
    }
    default:
      return { kind: "updated", iconName: "check", text: name.replaceAll("_", " ") };
  }
}

function textOf(content) {
  if (typeof content === "string") return content;
  if (Array.isArray(content)) return content.map((part) => part?.text ?? "").join("");
  return content?.text ?? "";
}

export class ChatPanel {
  constructor(store) {
    this.store = store;
    this.messages = $("#messages");
    this.input = $("#composer-input");
    this.sendButton = $("#send-button");
    this.conversationId = localStorage.getItem(CONVERSATION_KEY);
    this.conversations = [];
    this.busy = false;
    this.bindComposer();
    $("#new-chat").addEventListener("click", () => this.newChat());
    const toggle = $("#conversations-toggle");
    toggle.addEventListener("click", () => this.toggleDrawer());
    $("#conversations").addEventListener("keydown", (e) => {
      if (e.key === "Escape" && $("#conversations").classList.contains("open")) {
        this.toggleDrawer(false);
        toggle.focus();
      }
    });
    // A click beside the open drawer closes it.
    document.querySelector(".chat-main").addEventListener("pointerdown", (e) => {
      if ($("#conversations").classList.contains("open") && !toggle.contains(e.target)) this.toggleDrawer(false);
    });
    for (const button of document.querySelectorAll(".suggestion")) {
      button.addEventListener("click", () => this.send(button.textContent));
    }
  }

  async start() {
    await this.loadConversations();
    if (this.conversationId) await this.open(this.conversationId, { quiet: true });
  }

  bindComposer() {
    const grow = () => {
      this.input.style.height = "auto";
      this.input.style.height = `${Math.min(this.input.scrollHeight + 2, 180)}px`;
    };
    this.input.addEventListener("input", grow);
    this.input.addEventListener("keydown", (e) => {
      if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
        e.preventDefault();
        $("#composer").requestSubmit();
      }
    });
    $("#composer").addEventListener("submit", (e) => {
      e.preventDefault();
      const text = this.input.value.trim();
      if (!text || this.busy) return;
      this.input.value = "";
      grow();
      this.send(text);
    });
  }

  toggleDrawer(open = !$("#conversations").classList.contains("open")) {
    $("#conversations").classList.toggle("open", open);
    const toggle = $("#conversations-toggle");
    toggle.setAttribute("aria-expanded", String(open));
    toggle.setAttribute("aria-label", open ? "Hide conversations" : "Show conversations");
    if (open) $("#conversations").querySelector("button")?.focus();
  }

  setBusy(busy) {
    this.busy = busy;
    this.sendButton.disabled = busy;
  }

  scrollToEnd(force = false) {
    const m = this.messages;
    if (force || m.scrollHeight - m.scrollTop - m.clientHeight < 160) m.scrollTop = m.scrollHeight;
  }

  addMessage(role, text = "") {
    $("#chat-empty").hidden = true;
    const bubble = h("div", { class: "bubble" }, text);
    const message = h("div", { class: `message message-${role}` });
    if (role === "assistant") {
      message.chips = h("div", { class: "chips" });
      message.append(h("span", { class: "sr-only" }, "Assistant: "), message.chips);
    } else {
      message.append(h("span", { class: "sr-only" }, "You: "));
    }
    message.append(bubble);
    message.bubble = bubble;
    this.messages.append(message);
    this.scrollToEnd(true);
    return message;
  }

  chip({ kind, iconName, text }, callId) {
    return h("span", { class: "chip", dataset: callId ? { kind, call: callId } : { kind } }, icon(iconName), h("span", { class: "chip-text", title: text }, text));
  }

  addChip(message, description, callId) {
    const chip = this.chip(description, callId);
    message.chips.append(chip);
    return chip;
  }

  async send(text) {
    if (this.busy) return;
    this.setBusy(true);
    this.leaveOpenConfirmations();
    this.addMessage("user", text);
    const reply = this.addMessage("assistant");
    reply.setAttribute("aria-busy", "true");
    const typing = h("div", { class: "typing", "aria-label": "Assistant is typing" }, h("span"), h("span"), h("span"));
    reply.append(typing);
    const pendingChips = [];
    const confirmations = [];
    let streamed = "";
    try {
      const response = await request("/api/chat/stream", {
        method: "POST",
        body: { message: text, conversation_id: this.conversationId ?? undefined },
        headers: { Accept: "text/event-stream" },
      });
      if (!response.ok) await readJson(response); // throws with the server's message
      for await (const { event, data } of readEvents(response)) {
        if (event === "start" && data.conversation_id) {
          this.remember(data.conversation_id);
        } else if (event === "delta") {
          typing.remove();
          streamed += data.text ?? "";
          reply.bubble.textContent = streamed;
        } else if (event === "tool_call") {
          pendingChips.push({ name: data.name, chip: this.addChip(reply, { kind: "pending", iconName: "dots", text: WORKING[data.name] ?? `${data.name}…` }) });
        } else if (event === "tool_result") {
          const chip = this.addChip(reply, describeToolResult(data.name, data.output, data.is_error), data.id);
          const index = pendingChips.findIndex((p) => p.name === data.name);
          if (index >= 0) pendingChips.splice(index, 1)[0].chip.replaceWith(chip);
          if (!data.is_error) this.applyToTasks(data.name, parseOutput(data.output));
        } else if (event === "confirm") {
          confirmations.push(data);
        } else if (event === "done") {
          if (data.conversation_id) this.remember(data.conversation_id);
          if (!streamed && data.reply) reply.bubble.textContent = data.reply;
          for (const confirmation of confirmations) this.addConfirmation(reply, confirmation);
        } else if (event === "error") {
          throw new ApiError(500, data.detail ?? "The assistant stopped unexpectedly.");
        }
        this.scrollToEnd();
      }
    } catch (e) {
      reply.classList.add("message-error");
      reply.bubble.textContent = e.message || "Something went wrong; try again.";
    } finally {
      typing.remove();
      for (const { chip } of pendingChips) chip.remove();
      reply.removeAttribute("aria-busy");
      this.setBusy(false);
      this.scrollToEnd();
      this.loadConversations().catch(() => {});
      // The question needs an answer: Cancel, the safe choice, takes the focus (Escape also cancels).
      reply.querySelector(".confirm:not([data-state]) .confirm-cancel")?.focus();
    }
  }

  // The question with Confirm and Cancel, under the assistant message that asked it.
  addConfirmation(message, confirmation) {
    const questionId = `confirm-question-${(confirmSerial += 1)}`;
    const destructive = /delete/.test(confirmation.action ?? "");
    const confirmButton = h("button", { type: "button", class: `btn btn-sm ${destructive ? "btn-danger" : "btn-primary"} confirm-go` }, "Confirm");
    const cancelButton = h("button", { type: "button", class: "btn btn-sm btn-secondary confirm-cancel" }, "Cancel");
    const status = h("p", { class: "confirm-status small", role: "status" });
    const box = h(
      "div",
      { class: "confirm", role: "group", "aria-labelledby": questionId, dataset: { id: confirmation.id } },
      h("p", { class: "confirm-question", id: questionId }, confirmation.question),
      h("div", { class: "confirm-actions" }, confirmButton, cancelButton),
      status,
    );
    // The call that asked is not a failure: its chip says it waits for the answer.
    const asking = message.chips?.querySelector(`.chip[data-call="${CSS.escape(confirmation.id)}"]`);
    asking?.replaceWith(this.chip({ kind: "asking", iconName: "alert", text: "Waiting for your answer" }, confirmation.id));
    box.buttons = [confirmButton, cancelButton];
    box.status = status;
    confirmButton.addEventListener("click", () => this.answer(box, confirmation, true));
    cancelButton.addEventListener("click", () => this.answer(box, confirmation, false));
    box.addEventListener("keydown", (e) => {
      if (e.key === "Escape" && !box.dataset.state) {
        e.stopPropagation();
        this.answer(box, confirmation, false);
      }
    });
    message.append(box);
    this.scrollToEnd(true);
    return box;
  }

  closeConfirmation(box, state, text) {
    box.dataset.state = state;
    for (const button of box.buttons) button.disabled = true;
    box.removeAttribute("aria-busy");
    box.status.textContent = text;
  }

  // A new message moves the conversation on: the server no longer takes an answer to an older question.
  leaveOpenConfirmations() {
    for (const box of this.messages.querySelectorAll(".confirm:not([data-state])")) {
      this.closeConfirmation(box, "left", "No longer pending: the conversation moved on.");
    }
  }

  async answer(box, confirmation, confirm) {
    if (box.dataset.state || box.getAttribute("aria-busy") === "true" || this.busy) return;
    box.setAttribute("aria-busy", "true");
    for (const button of box.buttons) button.disabled = true; // one press: a double click sends once
    box.status.textContent = confirm ? "Working…" : "Cancelling…";
    const path = `/api/conversations/${encodeURIComponent(this.conversationId)}/confirmations/${encodeURIComponent(confirmation.id)}`;
    let answered;
    try {
      answered = await api(path, { method: "POST", body: { confirm } });
    } catch (e) {
      if (e instanceof ApiError && (e.status === 404 || e.status === 409)) {
        this.closeConfirmation(box, "gone", e.message);
      } else {
        // Unreachable, or the server could not finish: pressing again is safe (it runs at most once).
        box.removeAttribute("aria-busy");
        for (const button of box.buttons) button.disabled = false;
        box.status.textContent = e.message || "That didn't go through; try again.";
        box.buttons[0].focus();
      }
      return;
    }
    this.closeConfirmation(box, confirm ? "confirmed" : "cancelled", confirm ? "Confirmed." : "Cancelled.");
    this.addMessage("user", answered.said);
    const outcome = this.addMessage("assistant", answered.reply);
    const call = answered.tool_call;
    if (call) {
      this.addChip(outcome, describeToolResult(call.name, call.output, call.is_error));
      if (!call.is_error) this.applyToTasks(call.name, parseOutput(call.output));
    }
    this.loadConversations().catch(() => {});
    this.input.focus();
  }

  // Tool results carry the task as it now is: show it at once (the /ws event follows).
  applyToTasks(name, output) {
    if (!output || typeof output !== "object") return;
    if (name === "delete_task" && output.deleted) this.store.remove(output.id);
    else if (Array.isArray(output.deleted)) for (const task of output.deleted) this.store.remove(task.id);
    else if (Array.isArray(output.changed)) for (const task of output.changed) this.store.upsert(task, { flash: true });
    else if (name === "list_tasks") for (const task of output.items ?? []) this.store.upsert(task);
    else if (typeof output.id === "number" && "completed" in output) this.store.upsert(output, { flash: true });
  }

  remember(id) {
    this.conversationId = id;
    localStorage.setItem(CONVERSATION_KEY, id);
  }

  newChat() {
    this.conversationId = null;
    localStorage.removeItem(CONVERSATION_KEY);
    for (const m of this.messages.querySelectorAll(".message")) m.remove();
    $("#chat-empty").hidden = false;
    $("#chat-title").textContent = "New chat";
    this.renderConversations();
    this.toggleDrawer(false);
    this.input.focus();
  }

  async open(id, { quiet = false } = {}) {
    try {
      const conversation = await api(`/api/conversations/${encodeURIComponent(id)}`);
      this.remember(conversation.id ?? id);
      for (const m of this.messages.querySelectorAll(".message")) m.remove();
      const messages = conversation.messages ?? [];
      $("#chat-empty").hidden = messages.length > 0;
      let chips = []; // tool results wait for the assistant message they belong to
      for (const m of messages) {
        if (m.role === "tool") {
          chips.push([describeToolResult(m.name ?? "tool", m.content, typeof m.content === "string"), m.call_id]);
        } else if (m.role === "user" || m.role === "assistant") {
          const message = this.addMessage(m.role, textOf(m.content));
          if (m.role === "assistant") chips.forEach(([chip, callId]) => this.addChip(message, chip, callId));
          if (m.role === "assistant") chips = [];
        }
      }
      if (chips.length) {
        const message = this.addMessage("assistant");
        chips.forEach(([chip, callId]) => this.addChip(message, chip, callId));
      }
      const asked = [...this.messages.querySelectorAll(".message-assistant")].at(-1);
      for (const confirmation of conversation.confirmations ?? []) if (asked) this.addConfirmation(asked, confirmation);
      $("#chat-title").textContent = conversation.title || "New chat";
      this.renderConversations();
      this.toggleDrawer(false);
    } catch (e) {
      if (e instanceof ApiError && e.status === 404) {
        if (this.conversationId === id) this.newChat();
      }
      if (!quiet) showError(e.message);
    }
  }

  async loadConversations() {
    try {
      const page = await api("/api/conversations");
      this.conversations = page.items ?? [];
    } catch (e) {
      if (!(e instanceof ApiError && e.status === 404)) throw e;
      this.conversations = []; // the chat API is not served by this deployment
    }
    this.renderConversations();
  }

  renderConversations() {
    const list = $("#conversation-list");
    const current = this.conversations.find((c) => c.id === this.conversationId);
    if (current) $("#chat-title").textContent = current.title || "New chat";
    $("#conversation-empty").hidden = this.conversations.length > 0;
    list.replaceChildren(...this.conversations.map((c) => this.conversationItem(c)));
  }

  conversationItem(conversation) {
    const title = conversation.title || "New chat";
    const isCurrent = conversation.id === this.conversationId;
    const item = h("li", { class: "conversation", "aria-current": isCurrent ? "true" : undefined });
    const openButton = h(
      "button",
      { type: "button", class: "conversation-open", onclick: () => this.open(conversation.id) },
      h("span", { class: "title" }, title),
      h("span", { class: "when" }, formatAgo(conversation.updated_at ?? conversation.created_at)),
    );
    const actions = h(
      "div",
      { class: "conversation-actions" },
      h("button", { type: "button", class: "btn btn-ghost btn-icon", "aria-label": `Rename “${title}”`, onclick: () => this.rename(item, conversation) }, icon("pencil")),
      h("button", { type: "button", class: "btn btn-ghost btn-icon", "aria-label": `Delete “${title}”`, onclick: () => this.confirmDelete(item, conversation) }, icon("trash")),
    );
    item.append(openButton, actions);
    return item;
  }

  rename(item, conversation) {
    const input = h("input", { type: "text", value: conversation.title || "", "aria-label": "Conversation name", maxlength: 120 });
    item.replaceChildren(input);
    input.focus();
    input.select();
    let finished = false;
    const finish = async (save) => {
      if (finished) return;
      finished = true;
      const title = input.value.trim();
      if (save && title && title !== conversation.title) {
        try {
          await api(`/api/conversations/${encodeURIComponent(conversation.id)}`, { method: "PATCH", body: { title } });
          conversation.title = title;
        } catch (e) {
          showError(e.message);
        }
      }
      this.renderConversations();
      this.focusConversation(conversation.id);
    };
    input.addEventListener("keydown", (e) => {
      if (e.key === "Enter") finish(true);
      else if (e.key === "Escape") {
        e.stopPropagation();
        finish(false);
      }
    });
    input.addEventListener("blur", () => finish(true));
  }

  confirmDelete(item, conversation) {
    const cancel = h("button", { type: "button", class: "btn btn-ghost btn-sm", onclick: () => { this.renderConversations(); this.focusConversation(conversation.id); } }, "Cancel");
    const confirm = h("button", { type: "button", class: "btn btn-danger btn-sm", onclick: () => this.deleteConversation(conversation) }, "Delete");
    item.replaceChildren(h("div", { class: "conversation-confirm", role: "group", "aria-label": "Confirm delete" }, h("span", {}, "Delete this chat?"), cancel, confirm));
    cancel.focus();
  }

  async deleteConversation(conversation) {
    try {
      await api(`/api/conversations/${encodeURIComponent(conversation.id)}`, { method: "DELETE" });
    } catch (e) {
      if (!(e instanceof ApiError && e.status === 404)) showError(e.message);
    }
    this.conversations = this.conversations.filter((c) => c.id !== conversation.id);
    if (conversation.id === this.conversationId) this.newChat();
    else this.renderConversations();
    $("#new-chat").focus();
  }

  focusConversation(id) {
    const index = this.conversations.findIndex((c) => c.id === id);
    $("#conversation-list").children[index]?.querySelector(".conversation-open")?.focus();
  }
}
