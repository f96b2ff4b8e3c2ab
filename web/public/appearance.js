// Runs before the first paint (a classic script in <head>): sets the attributes style.css
// keys on from the saved appearance, so a dark theme never flashes light. The app keeps
// them current afterwards (src/app/prefs.ts, which owns the format).
(function () {
  var a = {};
  try {
    a = JSON.parse(localStorage.getItem("tidings.appearance") || "{}") || {};
  } catch (e) {
    a = {};
  }
  var r = document.documentElement;
  var dark = window.matchMedia && matchMedia("(prefers-color-scheme: dark)").matches;
  r.dataset.theme = a.theme === "dark" || a.theme === "light" ? a.theme : dark ? "dark" : "light";
  r.dataset.density = a.density === "compact" ? "compact" : "comfortable";
  r.dataset.pane = a.pane === "bottom" || a.pane === "off" ? a.pane : "right";
  if (a.listWidth > 0) r.style.setProperty("--list-w", Math.round(a.listWidth) + "px");
})();
