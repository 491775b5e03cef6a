// The task panel: filter, add, complete, inline edit of title and due time, delete; subtasks
// nested under their parent (collapsible); a selection mode for batch actions. Every write sends
// an Idempotency-Key and offers an undo (./undo.js).

import { api, ApiError, newKey, write } from "./api.js";
import { ask } from "./dialog.js";
import { $, h, icon } from "./dom.js";
import { editableWhen, formatFull, formatWhen, isOverdue, localToIso } from "./time.js";
import { showError } from "./toasts.js";

const BATCH_VERBS = { complete: "Completed", move: "Moved", tag: "Tagged", delete: "Deleted" };
const MAX_LEVELS = 3; // the server's subtask depth (tasks.service.MAX_DEPTH); deeper is refused there
const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;
const setText = (el, text) => {
  if (el.textContent !== text) el.textContent = text;
};
const PRIORITY_LABEL = { high: "High", medium: "Medium", low: "Low" };

export class TaskPanel {
  constructor(store, lists, undo) {
    this.store = store;
    this.lists = lists;
    this.undo = undo;
    this.list = $("#task-list");
    this.rows = new Map(); // task id -> <li>
    this.collapsed = new Set(); // parent ids whose subtasks are folded away
    this.selection = new Set(); // task ids chosen for a batch action
    this.allSelected = false; // "every task in this view": the batch goes by filter
    store.addEventListener("change", (e) => this.render(e.detail.flashIds));
    this.bindFilter();
    this.bindAddForm();
    this.bindBatch();
    $("#more-tasks button").addEventListener("click", () => this.store.load({ more: true }).catch((e) => showError(e.message)));
    // Refresh relative labels ("tomorrow", overdue) as time passes.
    setInterval(() => this.render(), 60_000);
  }

  bindFilter() {
    const range = $("#completed-range");
    for (const radio of document.querySelectorAll('input[name="status"]')) {
      radio.addEventListener("change", () => {
        if (!radio.checked) return;
        range.hidden = radio.value !== "completed";
        this.clearSelection();
        this.store.load({ status: radio.value }).catch((e) => showError(e.message));
      });
    }
    // History: completed since the start of today, or of a day some days back (the browser's zone).
    $("#completed-since").addEventListener("change", (e) => {
      const days = e.target.value;
      let since = null;
      if (days !== "") {
        const start = new Date();
        start.setHours(0, 0, 0, 0);
        start.setDate(start.getDate() - Number(days));
        since = start.toISOString();
      }
      this.store.load({ completedAfter: since }).catch((err) => showError(err.message));
    });
  }

  bindAddForm() {
    const form = $("#add-task");
    const title = $("#add-title");
    const due = $("#add-due");
    const error = $("#add-error");
    let key = null; // one write per typed task: a double submit or a retry reuses it
    for (const input of [title, due]) input.addEventListener("input", () => (key = null));
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
      if (this.store.listId !== null) body.list = String(this.store.listId);
      const button = form.querySelector("button[type=submit]");
      button.disabled = true;
      key ??= newKey();
      try {
        const task = await write("/api/tasks", { method: "POST", body, key });
        key = null;
        this.store.upsert(task, { flash: true });
        this.offerUndo(`Added “${task.title}”.`, task);
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

  // Top-level tasks in order, each with its subtasks nested in its own <ul> (a subtask whose
  // parent is not in view stands on its own).
  render(flashIds = []) {
    const tasks = this.store.visible();
    const shown = new Set(tasks.map((t) => t.id));
    const children = new Map();
    const roots = [];
    for (const task of tasks) {
      if (task.parent_id && shown.has(task.parent_id)) {
        if (!children.has(task.parent_id)) children.set(task.parent_id, []);
        children.get(task.parent_id).push(task);
      } else {
        roots.push(task);
      }
    }
    const seen = new Set();
    this.place(this.list, roots, children, seen, flashIds);
    for (const [id, row] of this.rows) {
      if (!seen.has(id)) {
        if (row.contains(document.activeElement)) this.list.focus?.();
        row.remove();
        this.rows.delete(id);
        this.selection.delete(id);
      }
    }
    this.renderSummary(tasks);
    this.renderSelection();
  }

  place(container, tasks, children, seen, flashIds, level = 1) {
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
      if (container.children[index] !== row) container.insertBefore(row, container.children[index] ?? null);
      if (flashIds.includes(task.id)) {
        row.classList.remove("flash");
        void row.offsetWidth; // restart the animation
        row.classList.add("flash");
      }
      row.addSubButton.hidden = task.completed || level >= MAX_LEVELS;
      const kids = children.get(task.id) ?? [];
      this.place(row.subList, kids, children, seen, flashIds, level + 1);
      this.updateTree(row, kids);
    });
  }

