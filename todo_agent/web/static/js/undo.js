// The undo toast every write made on this page offers: POST /api/undo for exactly that write
// (its change id when known, else "my last change"); the undo toast offers a redo the same way.
// A refusal (the task changed since) is shown as the server words it.

import { write } from "./api.js";
import { showError, showToast } from "./toasts.js";

const UNDO_SECONDS = 8;

export class Undo {
  constructor(store, lists) {
    this.store = store;
    this.lists = lists;
  }

  // ``changeId``: a number, or a function asked when Undo is pressed (live events may name it late).
  offer(text, { changeId = null, after } = {}) {
    return showToast({
      text,
      timeout: UNDO_SECONDS * 1000,
      action: { label: "Undo", run: () => this.run(typeof changeId === "function" ? changeId() : changeId, after) },
    });
  }

  async run(changeId, after) {
    let result;
    try {
      result = await write("/api/undo", { method: "POST", body: changeId ? { change_id: changeId } : {} });
    } catch (e) {
      showError(`Could not undo: ${e.message}`);
      return;
    }
    this.apply(result);
    after?.(result);
    showToast({
      text: `Undone: ${result.summary}`,
      timeout: UNDO_SECONDS * 1000,
      action: result.change_id ? { label: "Redo", run: () => this.run(result.change_id) } : undefined,
    });
  }

  apply(result) {
    for (const task of result.changed ?? []) this.store.restore(task);
    for (const gone of result.deleted ?? []) this.store.remove(gone.id);
    if ((result.lists ?? []).length) this.lists.refresh();
  }
}
