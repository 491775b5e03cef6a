// The tasks this page knows about, kept in sync by REST replies, chat tool results and /ws events.
// Emits "change" whenever what is shown may differ. What is shown: one list (``listId``; null
// before the lists are known) and one status; the completed view can start at ``completedAfter``.

import { api } from "./api.js";

export class TaskStore extends EventTarget {
  tasks = new Map();
  status = "pending";
  listId = null;
  completedAfter = null; // ISO time: the completed view shows tasks completed since then
  hiddenIds = new Set();
  deletedIds = new Set(); // gone: late events must not bring them back (an undo does)
  lingering = new Set(); // just ticked off here: stays in view a moment so the tick is seen
  changeIds = new Map(); // "<task id>:<version>:<write|deleted>" -> the change id its event carried
  nextCursor = null;
  loaded = false;

  async load({ status = this.status, listId = this.listId, completedAfter = this.completedAfter, more = false } = {}) {
    // The view changes at once, so a load started meanwhile asks for the same; only the newest
    // load's answer is applied.
    Object.assign(this, { status, listId, completedAfter });
    const ticket = (this.loadTicket = (this.loadTicket ?? 0) + 1);
    const params = new URLSearchParams({ status, limit: "100" });
    if (listId !== null) params.set("list", String(listId));
    if (status === "completed" && completedAfter) params.set("completed_after", completedAfter);
    if (more && this.nextCursor) params.set("cursor", this.nextCursor);
    const page = await api(`/api/tasks?${params}`);
    if (ticket !== this.loadTicket) return;
    const known = this.tasks;
    if (!more) this.tasks = new Map();
    this.nextCursor = page.next_cursor ?? null;
    for (const task of page.items) {
      // A live event may have brought a newer version while this page was on its way.
      const newer = known.get(task.id);
      if (!this.deletedIds.has(task.id)) this.tasks.set(task.id, newer && newer.version > task.version ? newer : task);
    }
    this.loaded = true;
    this.changed();
  }

  upsert(task, { flash = false } = {}) {
    if (!task || typeof task.id !== "number" || this.deletedIds.has(task.id)) return;
    const known = this.tasks.get(task.id);
    if (known && (known.version ?? 0) > (task.version ?? 0)) return;
    this.tasks.set(task.id, { ...known, ...task });
    this.changed(flash ? [task.id] : []);
  }

  // A task an undo brought back (or changed): newer than anything seen, even after a delete.
  restore(task) {
    this.deletedIds.delete(task.id);
    this.hiddenIds.delete(task.id);
    this.tasks.delete(task.id);
    this.upsert(task, { flash: true });
  }

  remove(id) {
    this.deletedIds.add(id);
    this.hiddenIds.delete(id);
    if (this.tasks.delete(id)) this.changed();
  }

  hide(id, hidden) {
    if (hidden) this.hiddenIds.add(id);
    else this.hiddenIds.delete(id);
    this.changed();
  }

  linger(id, ms) {
    this.lingering.add(id);
    setTimeout(() => {
      this.lingering.delete(id);
      this.changed();
    }, ms);
  }

  // Live events name the write they belong to; an undo of a write made here asks for exactly it.
  noteChange(event) {
    if (!event.change_id || !event.task) return;
    const kind = event.event_type === "deleted" ? "deleted" : "write";
    this.changeIds.set(`${event.task_id}:${event.task.version}:${kind}`, event.change_id);
    if (this.changeIds.size > 500) this.changeIds.delete(this.changeIds.keys().next().value);
  }

  changeFor(task, kind = "write") {
    return this.changeIds.get(`${task.id}:${task.version}:${kind}`) ?? null;
  }

  matches(task) {
    if (this.hiddenIds.has(task.id)) return false;
    if (this.listId !== null && task.list_id != null && task.list_id !== this.listId) return false;
    if (this.lingering.has(task.id)) return true;
    if (this.status === "pending") return !task.completed;
    if (this.status === "completed") {
      return task.completed && (!this.completedAfter || Date.parse(task.completed_at) >= Date.parse(this.completedAfter));
    }
    return true;
  }

  // Same order as the server: due first (soonest first), undated last, then by id; the
  // completed view (history) shows the most recently completed first.
  visible() {
    const tasks = [...this.tasks.values()].filter((t) => this.matches(t));
    if (this.status === "completed") {
      return tasks.sort((a, b) => Date.parse(b.completed_at ?? 0) - Date.parse(a.completed_at ?? 0) || b.id - a.id);
    }
    return tasks.sort((a, b) => {
      if (!a.due_at !== !b.due_at) return a.due_at ? -1 : 1;
      const byDue = a.due_at && b.due_at ? Date.parse(a.due_at) - Date.parse(b.due_at) : 0;
      if (byDue) return byDue;
      return a.id - b.id;
    });
  }

  changed(flashIds = []) {
    this.dispatchEvent(new CustomEvent("change", { detail: { flashIds } }));
  }
}
