// The lists sidebar: Inbox first, then the user's lists with their open task counts. Choosing a
// list shows its tasks (and new tasks go there); lists are created, renamed, archived and deleted
// here (deleting asks what happens to the list's tasks). Archived lists wait in a collapsed
// "Archived" group below, where each can be opened or unarchived. Every write offers an undo.

import { api, newKey, write } from "./api.js";
import { ask } from "./dialog.js";
import { $, h, icon } from "./dom.js";
import { showError } from "./toasts.js";

export class ListPanel extends EventTarget {
  items = [];
  archived = [];
  archivedOpen = false; // the "Archived" group stays as the person left it across refreshes
  selectedId = null;

  constructor(store) {
    super();
    this.store = store;
    this.nav = $("#list-nav");
    this.undo = null; // set by main: the Undo helper needs this panel too
    this.bindAddForm();
  }

  get selected() {
    return [...this.items, ...this.archived].find((l) => l.id === this.selectedId) ?? null;
  }

  async refresh() {
    const page = await api("/api/lists?include_archived=true");
    this.items = page.items.filter((l) => !l.archived);
    this.archived = page.items.filter((l) => l.archived);
    if (!this.selected) {
      const inbox = this.items.find((l) => l.is_inbox) ?? this.items[0];
      if (inbox) await this.select(inbox.id, { focus: false });
    }
    this.render();
  }

  // Coalesces the refreshes many live events in a row (a batch) would ask for.
  refreshSoon() {
    clearTimeout(this.refreshTimer);
    this.refreshTimer = setTimeout(() => this.refresh().catch(() => {}), 150);
  }

  async select(id, { focus = true, reload = true } = {}) {
    this.selectedId = id;
    this.render();
    this.dispatchEvent(new CustomEvent("select", { detail: { list: this.selected } }));
    if (reload) await this.store.load({ listId: id });
    if (focus) this.nav.querySelector(`[data-id="${id}"] .list-open`)?.focus();
  }

  render() {
    // A rename in progress owns its row: a live refresh now would replace the field being typed
    // in; the rename renders when it ends.
    if (this.renaming) return;
    // The group's ``open`` changes at once, its toggle event later: read it before replacing it.
    this.archivedOpen = this.nav.querySelector(".archived-lists")?.open ?? this.archivedOpen;
    const rows = this.items.map((list) => this.row(list));
    if (this.archived.length) rows.push(this.archivedGroup());
    const focused = this.focusedSelector(); // a live refresh must not drop the keyboard's place
    this.nav.replaceChildren(...rows);
    if (focused) this.nav.querySelector(focused)?.focus();
    const heading = $("#tasks-heading");
    const name = this.selected?.name ?? "Tasks";
    if (heading.textContent !== name) heading.textContent = name;
  }

  // Where the focus is in the sidebar, as a selector that finds the same control after a render.
  focusedSelector() {
    const active = document.activeElement;
    if (!active || !this.nav.contains(active) || active.tagName === "INPUT") return null;
    if (active.classList.contains("archived-summary")) return ".archived-summary";
    const id = active.closest("[data-id]")?.dataset.id;
    if (!id) return null;
    const label = active.getAttribute("aria-label");
    return `[data-id="${CSS.escape(id)}"] ${label ? `[aria-label="${CSS.escape(label)}"]` : ".list-open"}`;
  }

  // The button that selects a list: its name, then whatever else the row shows in it.
  openButton(list, ...more) {
    const current = list.id === this.selectedId;
    return h(
      "button",
      { type: "button", class: "list-open", "aria-current": current ? "true" : undefined, onclick: () => this.select(list.id).catch((e) => showError(e.message)) },
      h("span", { class: "list-name" }, list.name),
      ...more,
    );
  }

  row(list) {
    const open = this.openButton(
      list,
      h("span", { class: "list-count", "aria-label": `${list.open_tasks} open` }, list.open_tasks ? String(list.open_tasks) : ""),
    );
    const li = h("li", { class: "list-item", dataset: { id: list.id } }, open);
    if (!list.is_inbox) {
      li.append(
        h("div", { class: "list-actions" },
          h("button", { type: "button", class: "btn btn-ghost btn-icon", "aria-label": `Rename ${list.name}`, onclick: () => this.rename(li, list) }, icon("pencil")),
          h("button", { type: "button", class: "btn btn-ghost btn-icon", "aria-label": `Archive ${list.name}`, onclick: () => this.archive(list) }, icon("archive")),
          h("button", { type: "button", class: "btn btn-ghost btn-icon", "aria-label": `Delete ${list.name}`, onclick: () => this.remove(list) }, icon("trash"))),
      );  // prettier-ignore
    }
    return li;
  }

