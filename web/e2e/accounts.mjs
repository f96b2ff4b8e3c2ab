// Adding an account from the browser, end to end in Debian's headless Chromium
// (playwright-core): a user without accounts signs in, gets the Add-account screen, finds
// settings for an address, fails with a wrong password (the message says so and nothing
// is stored), succeeds, watches the new account's sync progress bar fill and go, then
// removes the account. Started by crates/cli/tests/accounts_e2e.rs, which owns Dovecot,
// Postfix and `tidings serve`.
//
// Env: TIDINGS_URL, TIDINGS_USER, TIDINGS_PASSWORD (the web user), MAIL_USER, MAIL_PASSWORD
// (the Dovecot account), IMAPS_PORT, SMTPS_PORT, CHROMIUM, ARTIFACTS, E2E_STEP
// (`password`, the default, or `oauth` with OAUTH_PROVIDER, OAUTH_USER, OAUTH_PASSWORD).

import { chromium } from "playwright-core";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

const BASE = process.env.TIDINGS_URL ?? "http://127.0.0.1:8080";
const USER = process.env.TIDINGS_USER ?? "alice";
const PASS = process.env.TIDINGS_PASSWORD ?? "pw";
const MAIL_USER = process.env.MAIL_USER ?? "alice@example.org";
const MAIL_PASSWORD = process.env.MAIL_PASSWORD ?? "imap-pw";
const OUT = process.env.ARTIFACTS ?? path.join(path.dirname(new URL(import.meta.url).pathname), "..", "test-results");
const WAIT = Number(process.env.E2E_WAIT_MS ?? 20_000);
fs.mkdirSync(OUT, { recursive: true });

function log(...a) {
  process.stderr.write(`[accounts-e2e] ${a.join(" ")}\n`);
}
function check(cond, what) {
  if (!cond) throw new Error(`check failed: ${what}`);
  log("ok:", what);
}
const basic = "Basic " + Buffer.from(`${USER}:${PASS}`).toString("base64");
async function storedAccounts() {
  const r = await fetch(`${BASE}/web/accounts`, { headers: { Authorization: basic, "X-Tidings-Client": "e2e" } });
  if (!r.ok) throw new Error(`/web/accounts ${r.status}`);
  return (await r.json()).accounts;
}

