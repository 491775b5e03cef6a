// A modal question (<dialog>: focus moves into it, Escape cancels, focus returns afterwards).
//
//   const answer = await ask({ title: "Delete “Work”?", text: "...", choices: [{ value, label }], confirm: "Delete" });
//   // null when cancelled; the chosen value (or true without choices) otherwise

import { h } from "./dom.js";

let counter = 0;

export function ask({ title, text, choices = [], confirm = "OK", cancel = "Cancel", danger = false }) {
  counter += 1;
  const titleId = `dialog-title-${counter}`;
  const textId = `dialog-text-${counter}`;
  const opener = document.activeElement;
  const radios = choices.map((choice, index) =>
    h("label", { class: "dialog-choice" },
      h("input", { type: "radio", name: `dialog-choice-${counter}`, value: choice.value, checked: index === 0 }),
      h("span", {}, choice.label)),
  );  // prettier-ignore
  const confirmButton = h("button", { type: "submit", class: `btn ${danger ? "btn-danger" : "btn-primary"}`, value: "confirm" }, confirm);
  const cancelButton = h("button", { type: "button", class: "btn btn-secondary" }, cancel);
  const form = h(
    "form",
    { method: "dialog", class: "dialog-body" },
    h("h2", { id: titleId, class: "dialog-title" }, title),
    text ? h("p", { id: textId, class: "dialog-text" }, text) : null,
    radios.length ? h("fieldset", { class: "dialog-choices" }, h("legend", { class: "sr-only" }, title), radios) : null,
    h("div", { class: "dialog-actions" }, cancelButton, confirmButton),
  );
  const dialog = h("dialog", { class: "dialog", "aria-labelledby": titleId, "aria-describedby": text ? textId : undefined }, form);
  document.body.append(dialog);
  return new Promise((resolve) => {
    let answer = null;
    form.addEventListener("submit", () => {
      const picked = form.querySelector("input[type=radio]:checked");
      answer = picked ? picked.value : true;
    });
    cancelButton.addEventListener("click", () => dialog.close());
    dialog.addEventListener("close", () => {
      dialog.remove();
      if (opener instanceof HTMLElement && opener.isConnected) opener.focus();
      resolve(answer);
    });
    dialog.showModal();
    (radios.length ? radios[0].querySelector("input") : confirmButton).focus();
  });
}
