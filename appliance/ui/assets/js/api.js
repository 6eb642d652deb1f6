// Calls to the appliance's API: the session cookie rides along, unsafe methods carry the
// session's CSRF token, errors become ApiError with the server's message, and a lost session
// sends the user back to the login page.

import { formatDuration } from "./dom.js";
import { t } from "./i18n.js";

const UNSAFE = new Set(["POST", "PUT", "PATCH", "DELETE"]);
let csrfToken = null;

export class ApiError extends Error {
  constructor(status, message, { code = "", retryAfter = null } = {}) {
    super(message);
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }
}

export function setCsrfToken(token) {
  csrfToken = token || null;
}

export function headers(method, extra = {}) {
  const result = { Accept: "application/json", ...extra };
  if (UNSAFE.has(method) && csrfToken) result["X-CSRF-Token"] = csrfToken;
  return result;
}

export function loginUrl() {
  const next = location.pathname + location.search + location.hash;
  return `/login?next=${encodeURIComponent(next)}`;
}

export function toLogin() {
  location.assign(loginUrl());
}

// The message to show for a failed response: the server's own words, or a plain fallback.
export async function errorFrom(response) {
  let message = "";
  let code = "";
  try {
    const body = await response.json();
    message = body?.error?.message || "";
    code = body?.error?.code || "";
  } catch {
    // not JSON (a proxy's page, an empty body): use the fallback below
  }
  const retryAfter = Number(response.headers.get("Retry-After")) || null;
  if (code === "requests_per_minute_exceeded") {
    message = t("quota.requests", { seconds: retryAfter || 60 });
  } else if (code === "tokens_per_day_exceeded") {
    // A short wait: the caller's own answers in progress hold the rest; else the day is spent.
    message = retryAfter > 2 ? t("quota.tokens", { time: formatDuration(retryAfter) }) : t("quota.held");
  } else if (response.status === 429 && code !== "too_many_logins") {
    message = t("error.busy", { seconds: retryAfter || 5 });
  }
  if (!message) message = t("error.status", { status: response.status });
  return new ApiError(response.status, message, { code, retryAfter });
}

export async function request(method, path, { body, signal, redirectOn401 = true } = {}) {
  const init = { method, headers: headers(method), credentials: "same-origin", signal };
  if (body instanceof FormData) {
    init.body = body;
  } else if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(0, t("error.network"));
  }
  if (response.status === 401 && redirectOn401) {
    toLogin();
    throw new ApiError(401, t("error.signedOut"));
  }
  if (!response.ok) throw await errorFrom(response);
  const type = response.headers.get("Content-Type") || "";
  return type.includes("json") ? response.json() : response.text();
}

export const api = {
  get: (path, options) => request("GET", path, options),
  post: (path, body, options) => request("POST", path, { ...options, body }),
  patch: (path, body, options) => request("PATCH", path, { ...options, body }),
  put: (path, body, options) => request("PUT", path, { ...options, body }),
  delete: (path, options) => request("DELETE", path, options),
};

// The signed-in user; keeps the CSRF token for later calls.
export async function loadMe() {
  const me = await api.get("/api/auth/me");
  setCsrfToken(me.csrf_token);
  return me;
}

export async function logout() {
  try {
    await api.post("/api/auth/logout", undefined, { redirectOn401: false });
  } finally {
    location.assign("/login");
  }
}
