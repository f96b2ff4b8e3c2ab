// Several accounts in the web client, end to end in Debian's headless Chromium
// (playwright-core). Started by crates/cli/tests/web_accounts_e2e.rs, which owns Dovecot,
// Postfix and `tidings serve`, with three accounts for the web user: Work
// (alice@example.org), Home (bob@example.org) and Plain (login `dave`, not an address).
// It delivers mail when asked: `DELIVER <address> <subject>` on stdout, `OK` on stdin.
//
// Env: TIDINGS_URL, TIDINGS_USER, TIDINGS_PASSWORD, EXTRA_USER and MAIL_PASSWORD (the
// Dovecot account added while the client is open), IMAPS_PORT, SMTPS_PORT, CHROMIUM,
// ARTIFACTS.

import { chromium } from "playwright-core";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import readline from "node:readline";

const BASE = process.env.TIDINGS_URL ?? "http://127.0.0.1:8080";
const USER = process.env.TIDINGS_USER ?? "alice";
const PASS = process.env.TIDINGS_PASSWORD ?? "pw";
const OUT = process.env.ARTIFACTS ?? path.join(path.dirname(new URL(import.meta.url).pathname), "..", "test-results");
const WAIT = Number(process.env.E2E_WAIT_MS ?? 20_000);
fs.mkdirSync(OUT, { recursive: true });

const rl = readline.createInterface({ input: process.stdin });
const lines = rl[Symbol.asyncIterator]();
async function deliver(to, subject) {
  process.stdout.write(`DELIVER ${to} ${subject}\n`);
  const { value, done } = await lines.next();
  if (done || !String(value).startsWith("OK")) throw new Error(`delivery to ${to} failed: ${value}`);
}

