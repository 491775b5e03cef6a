// Toasts: short messages in a polite live region, optionally with one action (e.g. Undo).
//
//   const toast = showToast({ text: "Deleted “Buy milk”", action: { label: "Undo", run }, timeout: 5000 });
//   toast.dismiss();

import { $, h, icon } from "./dom.js";

export function showToast({ title, text, kind = "info", action, timeout = 5000, onTimeout } = {}) {
  const region = $("#toasts");
  let timer = null;
  const dismiss = () => {
    clearTimeout(timer);
    el.remove();
  };
  const actionButton = action
    ? h("button", { type: "button", class: "btn-link", onclick: () => { dismiss(); action.run(); } }, action.label)
    : null;
  const el = h(
    "div",
    { class: "toast", dataset: { kind } },
    h("div", { class: "toast-body" }, title ? h("div", { class: "toast-title" }, title) : null, text ? h("div", {}, text) : null),
    actionButton,
    h("button", { type: "button", class: "toast-close", "aria-label": "Dismiss", onclick: dismiss }, icon("x")),
  );
  region.append(el);
  while (region.children.length > 4) region.firstElementChild.remove();
  const arm = () => {
    timer = setTimeout(() => {
      el.remove();
      onTimeout?.();
    }, timeout);
  };
  if (timeout) {
    arm();
    // Pausing while hovered or focused gives people time to reach the action.
    el.addEventListener("mouseenter", () => clearTimeout(timer));
    el.addEventListener("focusin", () => clearTimeout(timer));
    el.addEventListener("mouseleave", () => { if (!el.contains(document.activeElement)) arm(); });
  }
  return { dismiss, element: el };
}

export const showError = (text) => showToast({ text, kind: "error", timeout: 7000 });
