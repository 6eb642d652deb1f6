// The login page: sign in, then go where the user was headed.

import { ApiError, errorFrom } from "./api.js";
import { fillIcons } from "./dom.js";
import { startPage, t } from "./i18n.js";
import { languageSwitch } from "./shell.js";

// Only a path on this appliance: a crafted link must not send users elsewhere after login.
function nextPath() {
  const next = new URLSearchParams(location.search).get("next") || "/";
  return next.startsWith("/") && !next.startsWith("//") && !next.startsWith("/\\") ? next : "/";
}

function showError(message) {
  const el = document.getElementById("login-error");
  el.textContent = message;
  el.hidden = !message;
}

async function submit(event) {
  event.preventDefault();
  const form = event.target;
  const username = form.username.value.trim();
  const password = form.password.value;
  if (!username || !password) {
    showError(t("login.missing"));
    (username ? form.password : form.username).focus();
    return;
  }
  const button = document.getElementById("login-submit");
  button.disabled = true;
  showError("");
  try {
    const response = await fetch("/api/auth/login", {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify({ username, password }),
    });
    if (response.status === 401) throw new ApiError(401, t("login.failed"));
    if (response.status === 429) {
      const seconds = Number(response.headers.get("Retry-After")) || 60;
      throw new ApiError(429, t("login.throttled", { minutes: Math.ceil(seconds / 60) }));
    }
    if (!response.ok) throw await errorFrom(response);
    location.assign(nextPath());
  } catch (error) {
    showError(error instanceof ApiError ? error.message : t("error.network"));
    form.password.select();
  } finally {
    button.disabled = false;
  }
}

function main() {
  fillIcons();
  startPage();
  document.title = t("app.name");
  document.getElementById("language-switch").append(languageSwitch());
  document.getElementById("login-form").addEventListener("submit", submit);
  document.addEventListener("languagechange", () => {
    document.title = t("app.name");
  });
  document.getElementById("username").focus();
}

main();
