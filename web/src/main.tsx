import { render } from "preact";
import { App } from "./ui/App";
import { MailApp } from "./state";
import { readPref } from "./app/prefs";
import { messageRoute } from "./app/notifications";
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
// A notification clicked opens `#/message/…`, which the start-up replaces by the mailbox.
const opening = messageRoute(location.hash);
void (async () => {
  // Offline reading (its code loaded only when it is on) must answer the very first
  // requests when there is no network.
  let offline: { fetchAhead(): Promise<void> } | null = null;
  if (readPref("tidings.offline") === "1") {
    try {
      offline = await (await import("./offline")).enableOffline(app);
    } catch {
      /* no IndexedDB here: online only */
    }
  }
  await app.boot.start();
  await app.notifications.start(opening);
  if (app.phase === "ready") await offline?.fetchAhead();
})();
