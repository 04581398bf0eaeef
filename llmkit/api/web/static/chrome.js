// The page's frame, apart from any conversation: the theme (system, light, dark; a
// choice made by hand kept in localStorage, as theme.js reads it before the first
// paint), the settings sheet, and the conversation list sliding over a phone screen.

const $ = (id) => document.getElementById(id);
const THEME = "llmkit-theme";
const ORDER = ["system", "light", "dark"];
const ICONS = { system: "#i-auto", light: "#i-sun", dark: "#i-moon" };

export function theme() {
  const kept = localStorage.getItem(THEME);
  return ORDER.includes(kept) ? kept : "system";
}

export function setTheme(name) {
  if (name === "system") {
    localStorage.removeItem(THEME);
    delete document.documentElement.dataset.theme;
  } else {
    localStorage.setItem(THEME, name);
    document.documentElement.dataset.theme = name;
  }
  const button = $("theme");
  button.setAttribute("aria-label", `Theme: ${name}`);
  button.title = `Theme: ${name} (click to change)`;
  button.querySelector("use").setAttribute("href", ICONS[name]);
  for (const radio of document.querySelectorAll("input[name='theme']")) radio.checked = radio.value === name;
}

export function openSettings(focus = null) {
  const sheet = $("settings");
  if (!sheet.open) sheet.showModal();
  (focus ? $(focus).querySelector("input, select, textarea") || $(focus) : $("system")).focus();
}

export function closeSettings() {
  if ($("settings").open) $("settings").close();
}

export function openSide() {
  $("sidebar").classList.add("open");
  $("scrim").hidden = false;
  $("new-chat").focus();
}

export function closeSide(refocus = false) {
  $("sidebar").classList.remove("open");
  $("scrim").hidden = true;
  if (refocus) $("open-side").focus();
}

// the composer's text box grows with what is typed, up to its CSS max-height
export function autoGrow(area) {
  area.style.height = "auto";
  area.style.height = `${area.scrollHeight}px`;
}

export function wireChrome() {
  setTheme(theme());
  $("theme").addEventListener("click", () => setTheme(ORDER[(ORDER.indexOf(theme()) + 1) % ORDER.length]));
  for (const radio of document.querySelectorAll("input[name='theme']")) {
    radio.addEventListener("change", () => setTheme(radio.value));
  }
  $("open-settings").addEventListener("click", () => openSettings());
  $("close-settings").addEventListener("click", closeSettings);
  $("settings").addEventListener("click", (ev) => { // a click on the backdrop closes it
    const r = $("settings").getBoundingClientRect();
    const outside = ev.clientX < r.left || ev.clientX > r.right || ev.clientY < r.top || ev.clientY > r.bottom;
    if (ev.target === $("settings") && outside) closeSettings();
  });
  $("open-side").addEventListener("click", openSide);
  $("close-side").addEventListener("click", () => closeSide(true));
  $("scrim").addEventListener("click", () => closeSide());
  $("input").addEventListener("input", () => autoGrow($("input")));
}
