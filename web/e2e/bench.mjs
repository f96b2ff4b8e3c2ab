// The web client's performance goals, measured in Debian's headless Chromium with the
// Performance API against a running `tidings serve` (started by
// crates/cli/benches/web_client.rs with a large synced INBOX). Prints one JSON object.
//
// Env: TIDINGS_URL, TIDINGS_USER, TIDINGS_PASSWORD, CHROMIUM, BENCH_RUNS (default 5),
// BENCH_OPENS (default 20), BENCH_THREADS ("0" for single messages, default "1").

import { chromium } from "playwright-core";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

const BASE = process.env.TIDINGS_URL ?? "http://127.0.0.1:8080";
const USER = process.env.TIDINGS_USER ?? "bench";
const PASS = process.env.TIDINGS_PASSWORD ?? "x";
const RUNS = Number(process.env.BENCH_RUNS ?? 5);
const OPENS = Number(process.env.BENCH_OPENS ?? 20);
const log = (...a) => process.stderr.write(`[bench] ${a.join(" ")}\n`);
const median = (v) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)];
const pct = (v, p) => [...v].sort((a, b) => a - b)[Math.min(v.length - 1, Math.floor(v.length * p))];

const login = await fetch(`${BASE}/auth/login`, {
  method: "POST",
  headers: { "Content-Type": "application/json", Origin: new URL(BASE).origin },
  body: JSON.stringify({ username: USER, password: PASS }),
});
if (!login.ok) throw new Error(`sign-in failed: ${login.status}`);
const token = /tidings_session=([^;]+)/.exec(login.headers.get("set-cookie") ?? "")?.[1];