  // A <details> group: its summary and buttons are reachable and work from the keyboard.
  archivedGroup() {
    const details = h(
      "details",
      { class: "archived-lists", open: this.archivedOpen },
      h("summary", { class: "archived-summary" }, `Archived (${this.archived.length})`),
      h("ul", { class: "list-nav", "aria-label": "Archived lists" }, this.archived.map((list) => this.archivedRow(list))),
    );
    return h("li", { class: "list-group" }, details);
  }

  archivedRow(list) {
    const open = this.openButton(list);
    const unarchive = h("button", { type: "button", class: "btn btn-ghost btn-icon", "aria-label": `Unarchive ${list.name}`, onclick: () => this.unarchive(list) }, icon("unarchive"));
    return h("li", { class: "list-item archived", dataset: { id: list.id } }, open, h("div", { class: "list-actions" }, unarchive));
  }

  bindAddForm() {
    const form = $("#add-list");
    const input = $("#add-list-name");
    let key = null; // kept until the name changes: a double submit creates the list once
    input.addEventListener("input", () => (key = null));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const name = input.value.trim();
      if (!name) return input.focus();
      key ??= newKey();
      try {
        const list = await write("/api/lists", { method: "POST", body: { name }, key });
        input.value = "";
        key = null;
        await this.refresh();
        await this.select(list.id, { focus: false });
        input.focus();
        this.undo.offer(`Created list “${list.name}”.`);
      } catch (e) {
        input.setAttribute("aria-invalid", "true");
        showError(e.message);
      }
    });
  }

  rename(li, list) {
    const input = h("input", { type: "text", value: list.name, "aria-label": `New name for ${list.name}`, maxlength: "100" });
    li.replaceChildren(input);
    this.renaming = true;
    input.focus();
    input.select();
    let done = false;
    const finish = async (save) => {
      if (done) return;
      done = true;
      this.renaming = false;
      const name = input.value.trim();
      if (save && name && name !== list.name) {
        try {
          await write(`/api/lists/${list.id}`, { method: "PATCH", body: { name } });
          this.undo.offer(`Renamed “${list.name}” to “${name}”.`);
        } catch (e) {
          showError(e.message);
        }
      }
      await this.refresh().catch(() => this.render());
      this.nav.querySelector(`[data-id="${list.id}"] .list-open`)?.focus();
    };
    input.addEventListener("keydown", (e) => {
      if (e.key === "Enter" || e.key === "Escape") {
        e.preventDefault();
        finish(e.key === "Enter");
      }
    });
    input.addEventListener("blur", () => finish(true));
  }

  async archive(list) {
    try {
      await write(`/api/lists/${list.id}`, { method: "PATCH", body: { archived: true } });
    } catch (e) {
      return showError(e.message);
    }
    await this.afterGone(list);
    this.undo.offer(`Archived “${list.name}”.`);
  }

  async unarchive(list) {
    try {
      await write(`/api/lists/${list.id}`, { method: "PATCH", body: { archived: false } });
    } catch (e) {
      return showError(e.message);
    }
    await this.refresh().catch((e) => showError(e.message));
    if (this.selectedId === list.id) await this.store.load({ listId: list.id }).catch(() => {});
    this.nav.querySelector(`[data-id="${list.id}"] .list-open`)?.focus();
    this.undo.offer(`Unarchived “${list.name}”.`);
  }

  async remove(list) {
    const choice = await ask({
      title: `Delete “${list.name}”?`,
      text: `${list.open_tasks ? `It has ${list.open_tasks} open task${list.open_tasks === 1 ? "" : "s"}. ` : ""}What should happen to its tasks?`,
      choices: [
        { value: "move_to_inbox", label: "Move them to Inbox" },
        { value: "delete", label: "Delete them too" },
      ],
      confirm: "Delete list",
      danger: true,
    });
    if (!choice) return;
    let result;
    try {
      result = await write(`/api/lists/${list.id}?tasks=${choice}`, { method: "DELETE" });
    } catch (e) {
      return showError(e.message);
    }
    await this.afterGone(list);
    const what = result.tasks_deleted ? `, ${result.tasks_deleted} tasks deleted` : result.tasks_moved_to_inbox ? `, ${result.tasks_moved_to_inbox} tasks moved to Inbox` : "";
    this.undo.offer(`Deleted list “${list.name}”${what}.`);
  }

  // A list that left the sidebar: show the Inbox when it was the one shown.
  async afterGone(list) {
    if (this.selectedId === list.id) this.selectedId = null;
    await this.refresh().catch((e) => showError(e.message));
    if (this.selectedId !== list.id) this.nav.querySelector('[aria-current="true"]')?.focus();
  }
}
