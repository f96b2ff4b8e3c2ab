// End-to-end test of the installable app, Web Push and offline reading in Debian's
// headless Chromium (playwright-core), against a real `tidings serve` synced from a
// private Dovecot. Started by crates/cli/tests/web_push_e2e.rs, which owns Dovecot: this
// script prints `DELIVER push` (deliver a message) or `FLAGGED <subject>` (check the IMAP
// flag) and waits for `OK` on stdin. alice has two accounts: "mail" (alice@example.org)
// and "Home" (bob@example.org).
//
// Headless Chromium has no push service, so the page registers with the server a
// subscription whose endpoint is a loopback receiver here; what the server sends there
// (encrypted per RFC 8291, VAPID-signed) is decrypted by an independent implementation
// (Python http_ece, web/e2e/push_ece.py) and handed to the service worker through the
// DevTools protocol (ServiceWorker.deliverPushMessage), as the browser's push stack would.
//
// Env: TIDINGS_URL, TIDINGS_USER, TIDINGS_PASSWORD, CHROMIUM, PYTHON, ARTIFACTS.

import { chromium } from "playwright-core";
import { execFileSync } from "node:child_process";
import http from "node:http";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import readline from "node:readline";

const BASE = process.env.TIDINGS_URL ?? "http://127.0.0.1:8080";
const USER = process.env.TIDINGS_USER ?? "alice";
const PASS = process.env.TIDINGS_PASSWORD ?? "pw";
const PYTHON = process.env.PYTHON ?? "python3";
const HERE = path.dirname(new URL(import.meta.url).pathname);
const OUT = process.env.ARTIFACTS ?? path.join(HERE, "..", "test-results");
const WAIT = Number(process.env.E2E_WAIT_MS ?? 20_000);
fs.mkdirSync(OUT, { recursive: true });

