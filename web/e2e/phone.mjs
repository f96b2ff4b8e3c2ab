// The web client on a phone (390×844) and under an accessibility audit, in Debian's
// headless Chromium (playwright-core), against a real `tidings serve` synced from a private
// Dovecot. Started by crates/cli/tests/web_phone_e2e.rs, which owns Dovecot and Postfix.
//
// axe-core (a devDependency) is evaluated into the page through the DevTools protocol, so
// the page's CSP stays as served and axe never reaches web/dist. A serious or critical
// violation fails the run.
//
// Env: TIDINGS_URL, TIDINGS_USER, TIDINGS_PASSWORD, LONG_SUBJECT (a 60-character subject
// in the Inbox), CHROMIUM, ARTIFACTS (screenshots).

import { chromium } from "playwright-core";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { createRequire } from "node:module";

const BASE = process.env.TIDINGS_URL ?? "http://127.0.0.1:8080";
const USER = process.env.TIDINGS_USER ?? "alice";
const PASS = process.env.TIDINGS_PASSWORD ?? "pw";
const LONG = process.env.LONG_SUBJECT ?? "";
const OUT = process.env.ARTIFACTS ?? path.join(path.dirname(new URL(import.meta.url).pathname), "..", "test-results");
const WAIT = Number(process.env.E2E_WAIT_MS ?? 20_000);
fs.mkdirSync(OUT, { recursive: true });
const AXE = fs.readFileSync(createRequire(import.meta.url).resolve("axe-core/axe.min.js"), "utf8");

function log(...a) {
  process.stderr.write(`[phone] ${a.join(" ")}\n`);
}
function check(cond, what) {
  if (!cond) throw new Error(`check failed: ${what}`);
  log("ok:", what);
}