// Polls a condition: bounded in count and time.
async function waitFor(what, fn, ms = WAIT) {
  const start = Date.now();
  for (let i = 0; i < 5_000; i++) {
    const v = await fn();
    if (v) return v;
    if (Date.now() - start > ms) throw new Error(`timed out after ${ms} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`gave up: ${what}`);
}

async function signIn(page) {
  await page.goto(BASE);
  await page.waitForSelector("form[aria-labelledby=signin-title]", { timeout: WAIT });
  await page.fill("input[name=username]", USER);
  await page.fill("input[name=password]", PASS);
  await page.click("button[type=submit]");
}

/** The new account's progress bar, sampled every 50 ms until the account is synced:
 * every value seen, in order. */
async function watchProgress(page, name, requireBar = true) {
  const seen = [];
  await waitFor(
    `account ${name} synced`,
    async () => {
      const s = await page.evaluate((n) => {
        const el = [...document.querySelectorAll(".sidebar .account")].find((a) => a.getAttribute("data-account") === n);
        if (!el) return null;
        const bar = el.querySelector("progress");
        return { bar: bar ? Number(bar.value) : null, text: el.querySelector(".sync")?.textContent ?? "" };
      }, name);
      if (s?.bar != null && seen[seen.length - 1] !== s.bar) seen.push(s.bar);
      // Synced: the bar is gone, no status line, and the messages are listed.
      return s && s.bar === null && s.text === "" && (seen.length > 0 || !requireBar);
    },
    120_000,
  );
  return seen;
}

async function passwordFlow(page) {
  await signIn(page);
  await page.waitForSelector("#accounts-title:has-text('add your first mail account')", { timeout: WAIT });
  check(true, "a user without accounts is welcomed by the Add-account screen");
  await page.fill(".add-account input[name=email]", MAIL_USER);
  await page.click(".add-account button[type=submit]");
  await page.waitForSelector(".add-account input[name=password]", { timeout: 30_000 });
  const notes = await page.textContent(".setup-notes");
  check(notes.includes("guesses"), `settings for an unknown domain are offered as guesses (${notes.trim()})`);
  // The private servers: edit the guessed settings.
  await page.evaluate(() => document.querySelector("details.advanced")?.setAttribute("open", ""));
  await page.fill("input[name=incoming-host]", "127.0.0.1");
  await page.fill("input[name=incoming-port]", process.env.IMAPS_PORT);
  await page.selectOption("select[name=incoming-security]", "tls");
  await page.fill("input[name=incoming-port]", process.env.IMAPS_PORT);
  await page.fill("input[name=smtp-host]", "127.0.0.1");
  await page.selectOption("select[name=smtp-security]", "tls");
  await page.fill("input[name=smtp-port]", process.env.SMTPS_PORT);
  await page.fill("input[name=account-name]", "Work mail");

  // A wrong password: the message says so, nothing is stored.
  await page.fill(".add-account input[name=password]", "not-the-password");
  await page.click("button[data-action=add-account]");
  await page.waitForSelector(".setup-error", { timeout: 30_000 });
  const err = await page.textContent(".setup-error");
  check(err.includes("Wrong password"), `a wrong password is named as such (${err})`);
  check((await storedAccounts()).length === 0, "nothing is stored after a failed try");
  await page.screenshot({ path: path.join(OUT, "accounts-wrong-password.png") });

  // The right one: the account is added and syncs, the progress bar fills.
  await page.fill(".add-account input[name=password]", MAIL_PASSWORD);
  await page.click("button[data-action=add-account]");
  await page.waitForSelector(".sidebar .account[data-account='Work mail']", { timeout: 30_000 });
  check(true, "the new account shows in the sidebar");
  const seen = await watchProgress(page, "Work mail");
  log("progress values seen:", seen.join(" "));
  check(seen.every((v, i) => i === 0 || v >= seen[i - 1]), "the progress bar only moves forward");
  check(seen.some((v) => v < 1), "the progress bar was seen before the sync was complete");
  // Followed, not read once: the bar moves while the first sync runs.
  check(seen.length >= 3, `the progress bar fills as the sync goes (${seen.length} values)`);
  await page.waitForSelector(".list [role=option], .list .row, [data-email]", { timeout: WAIT }).catch(() => undefined);
  await page.screenshot({ path: path.join(OUT, "accounts-synced.png") });
  const stored = await storedAccounts();
  check(stored.length === 1 && stored[0].name === "Work mail", "the account is stored once, under its name");

  // Edit: a rename.
  await page.click("button[data-action=accounts]");
  await page.waitForSelector(".account-list li[data-account-row='Work mail']", { timeout: WAIT });
  await page.click(".account-list li[data-account-row='Work mail'] button[data-action=edit]");
  await page.fill("input[name=edit-name]", "Personal");
  await page.click(".edit-account button[type=submit]");
  await page.waitForSelector(".account-list li[data-account-row='Personal']", { timeout: 30_000 });
  check((await storedAccounts())[0]?.name === "Personal", "a rename is saved");

  // Remove, after confirming.
  page.once("dialog", (d) => void d.accept());
  await page.click(".account-list li[data-account-row='Personal'] button[data-action=remove]");
  await waitFor("the account row goes", async () => (await page.locator(".account-list li[data-account-row='Personal']").count()) === 0);
  check((await storedAccounts()).length === 0, "the removed account is gone from the server");
  // The removed account was the one on screen (and the only one): the app starts again
  // from the Session, which closes the panel itself and welcomes a user without accounts.
  await page.waitForSelector("#accounts-title:has-text('add your first mail account')", { timeout: WAIT });
  check(true, "with its last account removed the user is welcomed by the Add-account screen again");
  await waitFor("the sidebar drops it", async () => (await page.locator(".sidebar .account[data-account='Personal']").count()) === 0);
  check(true, "the sidebar no longer shows the removed account");
}

async function oauthFlow(page) {
  const provider = process.env.OAUTH_PROVIDER ?? "test";
  await signIn(page);
  await page.waitForSelector("#accounts-title:has-text('add your first mail account')", { timeout: WAIT });
  await page.fill(".add-account input[name=email]", process.env.OAUTH_USER);
  await page.waitForSelector(`[data-oauth-provider=${provider}]`, { timeout: WAIT });
  await page.click(`[data-oauth-provider=${provider}]`);
  // oidc-provider's development interactions: a login page, then a consent page.
  await page.waitForSelector("input[name=login]", { timeout: WAIT });
  await page.fill("input[name=login]", process.env.OAUTH_USER);
  await page.fill("input[name=password]", process.env.OAUTH_PASSWORD ?? "x");
  await page.click("button[type=submit]");
  await page.waitForSelector("button:has-text('Continue')", { timeout: WAIT });
  await page.click("button:has-text('Continue')");
  await page.waitForURL((u) => u.toString().startsWith(BASE), { timeout: 30_000 });
  await page.waitForSelector(`.sidebar .account[data-account='${process.env.OAUTH_USER}']`, { timeout: 30_000 });
  check(true, "back from the provider, the signed-in account shows in the sidebar");
  await watchProgress(page, process.env.OAUTH_USER, false);
  const stored = await waitFor("the account synced", async () => {
    const list = await storedAccounts();
    return list.length === 1 && list[0].status === "ok" ? list : null;
  }, 60_000);
  check(stored[0].auth === "oauth2", "the account is stored as an OAuth2 account and synced with its tokens");
  await page.waitForSelector(`[role=row]:has-text('${process.env.OAUTH_SUBJECT}')`, { timeout: 30_000 });
  check(true, "its mail is listed");
  await page.screenshot({ path: path.join(OUT, "accounts-oauth.png") });
}

const profile = fs.mkdtempSync(path.join(os.tmpdir(), "tidings-accounts-e2e-"));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  headless: true,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"],
  viewport: { width: 1300, height: 860 },
});
const page = context.pages()[0] ?? (await context.newPage());
page.on("pageerror", (e) => log("page error:", e.message));
let ok = false;
try {
  if (process.env.E2E_STEP === "oauth") await oauthFlow(page);
  else await passwordFlow(page);
  ok = true;
} catch (e) {
  log("FAILED:", e?.stack ?? e);
  await page.screenshot({ path: path.join(OUT, "accounts-failure.png") }).catch(() => undefined);
}
await context.close();
fs.rmSync(profile, { recursive: true, force: true });
if (!ok) process.exit(1);
log("all checks passed");
process.stdout.write("DONE\n");
