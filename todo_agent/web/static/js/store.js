// The tasks this page knows about, kept in sync by REST replies, chat tool results and /ws events.
// Emits "change" whenever what is shown may differ.

import { api } from "./api.js";

export class TaskStore extends EventTarget {
  tasks = new Map();
  status = "pending";
  hiddenIds = new Set(); // deleted locally, waiting for the undo window to pass
  deletedIds = new Set(); // gone for good: late events must not bring them back
  lingering = new Set(); // just ticked off here: stays in view a moment so the tick is seen
  nextCursor = null;
  loaded = false;

  async load({ status = this.status, more = false } = {}) {
    const params = new URLSearchParams({ status, limit: "100" });
    if (more && this.nextCursor) params.set("cursor", this.nextCursor);
    const page = await api(`/api/tasks?${params}`);
    const known = this.tasks;
    if (!more) this.tasks = new Map();
    this.status = status;
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

  matches(task) {
    if (this.hiddenIds.has(task.id)) return false;
    if (this.lingering.has(task.id)) return true;
    if (this.status === "pending") return !task.completed;
    if (this.status === "completed") return task.completed;
    return true;
  }

  // Same order as the server: due first (soonest first), undated last, then by id.
  visible() {
    return [...this.tasks.values()].filter((t) => this.matches(t)).sort((a, b) => {
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
