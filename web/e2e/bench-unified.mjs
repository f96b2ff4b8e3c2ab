// The unified Inbox's first rows, measured in Debian's headless Chromium with the
// Performance API against a running `tidings serve` (started by
// crates/cli/benches/web_unified.rs): a user with three accounts opening the unified
// Inbox, beside a user with one account (the same mailbox as the first of the three)
// opening its Inbox, in the same run. Prints one JSON object.
//
// Env: TIDINGS_URL, CHROMIUM, BENCH_RUNS (default 5), BENCH_ROWS (default 20).

import { chromium } from "playwright-core";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

const BASE = process.env.TIDINGS_URL ?? "http://127.0.0.1:8080";
const RUNS = Number(process.env.BENCH_RUNS ?? 5);
const ROWS = Number(process.env.BENCH_ROWS ?? 20);
const log = (...a) => process.stderr.write(`[bench-unified] ${a.join(" ")}\n`);
const median = (v) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)];

async function token(user, pass) {
  const r = await fetch(`${BASE}/auth/login`, {
    method: "POST",
    headers: { "Content-Type": "application/json", Origin: new URL(BASE).origin },
    body: JSON.stringify({ username: user, password: pass }),
  });
  if (!r.ok) throw new Error(`sign-in of ${user} failed: ${r.status}`);
  return /tidings_session=([^;]+)/.exec(r.headers.get("set-cookie") ?? "")?.[1];
}

/** Navigation start to ROWS rows with content on screen, cold cache once then warm. */
async function measure(user, pass, hash) {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), "tidings-bench-unified-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"],
    viewport: { width: 1400, height: 1600 },
  });
  try {
    await context.addCookies([{ name: "tidings_session", value: await token(user, pass), url: BASE, httpOnly: true, sameSite: "Strict" }]);
    await context.addInitScript((rows) => {
      const done = () => document.querySelectorAll(".row[data-email]").length >= rows && !document.querySelector(".row.placeholder");
      const mo = new MutationObserver(() => {
        if (done()) {
          window.__firstRows = performance.now();
          mo.disconnect();
        }
      });
      mo.observe(document, { childList: true, subtree: true });
    }, ROWS);
    const page = context.pages()[0] ?? (await context.newPage());
    const times = [];
    let accounts = 0;
    for (let i = 0; i < RUNS; i++) {
      if (i === 0) await (await context.newCDPSession(page)).send("Network.clearBrowserCache");
      // From a blank page: going to the URL the page is at already (a hash) would not
      // load it again.
      await page.goto("about:blank");
      await page.goto(`${BASE}/${hash}`, { waitUntil: "commit" });
      await page.waitForFunction(() => window.__firstRows !== undefined, null, { timeout: 30_000 });
      times.push(await page.evaluate(() => window.__firstRows));
      accounts = await page.evaluate(() => new Set([...document.querySelectorAll(".row[data-email] .where")].map((e) => e.textContent)).size);
      // Settled (every account's folders in) before the next navigation.
      await page.waitForSelector(".mailbox[data-role=inbox]", { timeout: 30_000 });
      await page.waitForTimeout(300);
      log(`${user} ${hash || "/"} run ${i}: ${times[i].toFixed(1)} ms`);
    }
    return { coldMs: times[0], warmMedianMs: median(times.slice(1)), accountsOnScreen: accounts };
  } finally {
    await context.close();
    fs.rmSync(profile, { recursive: true, force: true });
  }
}

const single = await measure("single", "x", "");
const unified = await measure("bench", "x", "#/all/inbox");
process.stdout.write(JSON.stringify({ rows: ROWS, single, unified }) + "\n");