const basic = "Basic " + Buffer.from(`${USER}:${PASS}`).toString("base64");
async function jmap(calls) {
  const r = await fetch(`${BASE}/jmap/api`, {
    method: "POST",
    headers: { Authorization: basic, "Content-Type": "application/json" },
    body: JSON.stringify({ using: ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail"], methodCalls: calls }),
  });
  if (!r.ok) throw new Error(`jmap ${r.status}`);
  return (await r.json()).methodResponses;
}

// Polls a condition outside the page: bounded in count and time.
async function waitFor(what, fn, ms = WAIT) {
  const start = Date.now();
  let pause = 25;
  for (let i = 0; i < 2_000; i++) {
    if (await fn()) return;
    if (Date.now() - start > ms) throw new Error(`timed out after ${ms} ms: ${what}`);
    await new Promise((r) => setTimeout(r, pause));
    pause = Math.min(400, pause * 2);
  }
  throw new Error(`gave up: ${what}`);
}

/** axe-core on the page as it is: serious and critical violations fail the run. */
async function audit(page, screen) {
  await page.evaluate(AXE);
  const found = await page.evaluate(async () => {
    // The mail itself (a sandboxed iframe of the sender's HTML) is not the client's markup.
    const r = await window.axe.run(document, { iframes: false, resultTypes: ["violations"] });
    return r.violations
      .filter((v) => v.impact === "serious" || v.impact === "critical")
      .map((v) => `${v.id} (${v.impact}): ${v.nodes.slice(0, 3).map((n) => n.target.join(" ")).join(" | ")}`);
  });
  check(found.length === 0, `axe: no serious or critical violation on ${screen}${found.length ? `: ${found.join("; ")}` : ""}`);
}

/** The same screen in light and in dark (the system setting; the theme preference is "system"). */
async function auditBoth(page, screen) {
  for (const scheme of ["light", "dark"]) {
    await page.emulateMedia({ colorScheme: scheme });
    await page.screenshot({ path: path.join(OUT, `${screen.replace(/\W+/g, "-")}-${scheme}.png`) });
    await audit(page, `${screen} (${scheme})`);
  }
  await page.emulateMedia({ colorScheme: "light" });
}

const noOverflow = (page) => page.evaluate(() => document.scrollingElement.scrollWidth <= window.innerWidth);
const box = (page, sel) => page.locator(sel).first().boundingBox();
/** Every visible button, link and form control in `scope` smaller than 44×44 px. */
const small = (page, scope) =>
  page.evaluate((scope) => {
    const out = [];
    for (const el of document.querySelectorAll(`${scope} button, ${scope} a[href], ${scope} select, ${scope} label.attach, ${scope} label.sel, ${scope} label.threads-toggle`)) {
      const r = el.getBoundingClientRect();
      if (r.width === 0 || r.height === 0 || getComputedStyle(el).visibility === "hidden") continue;
      if (r.width < 44 || r.height < 44) out.push(`${el.textContent.trim().slice(0, 20) || el.getAttribute("aria-label")} ${Math.round(r.width)}x${Math.round(r.height)}`);
    }
    return out;
  }, scope);

/** Whether the drawer has closed: it steps aside in an effect after the screen over it
 * renders, so this waits for it (bounded) rather than reading the first frame. */
const drawerClosed = (page) =>
  page.waitForFunction(() => !document.querySelector("#drawer.open"), null, { timeout: 5_000 }).then(
    () => true,
    () => false,
  );

/** `sel` covers the screen's width without overflow, with touch-sized targets in `targets`. */
async function fullScreen(page, sel, targets, screen) {
  const b = await box(page, sel);
  check(b && b.x === 0 && b.width >= 389, `${screen}: full width`);
  check(await noOverflow(page), `${screen}: no horizontal overflow`);
  const tiny = await small(page, targets);
  check(tiny.length === 0, `${screen}: touch-sized buttons (${tiny})`);
  await auditBoth(page, screen);
}

async function waitForSync() {
  await waitFor("INBOX synced", async () => {
    try {
      const s = await (await fetch(`${BASE}/jmap/session`, { headers: { Authorization: basic } })).json();
      const accountId = s.primaryAccounts["urn:ietf:params:jmap:mail"];
      const [[, mb]] = await jmap([["Mailbox/get", { accountId, ids: null }, "0"]]);
      return (mb.list.find((m) => m.role === "inbox")?.totalEmails ?? 0) >= 3;
    } catch {
      return false;
    }
  }, 60_000);
}

async function sentCopy(subject) {
  const s = await (await fetch(`${BASE}/jmap/session`, { headers: { Authorization: basic } })).json();
  const accountId = s.primaryAccounts["urn:ietf:params:jmap:mail"];
  const [[, mb]] = await jmap([["Mailbox/get", { accountId, ids: null }, "0"]]);
  const sent = mb.list.find((m) => m.role === "sent")?.id;
  const [[, q]] = await jmap([["Email/query", { accountId, filter: { inMailbox: sent, subject } }, "q"]]);
  return q.ids.length > 0;
}

async function phone(context) {
  const page = await context.newPage();
  await page.setViewportSize({ width: 390, height: 844 });
  await page.goto(BASE);
  await page.waitForSelector("form[aria-labelledby=signin-title]", { timeout: WAIT });
  await auditBoth(page, "sign-in");
  await page.fill("input[name=username]", USER);
  await page.fill("input[name=password]", PASS);
  await page.click("button[type=submit]");
  await page.waitForSelector(".row[data-email]:has-text('Quarterly report')", { timeout: WAIT });

  // The list: sender, subject and preview on each row, nothing wider than the screen.
  check(await noOverflow(page), "phone list: no horizontal overflow");
  const row = page.locator(".row[data-email]", { hasText: "Quarterly report" });
  for (const part of [".from", ".subject", ".preview"]) {
    const b = await row.locator(part).boundingBox();
    check(b && b.width > 40 && b.height > 8 && b.x + b.width <= 390, `phone list: the row shows its ${part.slice(1)}`);
  }
  check((await small(page, ".topbar")).length === 0, `phone top bar: touch-sized buttons (${await small(page, ".topbar")})`);
  check((await small(page, ".list")).length === 0, `phone list: touch-sized checkboxes, flags and toggles (${await small(page, ".list")})`);
  const sign = await box(page, ".topbar button:has-text('Sign out')");
  check(!sign || sign.x + sign.width <= 390, "phone top bar: Sign out is not clipped");

  // Search collapses to an icon that expands.
  await page.click(".topbar button[aria-label='Search']");
  const input = await box(page, ".topbar input[type=search]");
  check(input && input.width >= 120 && input.x + input.width <= 390, `phone search: the expanded box is ${Math.round(input?.width ?? 0)} px wide`);
  check(await noOverflow(page), "phone search: no horizontal overflow while expanded");
  await page.keyboard.press("Escape");
  await page.waitForSelector(".topbar button[aria-label='Search']", { timeout: WAIT });

  // The folder drawer: opens from the top bar, traps focus, closes on Escape, backdrop, choice.
  const burger = page.locator(".topbar button[aria-controls='drawer']");
  check((await burger.getAttribute("aria-expanded")) === "false", "drawer: closed at first, aria-expanded=false");
  await burger.click();
  await page.waitForSelector("#drawer.open", { timeout: WAIT });
  check((await burger.getAttribute("aria-expanded")) === "true", "drawer: aria-expanded=true when open");
  // It slides in (0.18 s): measured once in place.
  await page.waitForFunction(() => document.querySelector("#drawer")?.getBoundingClientRect().left === 0, null, { timeout: WAIT });
  const drawer = await box(page, "#drawer");
  check(drawer && drawer.x >= 0 && drawer.width <= 390 && drawer.width > 200, "drawer: slides over the list within the screen");
  for (let i = 0; i < 30; i++) await page.keyboard.press("Tab");
  check(await page.evaluate(() => !!document.activeElement?.closest("#drawer")), "drawer: focus stays inside it while open (30 Tabs)");
  for (let i = 0; i < 5; i++) await page.keyboard.press("Shift+Tab");
  check(await page.evaluate(() => !!document.activeElement?.closest("#drawer")), "drawer: and with Shift+Tab");
  check((await small(page, "#drawer")).length === 0, `drawer: touch-sized targets (${await small(page, "#drawer")})`);
  check(await page.locator("#drawer button:has-text('Sign out')").isVisible(), "drawer: Sign out and the account's settings are in it");
  await auditBoth(page, "phone drawer");
  await page.keyboard.press("Escape");
  await page.waitForSelector("#drawer.open", { state: "detached", timeout: WAIT });
  check((await burger.getAttribute("aria-expanded")) === "false", "drawer: Escape closes it");
  await page.waitForFunction(() => document.activeElement?.getAttribute("aria-controls") === "drawer", null, { timeout: WAIT });
  check(true, "drawer: focus returns to the button");
  await burger.click();
  await page.waitForSelector("#drawer.open", { timeout: WAIT });
  await page.mouse.click(380, 500);
  await page.waitForSelector("#drawer.open", { state: "detached", timeout: WAIT });
  check(true, "drawer: a tap on the backdrop closes it");
  await burger.click();
  await page.click("#drawer [role=treeitem][data-role=sent]");
  await page.waitForSelector("#drawer.open", { state: "detached", timeout: WAIT });
  await page.waitForFunction(() => /sent/i.test(document.querySelector(".list-title")?.textContent ?? ""), null, { timeout: WAIT });
  check(true, "drawer: choosing a folder opens it and closes the drawer");
  await burger.click();
  await page.click("#drawer [role=treeitem][data-role=inbox]");
  await page.waitForSelector(".row[data-email]:has-text('Quarterly report')", { timeout: WAIT });

  // Settings and the accounts screen open from the drawer, which steps aside for them.
  await burger.click();
  await page.click("#drawer button:has-text('Settings')");
  await page.waitForSelector("[data-section=appearance]", { timeout: WAIT });
  check(await drawerClosed(page), "drawer: Settings opens over the list, the drawer closed");
  await fullScreen(page, ".settings", ".settings", "phone settings");
  await page.goBack();
  await page.waitForSelector("[data-section=appearance]", { state: "detached", timeout: WAIT });
  check(true, "phone settings: the browser's Back closes it");
  await burger.click();
  await page.click("#drawer button[data-action=accounts]");
  await page.waitForSelector(".accounts-panel", { timeout: WAIT });
  check(await drawerClosed(page), "drawer: the accounts screen opens, the drawer closed");
  await page.click(".accounts-panel button[aria-label=Close]");
  await page.waitForSelector(".accounts-panel", { state: "detached", timeout: WAIT });

  // A message full screen; back by the button and by the browser's Back (the phone's gesture).
  await row.click();
  await page.waitForSelector(".reader .thread-subject:has-text('Quarterly report')", { timeout: WAIT });
  await fullScreen(page, ".reader", ".reader-head", "phone reader");
  check(!(await page.locator(".list").isVisible()) && (await box(page, ".reader")).y === 0, "phone reader: from the top, the list hidden behind it");
  await page.goBack();
  await page.waitForSelector(".reader .thread-subject", { state: "detached", timeout: WAIT });
  check(await page.locator(".list").isVisible(), "phone reader: the browser's Back returns to the list");
  await row.click();
  await page.click(".reader button.back");
  await page.waitForSelector(".reader .thread-subject", { state: "detached", timeout: WAIT });
  check(await page.locator(".list").isVisible(), "phone reader: the back button returns to the list");

  // Reply full screen, send, back to the list.
  await row.click();
  await page.click(".reader button:has-text('Reply')");
  await page.waitForSelector(".compose textarea[name=body]", { timeout: WAIT });
  await fullScreen(page, ".compose", ".compose", "phone composer");
  check((await box(page, ".compose")).y === 0 && (await box(page, ".compose")).height >= 843, "phone composer: from top to bottom");
  await page.goBack();
  await page.waitForSelector(".compose", { state: "detached", timeout: WAIT });
  check(await page.locator(".reader .thread-subject").isVisible(), "phone composer: the browser's Back closes it, back to the message");
  await page.goBack();
  await page.waitForSelector(".reader .thread-subject", { state: "detached", timeout: WAIT });
  check(await page.locator(".list").isVisible(), "phone: Back once more, from the message to the list");
  await row.click();
  await page.click(".reader button:has-text('Reply')");
  await page.waitForSelector(".compose textarea[name=body]", { timeout: WAIT });
  await page.fill(".compose textarea[name=body]", "Good news, thanks.");
  await page.click(".compose button:has-text('Send')");
  await page.waitForSelector(".compose", { state: "detached", timeout: WAIT });
  await waitFor("the reply's copy in Sent", () => sentCopy("Re: Quarterly report"), 30_000);
  check(true, "phone: the reply is sent, its copy in Sent");
  await page.click(".reader button.back");
  await page.waitForSelector(".list .row[data-email]", { timeout: WAIT });
  check(await noOverflow(page), "phone: back in the list after sending");
  await auditBoth(page, "phone list");
  await page.close();
}

async function desktop(context) {
  const page = await context.newPage();
  await page.setViewportSize({ width: 1280, height: 800 });
  await page.goto(BASE);
  await page.waitForSelector(".row[data-email]:has-text('Quarterly report')", { timeout: WAIT });
  const cut = await page.evaluate((long) => {
    const s = [...document.querySelectorAll(".row .subject")].find((e) => e.textContent === long);
    return s ? s.scrollWidth - s.clientWidth : -1;
  }, LONG);
  check(cut === 0, `1280 px: the 60-character subject is shown whole (cut by ${cut} px)`);
  await page.setViewportSize({ width: 720, height: 800 });
  check(await noOverflow(page), "720 px (a tablet, sidebar beside the list): no horizontal overflow");
  await page.setViewportSize({ width: 1280, height: 800 });
  await auditBoth(page, "desktop list");

  // One tab stop for the whole list; each checkbox says which message it selects.
  const stops = await page.evaluate(() => [...document.querySelectorAll(".list .scroller, .list .scroller *")].filter((e) => e.tabIndex >= 0 && !e.disabled).length);
  check(stops === 1, `the list is one tab stop (found ${stops})`);
  // The reply sent from the phone may be listed too: the row whose subject is exactly this.
  const quarterly = page.locator(".row[data-email]").filter({ has: page.locator(".subject", { hasText: /^Quarterly report$/ }) });
  const label = await quarterly.locator("input[type=checkbox]").getAttribute("aria-label");
  check(label === "Select message from carol@example.org: Quarterly report" || /^Select message from .*carol.*: Quarterly report$/i.test(label ?? ""), `checkbox label: ${label}`);

  // The split between list and reader: resizable by keyboard, remembered.
  const sep = page.locator("[role=separator][aria-label='Resize the message list']");
  const w00 = (await box(page, ".list")).width;
  const handle = await sep.boundingBox();
  await page.mouse.move(handle.x + handle.width / 2, handle.y + 200);
  await page.mouse.down();
  await page.mouse.move(handle.x - 80, handle.y + 200, { steps: 4 });
  await page.mouse.up();
  const w0 = (await box(page, ".list")).width;
  check(w0 < w00 - 60, `the split follows a drag (${Math.round(w00)} → ${Math.round(w0)} px)`);
  await sep.focus();
  for (let i = 0; i < 5; i++) await page.keyboard.press("ArrowRight");
  const w1 = (await box(page, ".list")).width;
  check(w1 > w0 + 40, `the split moves with the keyboard (${Math.round(w0)} → ${Math.round(w1)} px)`);
  await page.reload();
  await page.waitForSelector(".row[data-email]", { timeout: WAIT });
  const w2 = (await box(page, ".list")).width;
  check(Math.abs(w2 - w1) < 2, `the split is remembered across a reload (${Math.round(w2)} px)`);

  await quarterly.click();
  await page.waitForSelector(".reader .thread-subject:has-text('Quarterly report')", { timeout: WAIT });
  check((await page.locator("h1").count()) === 1, "one h1 while reading");
  await auditBoth(page, "desktop reader");
  await page.click(".topbar button:has-text('Compose')");
  await page.waitForSelector(".compose", { timeout: WAIT });
  await auditBoth(page, "desktop composer");
  await page.keyboard.press("Escape");
  await page.waitForSelector(".compose", { state: "detached", timeout: WAIT });
  await page.click(".topbar button[aria-label='Keyboard shortcuts']");
  await page.waitForSelector("[aria-labelledby=help-title]", { timeout: WAIT });
  await auditBoth(page, "keyboard help");
  await page.keyboard.press("Escape");
  await page.waitForSelector("[aria-labelledby=help-title]", { state: "detached", timeout: WAIT });

  // Appearance: applied at once, kept, applied before the first paint.
  await page.goto(`${BASE}/#/settings`);
  await page.waitForSelector("[data-section=appearance]", { timeout: WAIT });
  await auditBoth(page, "settings");
  await page.check("input[name=theme][value=dark]");
  const bg = () => page.evaluate(() => getComputedStyle(document.body).backgroundColor);
  check((await bg()) === "rgb(22, 24, 28)", "theme dark: applied at once");
  await page.check("input[name=density][value=compact]");
  check(await page.evaluate(() => document.documentElement.dataset.density === "compact"), "density compact: applied at once");
  await page.check("input[name=pane][value=bottom]");
  // Recorded when the parser inserts <body>: nothing of the page can be painted before it,
  // and the module script (the app) has not run yet.
  await page.addInitScript(() => {
    const mo = new MutationObserver(() => {
      if (!document.body) return;
      mo.disconnect();
      window.__firstPaint = { bg: getComputedStyle(document.documentElement).getPropertyValue("--bg").trim(), density: document.documentElement.dataset.density };
    });
    mo.observe(document, { childList: true, subtree: true });
  });
  await page.goto(BASE);
  await page.waitForSelector(".row[data-email]", { timeout: WAIT });
  const first = await page.evaluate(() => window.__firstPaint);
  check(first?.bg === "#16181c" && first?.density === "compact", `the theme and density hold from the first frame after a reload (${JSON.stringify(first)})`);
  await quarterly.click();
  await page.waitForSelector(".reader .thread-subject", { timeout: WAIT });
  const l = await box(page, ".list");
  const r = await box(page, ".reader");
  check(r.y >= l.y + l.height - 1, "reading pane bottom: the reader is below the list");
  await audit(page, "desktop reader, theme dark, compact, pane bottom");

  // Reading pane off: the message replaces the list, and back.
  await page.goto(`${BASE}/#/settings`);
  await page.check("input[name=pane][value=off]");
  await page.click(".settings button[aria-label='Close settings']");
  await quarterly.click();
  await page.waitForSelector(".reader .thread-subject", { timeout: WAIT });
  check(!(await page.locator(".list").isVisible()), "reading pane off: the message replaces the list");
  await page.click(".reader button.back");
  await page.waitForSelector(".list .row[data-email]", { timeout: WAIT });
  check(!(await page.locator(".reader").isVisible()), "reading pane off: back to the list alone");
  await page.close();
}

const profile = fs.mkdtempSync(path.join(os.tmpdir(), "tidings-chromium-"));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  headless: true,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"],
  hasTouch: true,
  colorScheme: "light",
});
let failed = false;
try {
  await waitForSync();
  await phone(context);
  await desktop(context);
} catch (e) {
  failed = true;
  log("FAILED:", e?.stack ?? e);
  for (const p of context.pages()) await p.screenshot({ path: path.join(OUT, "failure.png") }).catch(() => undefined);
} finally {
  await context.close();
  fs.rmSync(profile, { recursive: true, force: true });
}
if (failed) process.exit(1);
log("all checks passed");
process.stdout.write("DONE\n");
