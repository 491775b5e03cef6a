// The task panel: filter, add, complete, inline edit of title and due time, delete with undo.

import { api, ApiError } from "./api.js";
import { $, h, icon } from "./dom.js";
import { editableWhen, formatFull, formatWhen, isOverdue, localToIso } from "./time.js";
import { showError, showToast } from "./toasts.js";

const UNDO_SECONDS = 5;
const setText = (el, text) => {
  if (el.textContent !== text) el.textContent = text;
};
const PRIORITY_LABEL = { high: "High", medium: "Medium", low: "Low" };

export class TaskPanel {
  constructor(store) {
    this.store = store;
    this.list = $("#task-list");
    this.rows = new Map(); // task id -> <li>
    this.pendingDeletes = new Map(); // task id -> send()
    store.addEventListener("change", (e) => this.render(e.detail.flashIds));
    this.bindFilter();
    this.bindAddForm();
    $("#more-tasks button").addEventListener("click", () => this.store.load({ more: true }).catch((e) => showError(e.message)));
    // Refresh relative labels ("tomorrow", overdue) as time passes.
    setInterval(() => this.render(), 60_000);
    // A delete still waiting for its undo window is sent when the page goes away.
    window.addEventListener("pagehide", () => this.flushDeletes());
  }

  bindFilter() {
    for (const radio of document.querySelectorAll('input[name="status"]')) {
      radio.addEventListener("change", () => {
        if (radio.checked) this.store.load({ status: radio.value }).catch((e) => showError(e.message));
      });
    }
  }

