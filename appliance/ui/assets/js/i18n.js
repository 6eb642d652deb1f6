// Interface language: one dictionary per language; Korean first when the browser prefers it;
// a choice made with the switch is remembered in localStorage.

import en from "./i18n/en.js";
import ko from "./i18n/ko.js";

const DICTIONARIES = { ko, en };
const STORAGE_KEY = "appliance.language";
export const LANGUAGES = [["ko", "한국어"], ["en", "English"]];

function stored() {
  try {
    return localStorage.getItem(STORAGE_KEY);
  } catch {
    return null; // storage blocked: fall back to the browser's preference
  }
}

export function preferredLanguage() {
  const chosen = stored();
  if (chosen && chosen in DICTIONARIES) return chosen;
  const wanted = navigator.languages && navigator.languages.length ? navigator.languages : [navigator.language];
  for (const tag of wanted) {
    const base = String(tag || "").toLowerCase().split("-")[0];
    if (base in DICTIONARIES) return base;
  }
  return "en";
}

let language = preferredLanguage();

export function currentLanguage() {
  return language;
}

export function t(key, vars = {}) {
  const text = DICTIONARIES[language][key] ?? DICTIONARIES.en[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (match, name) => (name in vars ? String(vars[name]) : match));
}

export function applyI18n(root = document) {
  for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const [attr, data] of [["placeholder", "i18nPlaceholder"], ["title", "i18nTitle"],
    ["aria-label", "i18nAriaLabel"]]) {
    for (const el of root.querySelectorAll(`[data-${attr === "aria-label" ? "i18n-aria-label" : `i18n-${attr}`}]`)) {
      el.setAttribute(attr, t(el.dataset[data]));
    }
  }
}

export function setLanguage(next) {
  if (!(next in DICTIONARIES) || next === language) return;
  language = next;
  try {
    localStorage.setItem(STORAGE_KEY, next);
  } catch {
    // not remembered, but switched for this page
  }
  document.documentElement.lang = next;
  applyI18n();
  document.dispatchEvent(new CustomEvent("languagechange", { detail: next }));
}

// Fill the page's strings, then show it (the stylesheet hides it until then).
export function startPage() {
  document.documentElement.lang = language;
  applyI18n();
  document.documentElement.classList.add("ready");
}