  updateTree(row, kids) {
    const open = !this.collapsed.has(row.task.id);
    row.subList.hidden = !open || kids.length === 0;
    row.toggleButton.hidden = kids.length === 0;
    row.toggleButton.setAttribute("aria-expanded", String(open));
    const label = `${plural(kids.length, "subtask")}`;
    setText(row.toggleLabel, label);
    row.toggleButton.setAttribute("aria-label", `${open ? "Hide" : "Show"} ${label} of ${row.task.title}`);
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
    row.addEventListener("animationend", (e) => e.target === row && row.classList.remove("entering", "flash"));
    row.task = task;
    row.selectBox = h("input", { type: "checkbox", class: "select", onchange: () => this.choose(row) });
    row.checkbox = h("input", { type: "checkbox", class: "check", onchange: () => this.toggle(row) });
    row.titleButton = h("button", { type: "button", class: "task-title", onclick: () => this.editTitle(row) });
    row.metaLine = h("div", { class: "task-meta" });
    row.toggleLabel = h("span", {});
    row.toggleButton = h("button", { type: "button", class: "subtask-toggle", hidden: true, onclick: () => this.fold(row) }, icon("chevron"), row.toggleLabel);
    row.subList = h("ul", { class: "subtasks", id: `subtasks-${task.id}`, hidden: true });
    row.toggleButton.setAttribute("aria-controls", row.subList.id);
    row.addSubButton = h("button", { type: "button", class: "btn btn-ghost btn-icon", onclick: () => this.addSubtask(row) }, icon("subtask"));
    row.deleteButton = h("button", { type: "button", class: "btn btn-ghost btn-icon btn-delete", onclick: () => this.remove(row) }, icon("trash"));
    row.append(
      row.selectBox,
      row.checkbox,
      h("div", { class: "task-body" }, row.titleButton, row.metaLine),
      h("div", { class: "task-actions" }, row.addSubButton, row.deleteButton),
      row.subList,
    );
    this.updateRow(row, task);
    return row;
  }

  updateRow(row, task) {
    row.task = task;
    const overdue = isOverdue(task);
    row.classList.toggle("done", task.completed);
    row.classList.toggle("overdue", overdue);
    row.classList.toggle("subtask", Boolean(task.parent_id));
    row.checkbox.checked = task.completed;
    row.checkbox.setAttribute("aria-label", `${task.completed ? "Completed" : "Complete"}: ${task.title}`);
    row.selectBox.setAttribute("aria-label", `Select ${task.title}`);
    row.selectBox.checked = this.allSelected || this.selection.has(task.id);
    if (!row.editingTitle) {
      row.titleButton.textContent = task.title;
      row.titleButton.setAttribute("aria-label", `Edit title: ${task.title}`);
    }
    row.deleteButton.setAttribute("aria-label", `Delete ${task.title}`);
    row.addSubButton.setAttribute("aria-label", `Add a subtask to ${task.title}`);
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
    if (task.completed && task.completed_at) {
      items.push(h("span", { class: "meta-note completed-at", title: formatFull(task.completed_at) }, icon("check"), `Completed ${formatWhen(task.completed_at)}`));
    }
    items.push(row.toggleButton);
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
    const send = (includeSubtasks) =>
      write(`/api/tasks/${task.id}/${done ? "complete" : "reopen"}${includeSubtasks ? "?include_subtasks=true" : ""}`, { method: "POST" });
    try {
      let updated;
      try {
        updated = await send(false);
      } catch (e) {
        // The server refuses to complete a parent with open subtasks and says so; offer to do both.
        if (!(e instanceof ApiError && e.field === "include_subtasks")) throw e;
        this.store.upsert(task);
        row.checkbox.checked = false;
        const answer = await ask({ title: "Complete its subtasks too?", text: e.message, confirm: "Complete them too" });
        if (!answer) return;
        this.store.linger(task.id, 1200);
        updated = await send(true);
        await this.store.load().catch(() => {}); // the subtasks changed too
      }
      this.store.upsert(updated);
      const next = done && updated.recurrence_text ? " The next one is on its way." : "";
      this.offerUndo(`${done ? "Completed" : "Reopened"} “${updated.title}”.${next}`, updated);
    } catch (e) {
      this.store.upsert(task); // same version: puts the checkbox back
      showError(e.message);
      this.refresh(task.id);
    }
  }

