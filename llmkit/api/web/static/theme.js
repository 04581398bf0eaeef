// The page's theme, set before the first paint (a classic script in <head>, so a
// dark system never flashes white): "light" or "dark" chosen by hand is kept in
// localStorage and wins; "system" (or nothing kept) follows prefers-color-scheme,
// which style.css reads itself.
(function () {
  var kept = null;
  try { kept = localStorage.getItem("llmkit-theme"); } catch (e) { /* storage off */ }
  if (kept === "light" || kept === "dark") document.documentElement.dataset.theme = kept;
})();