const profile = fs.mkdtempSync(path.join(os.tmpdir(), "tidings-bench-"));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  headless: true,
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
  ],
  // Tall enough that 50 rows (64 px) are on screen at once, as the goal says.
  viewport: { width: 1400, height: 3500 },
});
const out = {};
try {
  await context.addCookies([{ name: "tidings_session", value: token, url: BASE, httpOnly: true, sameSite: "Strict" }]);
  // Records the moment 50 message rows with content are on screen.
  await context.addInitScript(() => {
    const done = () =>
      document.querySelectorAll(".row[data-email]").length >= 50 && !document.querySelector(".row.placeholder");
    const mo = new MutationObserver(() => {
      if (done()) {
        window.__first50 = performance.now();
        mo.disconnect();
      }
    });
    mo.observe(document, { childList: true, subtree: true });
  });
  const page = context.pages()[0] ?? (await context.newPage());
  const threads = process.env.BENCH_THREADS === "1" ? "1" : "0";
  // A page is "settled" when its sidebar (the mailboxes, fetched after the list) is in:
  // each navigation starts from an idle server, not while the page before is still
  // being answered.
  const settled = () => page.waitForSelector(".mailbox[data-role=inbox]", { timeout: 60_000 });
  await page.goto(BASE).then(() => page.evaluate((t) => localStorage.setItem("tidings.collapseThreads", t), threads));
  await settled();

  // 1. Navigation to the first 50 messages on screen (cold, then warm cache).
  const nav = [];
  let jsBytes = 0;
  for (let i = 0; i < RUNS; i++) {
    if (i === 0) {
      const cdp = await context.newCDPSession(page);
      await cdp.send("Network.clearBrowserCache");
    }
    await page.goto(`${BASE}/`, { waitUntil: "commit" });
    await page.waitForFunction(() => window.__first50 !== undefined, null, { timeout: 30_000 });
    const t = await page.evaluate(() => window.__first50);
    if (i === 0) {
      jsBytes = await page.evaluate(() =>
        performance.getEntriesByType("resource").filter((r) => r.name.endsWith(".js")).reduce((n, r) => n + r.encodedBodySize, 0),
      );
      out.total = await page.evaluate(() => window.tidings.list.model.total);
    }
    nav.push(t);
    // Where the time went: the document, the script, the Session, the first JMAP request
    // (Resource Timing, from navigation start) and the app's own marks.
    const parts = await page.evaluate(() => {
      const n = performance.getEntriesByType("navigation")[0];
      const r = performance.getEntriesByType("resource");
      const mark = (name) => performance.getEntriesByName(name)[0]?.startTime ?? null;
      const res = (f) => {
        const e = r.find((x) => f(x.name));
        return e ? [Math.round(e.startTime), Math.round(e.responseEnd)] : null;
      };
      return {
        html: n ? [Math.round(n.requestStart), Math.round(n.responseEnd)] : null,
        js: res((u) => u.endsWith(".js")),
        css: res((u) => u.endsWith(".css")),
        session: res((u) => u.endsWith("/jmap/session")),
        api: res((u) => u.endsWith("/jmap/api")),
        script: mark("tidings:script"),
        sessionDone: mark("tidings:session"),
        firstResponse: mark("tidings:first-response"),
      };
    });
    (out.navigationParts ??= []).push(parts);
    await settled();
    log(`navigation ${i}: ${t.toFixed(1)} ms ${JSON.stringify(parts)}`);
  }
  out.navigationColdMs = nav[0];
  out.navigationWarmMedianMs = median(nav.slice(1));
  out.firstScreenJsGzipBytes = jsBytes;

  // The floor: the same first-screen JMAP request fetched by the page itself.
  out.floorMs = median(
    await page.evaluate(async (runs) => {
      const app = window.tidings;
      const v = [];
      for (let i = 0; i < runs; i++) {
        const t0 = performance.now();
        await app.jmap.request([
          ["Email/query", { accountId: app.accountId, filter: { inMailbox: app.list.view.mailboxId }, sort: [{ property: "receivedAt", isAscending: false }], collapseThreads: app.list.view.collapseThreads, position: 0, limit: 100, calculateTotal: true }, "q"],
          ["Email/get", { accountId: app.accountId, "#ids": { resultOf: "q", name: "Email/query", path: "/ids" }, properties: ["id", "threadId", "mailboxIds", "keywords", "from", "to", "subject", "preview", "receivedAt", "hasAttachment", "size"] }, "g"],
        ]);
        v.push(performance.now() - t0);
      }
      return v;
    }, RUNS * 4),
  );

  await page.setViewportSize({ width: 1400, height: 900 });
  // 2. Opening a message: click to its body on screen.
  // First jumps of ten rows (never a neighbour of the message before, so never fetched
  // ahead), then reading down the list one by one (the next one was fetched ahead while
  // the one before was read). Each open records whether it was in the app's read-ahead.
  // (Rows 0-19 exist in a 900 px viewport; none of these eight is within two rows after
  // or one before another opened earlier.)
  const order = [19, 9, 14, 4, 17, 7, 12, 2];
  for (let i = 0; i < OPENS; i++) order.push(i % 20);
  const opens = await page.evaluate(async (order) => {
    const v = [];
    for (const at of order) {
      const row = document.querySelector(`.row[data-email][aria-rowindex="${at + 1}"]`);
      if (!row) throw new Error(`no row ${at}`);
      const id = row.getAttribute("data-email");
      const ahead = window.tidings.reader.bodies.has(id);
      const t0 = performance.now();
      await new Promise((resolve, reject) => {
        const ready = () => document.querySelector(`.reader .message[data-email="${id}"] .text-body, .reader .message[data-email="${id}"] iframe`);
        const to = setTimeout(() => reject(new Error("open timed out")), 10_000);
        const mo = new MutationObserver(() => {
          if (ready()) {
            mo.disconnect();
            clearTimeout(to);
            resolve();
          }
        });
        mo.observe(document.body, { childList: true, subtree: true });
        row.dispatchEvent(new MouseEvent("click", { bubbles: true }));
      });
      // Until the next frame is painted.
      await new Promise((r) => requestAnimationFrame(() => r()));
      v.push({ ms: performance.now() - t0, ahead });
    }
    return v;
  }, order);
  const cold = opens.filter((o) => !o.ahead).map((o) => o.ms);
  const warm = opens.filter((o) => o.ahead).map((o) => o.ms);
  const all = opens.map((o) => o.ms);
  log(`opens: ${opens.map((o) => `${o.ms.toFixed(0)}${o.ahead ? "*" : ""}`).join(" ")} (* fetched ahead)`);
  out.openMedianMs = median(all);
  out.openP95Ms = pct(all, 0.95);
  out.openNotAheadMedianMs = cold.length ? median(cold) : null;
  out.openNotAheadP95Ms = cold.length ? pct(cold, 0.95) : null;
  out.openNotAheadCount = cold.length;
  out.openAheadMedianMs = warm.length ? median(warm) : null;
  out.openAheadCount = warm.length;

  // 3. Scrolling the whole list, one step per frame, watching frames and long tasks.
  const scroll = await page.evaluate(async () => {
    const el = document.querySelector(".scroller");
    const longTasks = [];
    const po = new PerformanceObserver((l) => l.getEntries().forEach((e) => longTasks.push(e.duration)));
    po.observe({ type: "longtask", buffered: false });
    el.scrollTop = 0;
    const step = 64 * 40; // 40 rows per frame
    const frames = [];
    const t0 = performance.now();
    let last = t0;
    await new Promise((resolve) => {
      const tick = (now) => {
        frames.push(now - last);
        last = now;
        if (el.scrollTop + el.clientHeight >= el.scrollHeight - 1 || frames.length > 20_000 || now - t0 > 240_000) return resolve();
        el.scrollTop += step;
        requestAnimationFrame(tick);
      };
      requestAnimationFrame(tick);
    });
    // Let the last windows arrive, then count rows still without content.
    await new Promise((r) => setTimeout(r, 1000));
    po.disconnect();
    frames.shift();
    return {
      frames: frames.length,
      seconds: (performance.now() - t0) / 1000,
      longTasks,
      placeholdersAtEnd: document.querySelectorAll(".row.placeholder").length,
      frameTimes: frames,
    };
  });
  out.scrollFrames = scroll.frames;
  out.scrollSeconds = scroll.seconds;
  out.scrollFrameP50Ms = median(scroll.frameTimes);
  out.scrollFrameP95Ms = pct(scroll.frameTimes, 0.95);
  out.scrollFrameP99Ms = pct(scroll.frameTimes, 0.99);
  out.scrollFramesOver20Ms = scroll.frameTimes.filter((f) => f > 20).length;
  out.longTasks = scroll.longTasks.length;
  out.longestTaskMs = Math.max(0, ...scroll.longTasks);
  out.placeholdersAtEnd = scroll.placeholdersAtEnd;
} finally {
  await context.close();
  fs.rmSync(profile, { recursive: true, force: true });
}
process.stdout.write(JSON.stringify(out) + "\n");
