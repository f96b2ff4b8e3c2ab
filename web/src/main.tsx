import { render } from "preact";
import { App } from "./ui/App";
import { MailApp } from "./state";
import "./style.css";

declare global {
  interface Window {
    /** For the end-to-end tests and the console: the one application object. */
    tidings: MailApp;
  }
}

// Marks of the start-up, read by the benchmark (web/e2e/bench.mjs) to say where the time
// to the first screen goes.
performance.mark("tidings:script");
const app = new MailApp();
window.tidings = app;
const root = document.getElementById("app");
if (root) render(<App app={app} />, root);
void app.boot.start();
