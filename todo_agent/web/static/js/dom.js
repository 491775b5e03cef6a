// Tiny DOM helpers: build elements without innerHTML (user text is never parsed as HTML).

export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key.startsWith("on")) el.addEventListener(key.slice(2).toLowerCase(), value);
    else if (key in el && typeof value !== "string") el[key] = value;
    else el.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

const ICONS = {
  calendar: "M4 6.5h12v9.5H4zM4 9.5h12M7.5 4v3M12.5 4v3",
  trash: "M4.5 6h11M8 6V4.5h4V6M6 6l.7 10h6.6L14 6",
  pencil: "M4 16l1-3.5L13 4.5l2.5 2.5-8 8zM11.5 6l2.5 2.5",
  check: "M4.5 10.5l3.5 3.5 7.5-8",
  plus: "M10 4v12M4 10h12",
  x: "M5 5l10 10M15 5L5 15",
  list: "M7 6h9M7 10h9M7 14h9M4 6h.01M4 10h.01M4 14h.01",
  bell: "M6 13V9a4 4 0 018 0v4l1.5 2h-11zM8.5 17a1.5 1.5 0 003 0",
  repeat: "M5 8a5 5 0 018.5-2.5L15 7M15 4v3h-3M15 12a5 5 0 01-8.5 2.5L5 13M5 16v-3h3",
  alert: "M10 4l7 12H3zM10 9v3M10 14.5h.01",
  edit: "M4 16l1-3.5L13 4.5l2.5 2.5-8 8z",
  dots: "M5 10h.01M10 10h.01M15 10h.01",
  archive: "M3.5 5h13v3h-13zM4.5 8v8h11V8M8 11h4",
  unarchive: "M3.5 5h13v3h-13zM4.5 8v8h11V8M10 15v-5M8 12l2-2 2 2",
  chevron: "M8 6l4 4-4 4",
  subtask: "M6 4v8h8M11 9l3 3-3 3",
};

export function icon(name) {
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("class", "icon");
  svg.setAttribute("viewBox", "0 0 20 20");
  svg.setAttribute("aria-hidden", "true");
  const path = document.createElementNS("http://www.w3.org/2000/svg", "path");
  path.setAttribute("d", ICONS[name] ?? "");
  svg.append(path);
  return svg;
}

export const $ = (selector, root = document) => root.querySelector(selector);