  // Undo of a single-task write: its change id from the live event when it has arrived.
  offerUndo(text, task, kind = "write") {
    this.undo.offer(text, { changeId: () => this.store.changeFor(task, kind) });
  }

  fold(row) {
    const id = row.task.id;
    if (this.collapsed.has(id)) this.collapsed.delete(id);
    else this.collapsed.add(id);
    this.render();
  }

  addSubtask(row) {
    if (row.subForm) return row.subForm.querySelector("input").focus();
    this.collapsed.delete(row.task.id);
    this.render();
    const input = h("input", { type: "text", class: "inline-edit", "aria-label": `New subtask of ${row.task.title}`, placeholder: "Subtask…", maxlength: "200", autocomplete: "off" });
    const form = h("form", { class: "subtask-form" }, input, h("span", { class: "inline-hint" }, "Enter to add · Esc to close"));
    row.subForm = form;
    row.insertBefore(form, row.subList.nextSibling);
    let key = null;
    input.addEventListener("input", () => (key = null));
    const close = () => {
      form.remove();
      row.subForm = null;
      row.addSubButton.focus();
    };
    input.addEventListener("keydown", (e) => {
      if (e.key === "Escape") {
        e.preventDefault();
        close();
      }
    });
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const title = input.value.trim();
      if (!title) return close();
      key ??= newKey();
      try {
        const task = await write("/api/tasks", { method: "POST", body: { title, parent_id: row.task.id }, key });
        key = null;
        input.value = "";
        this.store.upsert(task, { flash: true });
        this.offerUndo(`Added subtask “${task.title}”.`, task);
      } catch (e) {
        input.setAttribute("aria-invalid", "true");
        showError(e.message);
      }
    });
    input.focus();
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
      const updated = await write(`/api/tasks/${task.id}`, {
        method: "PATCH",
        body: changes,
        headers: { "If-Match": String(task.version) },
      });
      this.store.upsert(updated);
      this.offerUndo(`Changed “${updated.title}”.`, updated);
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

  async remove(row) {
    const task = row.task;
    const next = row.nextElementSibling ?? row.previousElementSibling;
    this.store.hide(task.id, true);
    (next?.querySelector(".check") ?? $("#add-title")).focus();
    try {
      await write(`/api/tasks/${task.id}`, { method: "DELETE" });
    } catch (e) {
      if (!(e instanceof ApiError && e.status === 404)) {
        this.store.hide(task.id, false);
        return showError(`Could not delete “${task.title}”: ${e.message}`);
      }
    }
    this.store.remove(task.id);
    this.undo.offer(`Deleted “${task.title}”.`, {
      changeId: () => this.store.changeFor(task, "deleted"),
      after: () => this.rows.get(task.id)?.querySelector(".check")?.focus(),
    });
  }

  // ---------- selection and batch actions ----------

  bindBatch() {
    $("#select-mode").addEventListener("click", () => this.setSelecting(!this.selecting));
    $("#batch-done").addEventListener("click", () => this.setSelecting(false));
    $("#select-all").addEventListener("click", () => {
      this.allSelected = !this.allSelected;
      this.selection.clear();
      this.render();
    });
    $("#batch-complete").addEventListener("click", () => this.batch("complete"));
    $("#batch-delete").addEventListener("click", () => this.batch("delete"));
    $("#batch-move").addEventListener("click", () => this.batch("move", { list: $("#batch-list").value }));
    $("#batch-tag-form").addEventListener("submit", (e) => {
      e.preventDefault();
      const tag = $("#batch-tag").value.trim().replace(/^#/, "");
      if (!tag) return $("#batch-tag").focus();
      this.batch("tag", { tags: [tag] });
    });
    this.lists.addEventListener("select", () => this.clearSelection());
  }

  get selecting() {
    return this.list.classList.contains("selecting");
  }

  setSelecting(on) {
    this.list.classList.toggle("selecting", on);
    $("#batch-bar").hidden = !on;
    $("#select-mode").setAttribute("aria-pressed", String(on));
    if (!on) this.clearSelection();
    else {
      this.fillListChoices();
      this.list.querySelector(".select")?.focus();
    }
  }

  clearSelection() {
    this.selection.clear();
    this.allSelected = false;
    this.render();
  }

  choose(row) {
    const id = row.task.id;
    if (this.allSelected) {
      // Leaving "everything in view": keep the others chosen one by one.
      this.allSelected = false;
      for (const other of this.rows.keys()) if (other !== id) this.selection.add(other);
    } else if (row.selectBox.checked) this.selection.add(id);
    else this.selection.delete(id);
    this.render();
  }

  fillListChoices() {
    const select = $("#batch-list");
    const options = this.lists.items.map((l) => h("option", { value: String(l.id), selected: l.id === this.store.listId }, l.name));
    select.replaceChildren(...options);
  }

  renderSelection() {
    const count = this.allSelected ? this.store.visible().length : this.selection.size;
    const text = this.allSelected ? `All ${plural(count, "task")} in this view` : `${count} selected`;
    setText($("#selection-count"), text);
    $("#select-all").textContent = this.allSelected ? "Clear selection" : "Select all in view";
    for (const button of document.querySelectorAll("#batch-bar .needs-selection")) button.disabled = count === 0;
  }

  // The batch goes by ids, or by this view's filter when everything in view is chosen; over the
  // server's threshold it answers 409 needs_confirmation with the count, and the user decides.
  async batch(action, extra = {}) {
    const body = { action, ...extra };
    if (this.allSelected) {
      body.filter = { status: this.store.status };
      if (this.store.listId !== null) body.filter.list = String(this.store.listId);
      if (this.store.status === "completed" && this.store.completedAfter) body.filter.completed_after = this.store.completedAfter;
    } else {
      body.task_ids = [...this.selection];
    }
    let result;
    try {
      result = await this.sendBatch(body);
    } catch (e) {
      return showError(e.message);
    }
    if (!result) return;
    for (const task of result.changed) this.store.upsert(task, { flash: true });
    for (const gone of result.deleted) this.store.remove(gone.id);
    if (action === "move" || action === "complete") await this.store.load().catch(() => {});
    this.lists.refreshSoon();
    const count = action === "delete" ? result.deleted.length : result.changed.length;
    this.clearSelection();
    this.undo.offer(`${BATCH_VERBS[action]} ${plural(count, "task")}.`, { changeId: result.change_id });
  }

  async sendBatch(body) {
    try {
      return await write("/api/tasks/bulk", { method: "POST", body });
    } catch (e) {
      if (!(e instanceof ApiError)) throw e;
      const data = e.data ?? {};
      if (e.status === 409 && data.needs_confirmation) {
        const verb = { complete: "Complete", move: "Move", tag: "Tag", delete: "Delete" }[body.action];
        const answer = await ask({
          title: `${verb} ${plural(data.count, "task")}?`,
          text: `This changes ${plural(data.count, "task")} at once. You can undo it afterwards.`,
          confirm: `${verb} ${data.count}`,
          danger: body.action === "delete",
        });
        return answer ? this.sendBatch({ ...body, confirm: true }) : null;
      }
      if (e.field === "include_subtasks") {
        const answer = await ask({ title: "Complete their subtasks too?", text: e.message, confirm: "Complete them too" });
        return answer ? this.sendBatch({ ...body, include_subtasks: true }) : null;
      }
      throw e;
    }
  }
}