function log(...a) {
  process.stderr.write(`[accounts-multi] ${a.join(" ")}\n`);
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
async function session() {
  const r = await fetch(`${BASE}/jmap/session`, { headers: { Authorization: basic } });
  if (!r.ok) throw new Error(`session ${r.status}`);
  return r.json();
}
/** The JMAP account id of the account named `name`. */
async function accountId(name) {
  const s = await session();
  const id = Object.keys(s.accounts).find((k) => s.accounts[k].name === name);
  if (!id) throw new Error(`no account ${name}`);
  return id;
}
/** The Emails of a mailbox (by role) of an account whose subject is `subject`. */
async function inMailbox(account, role, subject) {
  const r = await jmap([
    ["Mailbox/get", { accountId: account, ids: null, properties: ["role"] }, "m"],
    ["Email/query", { accountId: account, filter: { subject }, limit: 50 }, "q0"],
    ["Email/get", { accountId: account, "#ids": { resultOf: "q0", name: "Email/query", path: "/ids" }, properties: ["subject", "mailboxIds", "hasAttachment", "textBody", "bodyValues", "keywords"], fetchTextBodyValues: true }, "g"],
  ]);
  const box = (r[0][1].list ?? []).find((m) => m.role === role)?.id;
  const list = r[2][1].list ?? [];
  return list.filter((e) => e.subject === subject && box && e.mailboxIds[box]);
}

// Polls a condition: bounded in count and time.
async function waitFor(what, fn, ms = WAIT) {
  const start = Date.now();
  for (let i = 0; i < 5_000; i++) {
    const v = await fn();
    if (v) return v;
    if (Date.now() - start > ms) throw new Error(`timed out after ${ms} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`gave up: ${what}`);
}

const rowWith = (subject) => `.list .row:has(.subject:text-is("${subject}"))`;
const inbox = (account) => `.sidebar .account[data-account='${account}'] a[data-role=inbox]`;

async function run(page) {
  await page.goto(BASE);
  await page.waitForSelector("form[aria-labelledby=signin-title]", { timeout: WAIT });
  await page.fill("input[name=username]", USER);
  await page.fill("input[name=password]", PASS);
  await page.click("button[type=submit]");

  // 1. Each account with its own folders under its own heading.
  for (const a of ["Work", "Home", "Plain"]) await page.waitForSelector(inbox(a), { timeout: 60_000 });
  const inboxes = await page.$$eval(".sidebar .account a[data-role=inbox]", (els) => els.map((e) => e.getAttribute("data-mailbox")));
  check(inboxes.length === 3 && new Set(inboxes).size === 3, `each account shows its own Inbox under its heading (${inboxes.join(", ")})`);
  await page.click(inbox("Home"));
  await page.waitForSelector(rowWith("Home dinner"), { timeout: WAIT });
  check((await page.locator(rowWith("Work report")).count()) === 0, "Home's Inbox lists Home's mail only");
  await page.click(inbox("Work"));
  await page.waitForSelector(rowWith("Work report"), { timeout: WAIT });
  check((await page.locator(rowWith("Home dinner")).count()) === 0, "Work's Inbox lists Work's mail only");
  // The reading pane is cleared when the folder changes.
  await page.click(rowWith("Work report"));
  await page.waitForSelector(".reader .thread-subject:text-is('Work report')", { timeout: WAIT });
  await page.click(inbox("Plain"));
  await page.waitForSelector(".reader.empty", { timeout: WAIT });
  check(true, "the reading pane is cleared when another folder is opened");

  // 2. The unified Inbox: every account's mail, each row labelled with its account, and
  // a delivery to each account appearing live.
  await page.click("[data-unified=inbox]");
  for (const s of ["Work report", "Home dinner", "Plain hello"]) await page.waitForSelector(rowWith(s), { timeout: WAIT });
  const label = await page.textContent(`${rowWith("Home dinner")} .where`);
  check(label?.includes("Home"), `a row of the unified Inbox says its account (${label})`);
  await page.screenshot({ path: path.join(OUT, "unified-inbox.png") });
  await deliver("alice@example.org", "Live to Work");
  await page.waitForSelector(rowWith("Live to Work"), { timeout: WAIT });
  check(true, "a delivery to Work appears live in the unified Inbox");
  await deliver("bob@example.org", "Live to Home");
  await page.waitForSelector(rowWith("Live to Home"), { timeout: WAIT });
  check(true, "a delivery to Home appears live in the unified Inbox");
  const order = await page.$$eval(".list .row .subject", (els) => els.map((e) => e.textContent));
  check(order.indexOf("Live to Home") < order.indexOf("Live to Work"), "the unified Inbox is newest first across the accounts");
  // Reply from the account the message belongs to.
  await page.click(rowWith("Live to Home"));
  await page.waitForSelector(".reader .thread-subject:text-is('Live to Home')", { timeout: WAIT });
  await page.click(".reader button:text-is('Reply')");
  await page.waitForSelector(".compose select[name=from]", { timeout: WAIT });
  const replyFrom = await page.$eval(".compose select[name=from]", (s) => s.selectedOptions[0]?.textContent ?? "");
  check(replyFrom.includes("bob@example.org"), `a reply in the unified Inbox is from the message's account (${replyFrom})`);
  await page.click(".compose button:has-text('Discard')");

  // 3. A draft with an attachment, saved, reopened from Drafts, edited and sent.
  await page.click(inbox("Home"));
  await page.click(".topbar button:has-text('Compose')");
  await page.waitForSelector(".compose input[name=to]", { timeout: WAIT });
  const from = await page.$eval(".compose select[name=from]", (s) => s.selectedOptions[0]?.textContent ?? "");
  check(from.includes("bob@example.org"), `a new message in Home's folder is from Home (${from})`);
  await page.fill(".compose input[name=to]", "alice@example.org");
  await page.fill(".compose input[name=subject]", "Plans for Sunday");
  await page.fill(".compose textarea[name=body]", "first version");
  await page.setInputFiles(".compose input[type=file]", { name: "notes.txt", mimeType: "text/plain", buffer: Buffer.from("bring a cake\n") });
  await page.waitForSelector(".compose .c-attachments li:has-text('notes.txt')", { timeout: WAIT });
  await page.click(".compose button:has-text('Save draft')");
  await waitFor("the draft saved", async () => ((await page.textContent(".compose-status")) ?? "").includes("Draft saved"));
  await page.click(".compose button[aria-label='Close (the draft is kept)']");
  await page.waitForSelector(".compose", { state: "detached", timeout: WAIT });
  await page.click("[data-unified=drafts]");
  await page.waitForSelector(rowWith("Plans for Sunday"), { timeout: WAIT });
  const who = await page.textContent(`${rowWith("Plans for Sunday")} .from`);
  check(who?.includes("To: alice@example.org"), `Drafts shows the recipient, not the sender (${who})`);
  await page.click(rowWith("Plans for Sunday"));
  await page.waitForSelector(".compose input[name=subject]", { timeout: WAIT });
  check((await page.inputValue(".compose input[name=subject]")) === "Plans for Sunday", "the draft reopens with its subject");
  check((await page.inputValue(".compose input[name=to]")).includes("alice@example.org"), "… its recipient");
  check((await page.inputValue(".compose textarea[name=body]")).includes("first version"), "… its text");
  check((await page.locator(".compose .c-attachments li:has-text('notes.txt')").count()) === 1, "… and its attachment");
  await page.fill(".compose textarea[name=body]", "first version, and edited");
  // Kept saving as the same draft: one draft of that subject, the edited one.
  const home = await accountId("Home");
  await waitFor("the edit saved as the same draft", async () => {
    const d = await inMailbox(home, "drafts", "Plans for Sunday");
    return d.length === 1 && Object.values(d[0].bodyValues ?? {}).some((v) => v.value.includes("edited"));
  });
  check(true, "the reopened draft keeps saving as one draft");
  await page.click(".compose button:has-text('Send')");
  await page.waitForSelector(".compose", { state: "detached", timeout: WAIT });
  const sent = await waitFor("the Sent copy", async () => {
    const s = await inMailbox(home, "sent", "Plans for Sunday");
    return s.length ? s : null;
  }, 60_000);
  check(sent.length === 1 && Object.values(sent[0].bodyValues ?? {}).some((v) => v.value.includes("first version, and edited")), "Sent holds one copy, with the edit");
  check(sent[0].hasAttachment, "the attachment went with it");
  await waitFor("no draft left behind", async () => (await inMailbox(home, "drafts", "Plans for Sunday")).length === 0, 60_000);
  check(true, "no draft is left behind after sending");
  const work = await accountId("Work");
  await waitFor("delivered to Work's Inbox", async () => (await inMailbox(work, "inbox", "Plans for Sunday")).length === 1, 60_000);
  check(true, "the message reached the recipient's Inbox through SMTP");

  // 4. Settings: an identity's signature, used in the next message.
  await page.click("button[data-action=settings]");
  await page.waitForSelector("section[data-section=identities] li[data-identity='bob@example.org']", { timeout: WAIT });
  check((await page.locator("section[data-section=accounts]").count()) === 1, "Settings has an Accounts section");
  await page.click("section[data-section=identities] li[data-identity='bob@example.org'] button:has-text('Edit')");
  await page.fill(".identity-form textarea[name=textSignature]", "Bob at home");
  await page.screenshot({ path: path.join(OUT, "settings-identity.png") });
  await page.click(".identity-form button[type=submit]");
  await page.waitForSelector(".identity-form", { state: "detached", timeout: WAIT });
  await page.click("button[aria-label='Close settings']");
  await page.click(inbox("Home"));
  await page.click(".topbar button:has-text('Compose')");
  await page.waitForSelector(".compose textarea[name=body]", { timeout: WAIT });
  const body = await page.inputValue(".compose textarea[name=body]");
  check(body.includes("-- \nBob at home"), "a new message carries the identity's signature");
  await page.click(".compose button:has-text('Discard')");

  // 5. An account whose login is not an address: compose offers to make an identity.
  await page.click(inbox("Plain"));
  await page.click(".topbar button:has-text('Compose')");
  await page.waitForSelector("form.new-identity", { timeout: WAIT });
  check(true, "compose for an account without identity offers to make one");
  await page.fill("form.new-identity input[name=identity-name]", "Dave");
  await page.fill("form.new-identity input[name=identity-email]", "dave@example.org");
  await page.click("form.new-identity button[type=submit]");
  await page.waitForSelector(".compose input[name=to]", { timeout: WAIT });
  const daveFrom = await page.$eval(".compose select[name=from]", (s) => s.selectedOptions[0]?.textContent ?? "");
  check(daveFrom.includes("dave@example.org"), `… and writing goes on from it (${daveFrom})`);
  await page.click(".compose button:has-text('Discard')");

  // 6. An account added elsewhere (another tab, another device) shows without a reload.
  const r = await fetch(`${BASE}/web/accounts`, {
    method: "POST",
    headers: { Authorization: basic, "X-Tidings-Client": "e2e", "Content-Type": "application/json" },
    body: JSON.stringify({
      email: process.env.EXTRA_USER,
      password: process.env.MAIL_PASSWORD,
      name: "Extra",
      settings: {
        kind: "imap",
        incoming: { host: "127.0.0.1", port: Number(process.env.IMAPS_PORT), security: "tls" },
        smtp: { host: "127.0.0.1", port: Number(process.env.SMTPS_PORT), security: "tls" },
        username: process.env.EXTRA_USER,
      },
    }),
  });
  check(r.ok, `the account is added elsewhere (${r.status})`);
  await page.waitForSelector(inbox("Extra"), { timeout: 60_000 });
  check(true, "an account added while the client is open shows with its folders, without a reload");
  await page.click("[data-unified=inbox]");
  await page.waitForSelector(rowWith("Extra news"), { timeout: WAIT });
  check(true, "… and its mail is in the unified Inbox");
  await page.screenshot({ path: path.join(OUT, "unified-four-accounts.png") });
  // A return visit to the unified Inbox (its first request goes out with the Session's,
  // from the accounts and mailboxes remembered): the same rows, and the folders after.
  await page.reload();
  for (const s of ["Extra news", "Home dinner", "Plain hello", "Live to Work"]) await page.waitForSelector(rowWith(s), { timeout: WAIT });
  await page.waitForSelector(inbox("Extra"), { timeout: WAIT });
  check(page.url().endsWith("#/all/inbox"), "a reload opens the unified Inbox again, with every account's rows");

  // 7. Search results say where each message is: its account and its folder.
  await page.click(inbox("Work"));
  await page.fill(".topbar input[type=search]", "subject:report");
  await page.press(".topbar input[type=search]", "Enter");
  // Search results mark the words found: the row is found by its text.
  const found = '.list .row:has-text("Work report")';
  await page.waitForSelector(`${found} .where`, { timeout: WAIT });
  const where = await page.textContent(`${found} .where`);
  check(where?.includes("Work") && where.includes("INBOX"), `a search result says its account and folder (${where})`);
}

const profile = fs.mkdtempSync(path.join(os.tmpdir(), "tidings-accounts-multi-"));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  headless: true,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"],
  viewport: { width: 1400, height: 900 },
});
const page = context.pages()[0] ?? (await context.newPage());
page.on("pageerror", (e) => log("page error:", e.message));
page.on("dialog", (d) => void d.accept());
let ok = false;
try {
  await run(page);
  ok = true;
} catch (e) {
  log("FAILED:", e?.stack ?? e);
  await page.screenshot({ path: path.join(OUT, "accounts-multi-failure.png") }).catch(() => undefined);
}
await context.close();
fs.rmSync(profile, { recursive: true, force: true });
rl.close();
if (!ok) process.exit(1);
log("all checks passed");
process.stdout.write("DONE\n");
