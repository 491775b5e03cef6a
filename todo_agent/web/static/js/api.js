// The HTTP client: bearer token from localStorage, JSON in and out, person-readable errors.

const TOKEN_KEY = "todo-agent.token";

export class ApiError extends Error {
  constructor(status, detail, field, data = null) {
    super(detail);
    this.status = status;
    this.field = field;
    this.data = data; // the whole reply, e.g. {needs_confirmation, count} for a batch to confirm
  }
}

export const auth = {
  get token() {
    return localStorage.getItem(TOKEN_KEY);
  },
  set token(value) {
    if (value) localStorage.setItem(TOKEN_KEY, value);
    else localStorage.removeItem(TOKEN_KEY);
  },
  headers() {
    const token = this.token;
    return token ? { Authorization: `Bearer ${token}` } : {};
  },
};

// Raised as a window event so the app can show the sign-in page from anywhere.
function signalUnauthorized(detail) {
  window.dispatchEvent(new CustomEvent("auth:required", { detail }));
}

export async function request(path, { method = "GET", body, headers = {}, signal, keepalive } = {}) {
  const init = { method, headers: { Accept: "application/json", ...auth.headers(), ...headers }, signal, keepalive };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(0, "Can't reach the server. Check your connection; retrying will work once it is back.");
  }
  return response;
}

export async function api(path, options) {
  const response = await request(path, options);
  return readJson(response);
}

export async function readJson(response) {
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!response.ok) {
    const detail = (data && typeof data.detail === "string" && data.detail) || `${response.status} ${response.statusText}`;
    if (response.status === 401) signalUnauthorized(detail);
    throw new ApiError(response.status, detail, data && data.field, data);
  }
  return data;
}

// One key per intended write: a retry of that write (a lost reply, a double submit) sends the same
// key, so the server writes once and answers again with the first result. getRandomValues works on
// plain-HTTP origins too, where crypto.randomUUID is missing.
export function newKey() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

const WRITE_RETRIES = 2;
const RETRY_STATUSES = new Set([0, 502, 503, 504]); // unreachable, or a proxy between restarts

// A write with an Idempotency-Key, retried with that same key when the reply was lost.
export async function write(path, { key = newKey(), headers = {}, ...options } = {}) {
  for (let attempt = 0; ; attempt += 1) {
    try {
      return await api(path, { ...options, headers: { ...headers, "Idempotency-Key": key } });
    } catch (error) {
      if (!(error instanceof ApiError) || !RETRY_STATUSES.has(error.status) || attempt >= WRITE_RETRIES) throw error;
      await new Promise((resolve) => setTimeout(resolve, 250 * (attempt + 1)));
    }
  }
}