const rl = readline.createInterface({ input: process.stdin });
const lines = rl[Symbol.asyncIterator]();
async function ask(line) {
  process.stdout.write(`${line}\n`);
  const { value, done } = await lines.next();
  if (done || !String(value).startsWith("OK")) throw new Error(`${line} failed: ${value}`);
}
function log(...a) {
  process.stderr.write(`[push-e2e] ${a.join(" ")}\n`);
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
/** Polls `fn` until it returns something truthy: bounded in count and time. */
async function waitFor(what, fn, ms = WAIT) {
  const start = Date.now();
  for (let i = 0; i < 400; i++) {
    const v = await fn();
    if (v) return v;
    if (Date.now() - start > ms) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out: ${what}`);
}

// --- the loopback push service ----------------------------------------------------------
const keys = JSON.parse(execFileSync(PYTHON, [path.join(HERE, "push_ece.py"), "keys"], { encoding: "utf8" }));
const pushes = []; // decrypted payloads, in order
const received = []; // the raw requests' heads
const push = http.createServer((req, res) => {
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", () => {
    received.push({ url: req.url, headers: req.headers });
    try {
      const clear = execFileSync(PYTHON, [path.join(HERE, "push_ece.py"), "decrypt", keys.private, keys.auth], { input: Buffer.concat(chunks), timeout: 10_000 });
      pushes.push(JSON.parse(clear.toString("utf8")));
      res.writeHead(201).end();
    } catch (e) {
      log("a push did not decrypt:", e.message);
      res.writeHead(400).end();
    }
  });
});
await new Promise((r) => push.listen(0, "127.0.0.1", r));
const pushUrl = `http://127.0.0.1:${push.address().port}/push/e2e`;

// A profile on disk, not an incognito context: Chromium installs apps only in a profile.
const profile = fs.mkdtempSync(path.join(os.tmpdir(), "tidings-push-"));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"],
  viewport: { width: 1400, height: 860 },
});
await context.grantPermissions(["notifications"], { origin: BASE });
let page = context.pages()[0] ?? (await context.newPage());

// Pushes go to the service worker through a tab that is not the app's, so that they
// still arrive once the app's tab is closed.
const relay = await context.newPage();
const cdp = await context.newCDPSession(relay);
const registrations = new Map();
cdp.on("ServiceWorker.workerRegistrationUpdated", (e) => {
  for (const r of e.registrations) if (!r.isDeleted) registrations.set(r.scopeURL, r.registrationId);
});
await cdp.send("ServiceWorker.enable");
let delivered = 0;
/** Hands every push received so far to the service worker, in order. */
async function deliverPushes() {
  const id = registrations.get(`${BASE}/`);
  if (!id) throw new Error(`no service worker registration for ${BASE}/: ${[...registrations.keys()]}`);
  for (; delivered < pushes.length; delivered++)
    await cdp.send("ServiceWorker.deliverPushMessage", { origin: BASE, registrationId: id, data: JSON.stringify(pushes[delivered]) });
}

async function signIn(p) {
  await p.goto(BASE);
  await p.waitForSelector("form[aria-labelledby=signin-title]", { timeout: WAIT });
  await p.fill("input[name=username]", USER);
  await p.fill("input[name=password]", PASS);
  await p.click("button[type=submit]");
  await p.locator(".row", { hasText: "Quarterly report" }).waitFor({ timeout: WAIT });
}

async function shownNotifications(p) {
  return p.evaluate(async () => {
    const reg = await navigator.serviceWorker.ready;
    return (await reg.getNotifications()).map((n) => ({ title: n.title, body: n.body, data: n.data }));
  });
}

async function openSettings(p) {
  await p.getByRole("button", { name: "Settings" }).click();
  await p.locator(".settings input[name=offline]").waitFor({ timeout: WAIT });
}

try {
  // --- installable ---------------------------------------------------------------------
  await signIn(page);
  const manifest = await page.evaluate(async () => {
    const link = document.querySelector("link[rel=manifest]");
    const r = await fetch(link.href);
    const text = await r.text();
    try {
      return { type: r.headers.get("content-type"), body: JSON.parse(text) };
    } catch {
      throw new Error(`the manifest: ${r.status} ${r.headers.get("content-type")} ${text.slice(0, 200)}`);
    }
  });
  check(manifest.type.startsWith("application/manifest+json"), "the manifest is served as application/manifest+json");
  const m = manifest.body;
  check(m.display === "standalone" && m.start_url === "/" && m.theme_color && m.name === "Tidings", "the manifest names the app, start_url, standalone display, theme colour");
  check(m.icons.some((i) => i.purpose === "maskable" && i.type === "image/png") && m.icons.some((i) => i.sizes === "512x512"), "the manifest has a 512 px icon and a maskable one");
  for (const i of m.icons) {
    const r = await page.request.get(`${BASE}${i.src}`);
    check(r.ok() && r.headers()["content-type"] === i.type, `icon ${i.src} is served as ${i.type}`);
  }
  const sw = await page.request.get(`${BASE}/sw.js`);
  check(sw.ok() && sw.headers()["content-type"].startsWith("text/javascript") && sw.headers()["service-worker-allowed"] === "/", "sw.js is served as JavaScript with Service-Worker-Allowed: /");
  const active = await page.evaluate(() => navigator.serviceWorker.ready.then((r) => r.active?.state ?? "none"));
  check(active === "activating" || active === "activated", `the service worker is registered at the root scope (${active})`);
  await waitFor("the page is controlled by the service worker", () => page.evaluate(() => !!navigator.serviceWorker.controller));
  // Chromium's own verdict on installing the app (manifest, icons, service worker).
  const pageCdp = await context.newCDPSession(page);
  const { installabilityErrors } = await pageCdp.send("Page.getInstallabilityErrors");
  check(installabilityErrors.length === 0, `Chromium finds the app installable (${JSON.stringify(installabilityErrors)})`);
  await pageCdp.detach();
  const cachedMail = await page.evaluate(async () => {
    const out = [];
    for (const k of await caches.keys()) for (const r of await (await caches.open(k)).keys()) out.push(new URL(r.url).pathname);
    return out;
  });
  check(cachedMail.includes("/") && cachedMail.some((u) => u.startsWith("/assets/")), `the app shell is kept (${cachedMail.length} files)`);
  check(!cachedMail.some((u) => u.startsWith("/jmap") || u.startsWith("/web/html")), "no mail is kept by the service worker with offline reading off");

  // --- Web Push ------------------------------------------------------------------------
  await openSettings(page);
  await page.locator(".settings input[name=notifications]").check();
  // Headless Chromium has no push service: the browser's own subscribe fails and says so.
  await page.locator(".settings .note", { hasText: /Only while Tidings is open|arrive with Tidings closed/ }).waitFor({ timeout: WAIT });
  log("browser push:", await page.locator(".settings .note").first().textContent());
  await page.keyboard.press("Escape");
  const subId = await page.evaluate((t) => window.tidings.notifications.register(t), { endpoint: pushUrl, keys: { p256dh: keys.p256dh, auth: keys.auth } });
  check(typeof subId === "string" && subId.length > 0, `the page registered a PushSubscription with the server (${subId})`);
  await waitFor("the PushVerification push", () => pushes.length >= 1);
  check(pushes[0]["@type"] === "PushVerification" && pushes[0].pushSubscriptionId === subId, "the server's PushVerification decrypts with http_ece (RFC 8291)");
  const auth = received[0].headers.authorization ?? "";
  const session = await (await fetch(`${BASE}/jmap/session`, { headers: { Authorization: basic } })).json();
  const vapidKey = session.capabilities["urn:ietf:params:jmap:webpush-vapid"]?.applicationServerKey;
  check(/^vapid t=[\w-]+\.[\w-]+\.[\w-]+, k=/.test(auth) && auth.endsWith(`k=${vapidKey}`), "the push carries a VAPID token with the Session's applicationServerKey (RFC 8292, RFC 9749)");
  const claims = JSON.parse(Buffer.from(auth.slice(8).split(".")[1], "base64url").toString());
  check(claims.aud === new URL(pushUrl).origin && claims.exp > Date.now() / 1000 && claims.exp <= Date.now() / 1000 + 24 * 3600, "the VAPID token's aud is the push service's origin and exp within 24 h");
  await deliverPushes();
  // The service worker answered the verification: the server now sends StateChanges.
  const verified = await waitFor("the subscription verified by the service worker", async () => {
    const r = await jmap([["PushSubscription/get", { ids: [subId] }, "p"]]);
    const s = r[0][1].list?.[0];
    return s?.verificationCode ? s : null;
  });
  check(!!verified.verificationCode, "the service worker set the verification code (PushSubscription/set)");

  // The app's tab closes; the browser (and the relay tab) stay.
  await page.close();
  const before = pushes.length;
  await ask("DELIVER push");
  await waitFor("a StateChange push after the delivery", () => pushes.slice(before).some((p) => p["@type"] === "StateChange"));
  check(true, "a delivery with the app's tab closed produced an encrypted StateChange push");
  await deliverPushes();
  page = await context.newPage();
  await page.goto(BASE);
  const shown = await waitFor("the new-mail notification", async () => {
    await deliverPushes();
    const n = await shownNotifications(page);
    return n.find((x) => x.title === "Frida Push") ?? null;
  });
  check(shown.body === "Pushed while closed", `the notification shows sender and subject (${shown.title}: ${shown.body})`);
  check(typeof shown.data?.emailId === "string", "the notification knows the message it opens");
  await page.screenshot({ path: path.join(OUT, "push-reopened.png") });

  // Clicking it opens the app on that message: the route the service worker opens.
  await page.close();
  page = await context.newPage();
  await page.goto(`${BASE}/#/message/${encodeURIComponent(shown.data.accountId)}/${encodeURIComponent(shown.data.emailId)}`);
  await page.locator(".reader .text-body", { hasText: "pushed body" }).waitFor({ timeout: WAIT });
  check(true, "the notification's route opens the message");

  // --- offline reading and actions -----------------------------------------------------
  await openSettings(page);
  await page.locator(".settings input[name=offline]").check();
  await page.locator("[data-offline-status=on]").waitFor({ timeout: WAIT * 2 });
  check(true, "offline reading on: recent mail fetched ahead");
  await page.keyboard.press("Escape");
  // Closing goes back in history (out of `#/settings`): reload only once it has.
  await page.waitForFunction(() => !location.hash.startsWith("#/settings"), null, { timeout: WAIT });
  await context.setOffline(true);
  page.on("pageerror", (e) => log("pageerror:", e.message));
  await page.reload();
  await page.locator(".row", { hasText: "Invoice 2041" }).waitFor({ timeout: WAIT });
  check(true, "without a network, the app opens and lists the Inbox from the cache after a reload");
  await page.locator(".row", { hasText: "Invoice 2041" }).click();
  await page.locator(".reader .text-body", { hasText: "due soon" }).waitFor({ timeout: WAIT });
  check(true, "a message never opened before is read from the cache");
  await page.locator(".row", { hasText: "Offline newsletter" }).click();
  await page.frameLocator(".reader iframe.mail-frame").locator("body", { hasText: "without a network" }).waitFor({ timeout: WAIT });
  check(true, "an HTML message's sanitised page is read from the service worker's cache");
  const conn = page.locator(".topbar [data-connection]");
  await waitFor("the offline indicator", async () => /Offline/.test((await conn.textContent()) ?? ""));
  check(true, `the app says it is offline (${await conn.textContent()})`);
  // Opening a message marks it read: that change is queued too.
  const queued = async () => Number(/(\d+) changes? queued/.exec((await conn.textContent()) ?? "")?.[1] ?? 0);
  const row = page.locator(".row", { hasText: "Invoice 2042" });
  const queuedBefore = await queued();
  await row.locator("button.flag").click();
  await waitFor("the queued flag", async () => (await queued()) === queuedBefore + 1);
  check(true, "the flag made offline is queued and the app says so");
  await page.screenshot({ path: path.join(OUT, "offline-queued.png") });
  await page.reload();
  await page.locator(".row", { hasText: "Invoice 2042" }).locator("button.flag.on").waitFor({ timeout: WAIT });
  check(true, "after another reload offline, the queued flag still shows");
  // The second account was fetched ahead too: its Inbox, a message of it and the
  // unified Inbox open from the cache.
  await page.locator(".sidebar .account[data-account='Home'] a[data-role=inbox]").click();
  await page.locator(".row", { hasText: "Family dinner" }).click({ timeout: WAIT });
  await page.locator(".reader .text-body", { hasText: "bring dessert" }).waitFor({ timeout: WAIT });
  check(true, "without a network, a message of the second account is read from the cache");
  await page.locator("[data-unified=inbox]").click();
  for (const s of ["Family dinner", "Invoice 2041"]) await page.locator(".row", { hasText: s }).waitFor({ timeout: WAIT });
  check(true, "without a network, the unified Inbox lists both accounts' mail from the cache");
  await context.setOffline(false);
  await waitFor("the queue sent", async () => !/queued/.test((await conn.textContent()) ?? ""), WAIT * 2);
  await ask("FLAGGED Invoice 2042");
  check(true, "back online, the queued flag reached the IMAP server");

  // Off: the cache goes.
  await openSettings(page);
  await page.locator(".settings input[name=offline]").uncheck();
  await page.locator("[data-offline-status=off]").waitFor({ timeout: WAIT });
  const left = await page.evaluate(async () => {
    const dbs = (await indexedDB.databases()).map((d) => d.name);
    return { dbs, mail: await caches.has("tidings-mail-v1") };
  });
  check(!left.dbs.includes("tidings-offline") && !left.mail, `turning offline reading off deletes the cache (${left.dbs})`);

  // Notifications off: the server's PushSubscription is destroyed.
  await page.locator(".settings input[name=notifications]").uncheck();
  await waitFor("the subscription destroyed", async () => {
    const r = await jmap([["PushSubscription/get", { ids: null }, "p"]]);
    return r[0][1].list?.length === 0;
  });
  check(true, "turning notifications off destroys the PushSubscription");

  // Signing out leaves no mail of this user on the device.
  await page.locator(".settings input[name=offline]").check();
  await page.locator("[data-offline-status=on]").waitFor({ timeout: WAIT * 2 });
  check((await page.evaluate(async () => (await indexedDB.databases()).map((d) => d.name))).includes("tidings-offline"), "offline reading on again keeps mail");
  await page.keyboard.press("Escape");
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.waitForSelector("form[aria-labelledby=signin-title]", { timeout: WAIT });
  const afterSignOut = await page.evaluate(async () => (await indexedDB.databases()).map((d) => d.name));
  check(!afterSignOut.includes("tidings-offline"), `signing out deletes the mail kept for offline reading (${afterSignOut})`);
  process.stdout.write("DONE\n");
} catch (e) {
  log("FAILED:", e.stack ?? e);
  try {
    log("page text:", (await page.textContent("body"))?.slice(0, 2000));
    await page.screenshot({ path: path.join(OUT, "push-failure.png") });
  } catch {
    /* the page is gone */
  }
  process.exitCode = 1;
} finally {
  await context.close();
  fs.rmSync(profile, { recursive: true, force: true });
  push.close();
  rl.close();
}