  bindAddForm() {
    const form = $("#add-task");
    const title = $("#add-title");
    const due = $("#add-due");
    const error = $("#add-error");
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const text = title.value.trim();
      if (!text) {
        title.focus();
        return;
      }
      error.hidden = true;
      title.removeAttribute("aria-invalid");
      due.removeAttribute("aria-invalid");
      const body = { title: text };
      if (due.value.trim()) body.due = localToIso(due.value) ?? due.value.trim();
      const button = form.querySelector("button[type=submit]");
      button.disabled = true;
      try {
        const task = await api("/api/tasks", { method: "POST", body });
        this.store.upsert(task, { flash: true });
        title.value = "";
        due.value = "";
        title.focus();
      } catch (e) {
        error.textContent = e.message;
        error.hidden = false;
        (e.field === "due" ? due : title).setAttribute("aria-invalid", "true");
      } finally {
        button.disabled = false;
      }
    });
  }

  render(flashIds = []) {
    const tasks = this.store.visible();
    const seen = new Set();
    tasks.forEach((task, index) => {
      seen.add(task.id);
      let row = this.rows.get(task.id);
      if (!row) {
        row = this.createRow(task);
        if (this.store.loaded && this.rows.size) row.classList.add("entering");
        this.rows.set(task.id, row);
      } else {
        this.updateRow(row, task);
      }
      if (this.list.children[index] !== row) this.list.insertBefore(row, this.list.children[index] ?? null);
      if (flashIds.includes(task.id)) {
        row.classList.remove("flash");
        void row.offsetWidth; // restart the animation
        row.classList.add("flash");
      }
    });
    for (const [id, row] of this.rows) {
      if (!seen.has(id)) {
        if (row.contains(document.activeElement)) this.list.focus?.();
        row.remove();
        this.rows.delete(id);
      }
    }
    this.renderSummary(tasks);
  }

  renderSummary(tasks) {
    $("#more-tasks").hidden = !this.store.nextCursor;
    const empty = $("#task-empty");
    empty.hidden = !this.store.loaded || tasks.length > 0;
    const emptyTitle = empty.querySelector(".task-empty-title");
    emptyTitle.textContent = {
      pending: "All clear — nothing pending",
      completed: "Nothing completed yet",
      all: "No tasks yet",
    }[this.store.status];
    const overdue = tasks.filter((t) => isOverdue(t)).length;
    const pending = tasks.filter((t) => !t.completed).length;
    const parts = [];
    if (this.store.status !== "completed") parts.push(`${pending} pending`);
    if (this.store.status !== "pending") parts.push(`${tasks.length - pending} completed`);
    if (overdue) parts.push(`${overdue} overdue`);
    setText($("#task-summary"), tasks.length ? parts.join(" · ") : ""); // a live region: only real changes
    if (this.store.status === "pending") setText($("#tab-tasks-count"), tasks.length ? String(tasks.length) : "");
  }

  createRow(task) {
    const row = h("li", { class: "task", dataset: { id: task.id } });
    // Animations replay whenever a hidden panel is shown again, so they run once and are removed.
    row.addEventListener("animationend", () => row.classList.remove("entering", "flash"));
    row.task = task;
    row.checkbox = h("input", { type: "checkbox", class: "check", onchange: () => this.toggle(row) });
    row.titleButton = h("button", { type: "button", class: "task-title", onclick: () => this.editTitle(row) });
    row.metaLine = h("div", { class: "task-meta" });
    row.deleteButton = h("button", { type: "button", class: "btn btn-ghost btn-icon", onclick: () => this.remove(row) }, icon("trash"));
    row.append(row.checkbox, h("div", { class: "task-body" }, row.titleButton, row.metaLine), h("div", { class: "task-actions" }, row.deleteButton));
    this.updateRow(row, task);
    return row;
  }

  updateRow(row, task) {
    row.task = task;
    const overdue = isOverdue(task);
    row.classList.toggle("done", task.completed);
    row.classList.toggle("overdue", overdue);
    row.checkbox.checked = task.completed;
    row.checkbox.setAttribute("aria-label", `${task.completed ? "Completed" : "Complete"}: ${task.title}`);
    if (!row.editingTitle) {
      row.titleButton.textContent = task.title;
      row.titleButton.setAttribute("aria-label", `Edit title: ${task.title}`);
    }
    row.deleteButton.setAttribute("aria-label", `Delete ${task.title}`);
    if (!row.editingDue) row.metaLine.replaceChildren(...this.metaItems(row, task, overdue));
  }

  metaItems(row, task, overdue) {
    const items = [];
    const dueButton = this.dueButton(row, task, overdue);
    if (task.due_at) items.push(dueButton);
    if (overdue) items.push(h("span", { class: "badge badge-overdue" }, "Overdue"));
    if (PRIORITY_LABEL[task.priority]) {
      items.push(h("span", { class: `badge badge-${task.priority}` }, PRIORITY_LABEL[task.priority], h("span", { class: "sr-only" }, " priority")));
    }
    if (task.recurrence_text) items.push(h("span", { class: "meta-note", title: "Repeats" }, icon("repeat"), task.recurrence_text));
    if (task.remind_at && !task.completed) {
      items.push(h("span", { class: "meta-note", title: `Reminder ${formatFull(task.remind_at)}` }, icon("bell"), h("span", { class: "sr-only" }, "Reminder "), formatWhen(task.remind_at)));
    }
    for (const tag of task.tags ?? []) items.push(h("span", { class: "tag" }, `#${tag}`));
    if (!task.due_at) items.push(dueButton); // "Set due" goes last so it does not push the rest
    return items;
  }

  dueButton(row, task, overdue) {
    const dueText = task.due_at ? formatWhen(task.due_at) : "Set due";
    return h(
      "button",
      {
        type: "button",
        class: `due${task.due_at ? "" : " empty"}`,
        title: task.due_at ? `Due ${formatFull(task.due_at)}` : "Add a due time",
        "aria-label": task.due_at ? `Due ${dueText}${overdue ? ", overdue" : ""}. Edit due time` : `Add a due time to ${task.title}`,
        onclick: () => this.editDue(row),
      },
      icon("calendar"),
      h("time", { datetime: task.due_at ?? undefined }, dueText),
    );
  }

  async toggle(row) {
    const task = row.task;
    const done = row.checkbox.checked;
    this.store.linger(task.id, 1200);
    this.store.upsert({ ...task, completed: done }); // optimistic; the reply carries the real state
    try {
      const updated = await api(`/api/tasks/${task.id}/${done ? "complete" : "reopen"}`, { method: "POST" });
      this.store.upsert(updated);
      if (done && updated.recurrence_text) showToast({ text: `Completed “${updated.title}”. The next one is on its way.` });
    } catch (e) {
      this.store.upsert(task); // same version: puts the checkbox back
      showError(e.message);
      this.refresh(task.id);
    }
  }

  inlineInput(value, { label, className = "", hint }) {
    const input = h("input", { type: "text", class: `inline-edit ${className}`, value, "aria-label": label, autocomplete: "off" });
    if (hint) input.setAttribute("placeholder", hint);
    return input;
  }

  editTitle(row) {
    if (row.editingTitle) return;
    row.editingTitle = true;
    const input = this.inlineInput(row.task.title, { label: "Task title" });
    row.titleButton.replaceWith(input);
    input.focus();
    input.select();
    this.finishOnKeys(input, async (save) => {
      const title = input.value.trim();
      if (save && title && title !== row.task.title) {
        const ok = await this.patch(row.task, { title });
        if (!ok) return false;
      }
      row.editingTitle = false;
      input.replaceWith(row.titleButton);
      this.updateRow(row, this.store.tasks.get(row.task.id) ?? row.task);
      row.titleButton.focus();
      return true;
    });
  }

  editDue(row) {
    if (row.editingDue) return;
    row.editingDue = true;
    const original = editableWhen(row.task.due_at);
    const input = this.inlineInput(original, { label: `Due time for ${row.task.title}`, className: "due-edit", hint: "e.g. tomorrow 5pm" });
    const hint = h("span", { class: "inline-hint", id: `due-hint-${row.task.id}` }, "Enter to save · Esc to cancel · empty clears");
    input.setAttribute("aria-describedby", hint.id);
    row.metaLine.replaceChildren(input, hint);
    input.focus();
    input.select();
    this.finishOnKeys(input, async (save) => {
      const text = input.value.trim();
      if (save && text !== original) {
        const due = text ? localToIso(text) ?? text : null;
        const ok = await this.patch(row.task, { due });
        if (!ok) return false;
      }
      row.editingDue = false;
      this.updateRow(row, this.store.tasks.get(row.task.id) ?? row.task);
      row.metaLine.querySelector(".due")?.focus();
      return true;
    });
  }

  // Enter or leaving the field saves, Escape cancels. ``finish(save)`` returns false to keep editing.
  finishOnKeys(input, finish) {
    let busy = false;
    const done = async (save) => {
      if (busy || !input.isConnected) return;
      busy = true;
      const finished = await finish(save);
      busy = false;
      if (!finished) {
        input.setAttribute("aria-invalid", "true");
        input.focus();
      }
    };
    input.addEventListener("keydown", (e) => {
      if (e.key === "Enter") {
        e.preventDefault();
        done(true);
      } else if (e.key === "Escape") {
        e.preventDefault();
        done(false);
      }
    });
    input.addEventListener("blur", () => setTimeout(() => done(true), 0));
  }

  async patch(task, changes) {
    try {
      const updated = await api(`/api/tasks/${task.id}`, {
        method: "PATCH",
        body: changes,
        headers: { "If-Match": String(task.version) },
      });
      this.store.upsert(updated);
      return true;
    } catch (e) {
      if (e instanceof ApiError && e.status === 409) {
        showError("This task changed somewhere else; showing the latest version.");
        await this.refresh(task.id);
        return true;
      }
      showError(e.message);
      return e instanceof ApiError && e.status === 404;
    }
  }

  async refresh(id) {
    try {
      this.store.upsert(await api(`/api/tasks/${id}`));
    } catch (e) {
      if (e instanceof ApiError && e.status === 404) this.store.remove(id);
    }
  }

  remove(row) {
    const task = row.task;
    const next = row.nextElementSibling ?? row.previousElementSibling;
    this.store.hide(task.id, true);
    (next?.querySelector(".check") ?? $("#add-title")).focus();
    let sent = false;
    const send = async () => {
      if (sent) return;
      sent = true;
      this.pendingDeletes.delete(task.id);
      try {
        await api(`/api/tasks/${task.id}`, { method: "DELETE", keepalive: true });
        this.store.remove(task.id);
      } catch (e) {
        if (e instanceof ApiError && e.status === 404) return this.store.remove(task.id);
        this.store.hide(task.id, false);
        showError(`Could not delete “${task.title}”: ${e.message}`);
      }
    };
    this.pendingDeletes.set(task.id, send);
    showToast({
      text: `Deleted “${task.title}”.`,
      timeout: UNDO_SECONDS * 1000,
      onTimeout: send,
      action: {
        label: "Undo",
        run: () => {
          sent = true;
          this.pendingDeletes.delete(task.id);
          this.store.hide(task.id, false);
          this.rows.get(task.id)?.querySelector(".check")?.focus();
        },
      },
    });
  }

  flushDeletes() {
    for (const send of [...this.pendingDeletes.values()]) send();
  }
}
