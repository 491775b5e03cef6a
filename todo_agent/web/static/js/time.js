// Times are ISO 8601 UTC on the wire and shown in the browser's own zone (Intl).

export const browserZone = () => Intl.DateTimeFormat().resolvedOptions().timeZone;

// 24-hour locales read "08:00", 12-hour ones "8:00 AM".
const hourCycle = new Intl.DateTimeFormat(undefined, { hour: "numeric" }).resolvedOptions().hourCycle;
const timeFormat = new Intl.DateTimeFormat(undefined, {
  hour: hourCycle === "h23" || hourCycle === "h24" ? "2-digit" : "numeric",
  minute: "2-digit",
});
const weekdayFormat = new Intl.DateTimeFormat(undefined, { weekday: "short" });
const dateFormat = new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric" });
const yearDateFormat = new Intl.DateTimeFormat(undefined, { year: "numeric", month: "short", day: "numeric" });
const fullFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "full", timeStyle: "short" });
const relativeDays = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });

function startOfDay(date) {
  return new Date(date.getFullYear(), date.getMonth(), date.getDate());
}

function dayDifference(date, now) {
  return Math.round((startOfDay(date) - startOfDay(now)) / 86_400_000);
}

// "today 17:00", "tomorrow 9:30", "Fri 17:00", "Mar 3 17:00", "Mar 3, 2027 17:00"
export function formatWhen(iso, now = new Date()) {
  if (!iso) return "";
  const date = new Date(iso);
  const days = dayDifference(date, now);
  let day;
  if (Math.abs(days) <= 1) day = relativeDays.format(days, "day");
  else if (days > 1 && days < 7) day = weekdayFormat.format(date);
  else if (date.getFullYear() === now.getFullYear()) day = dateFormat.format(date);
  else day = yearDateFormat.format(date);
  return `${day} ${timeFormat.format(date)}`;
}

export const formatFull = (iso) => (iso ? fullFormat.format(new Date(iso)) : "");

// "just now", "5 min ago", "yesterday", "Mar 3"
export function formatAgo(iso, now = new Date()) {
  if (!iso) return "";
  const date = new Date(iso);
  const minutes = Math.round((now - date) / 60_000);
  if (minutes < 1) return "just now";
  if (minutes < 60) return `${minutes} min ago`;
  const days = dayDifference(date, now);
  if (days === 0) return timeFormat.format(date);
  if (days === -1) return "yesterday";
  return dateFormat.format(date);
}

export const isOverdue = (task, now = new Date()) => !task.completed && !!task.due_at && new Date(task.due_at) < now;

// The editable form of a due time: "2026-03-04 17:00" in the browser's zone.
export function editableWhen(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

// ISO 8601 with the browser's offset for an "YYYY-MM-DD HH:MM" string, else null.
export function localToIso(text) {
  const m = /^(\d{4})-(\d{2})-(\d{2})[ T](\d{1,2}):(\d{2})$/.exec(text.trim());
  if (!m) return null;
  const date = new Date(+m[1], +m[2] - 1, +m[3], +m[4], +m[5]);
  return Number.isNaN(date.getTime()) ? null : date.toISOString();
}
