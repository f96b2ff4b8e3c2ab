/// <reference lib="webworker" />
// The service worker (built on its own into dist/sw.js, served at the root scope):
//
// - the app shell (the page, its hashed scripts and styles, icons, manifest) is kept in
//   the Cache API so the app opens without a network; the page is fetched from the
//   network first, the hashed assets from the cache first (they never change);
// - mail is never cached here unless the user turned offline reading on: then, and only
//   then, the sanitised HTML pages of messages (`/web/html/…`) are kept too (the rest of
//   offline mail lives in IndexedDB, written by the page: web/src/offline.ts);
// - Web Push (RFC 8030) from the server's own PushSubscription (RFC 8620 7.2): the
//   PushVerification is answered with `PushSubscription/set`, a StateChange with new
//   Inbox mail becomes a notification with sender and subject, opening the message when
//   clicked. The push is decrypted by the browser (RFC 8291) before it reaches us.

import { Db, PUSH_DB } from "./offline-db";

declare const self: ServiceWorkerGlobalScope;

const SHELL_CACHE = "tidings-shell-v1";
/** Sanitised HTML of messages, only with offline reading on. */
export const MAIL_CACHE = "tidings-mail-v1";
const SHELL_FILES = new Set(["/", "/index.html", "/manifest.webmanifest", "/favicon.svg", "/icon-192.png", "/icon-512.png", "/icon-maskable-512.png"]);
/** Most notifications shown for one push; more new messages are summed up in one. */
const MAX_SHOWN = 3;
/** Most changes read per push (Email/changes maxChanges). */
const MAX_CHANGES = 50;
const CLIENT_HEADERS = { "X-Tidings-Client": "web", "Content-Type": "application/json" };

self.addEventListener("install", (e) => {
  e.waitUntil(
    (async () => {
      // The page loaded before this worker existed: keep it and the scripts and styles it
      // names now, so the first reload without a network finds them.
      const c = await caches.open(SHELL_CACHE);
      try {
        const page = await fetch("/", { cache: "no-cache" });
        if (page.ok) {
          const html = await page.clone().text();
          await c.put("/", page);
          const assets = [...html.matchAll(/(?:src|href)="(\/assets\/[^"]+)"/g)].map((m) => m[1] ?? "").filter(Boolean);
          await c.addAll([...new Set(assets), "/manifest.webmanifest", "/favicon.svg", "/icon-192.png"]);
        }
      } catch {
        /* offline at install: the shell is kept as it is fetched */
      }
      await self.skipWaiting();
    })(),
  );
});

self.addEventListener("activate", (e) => {
  e.waitUntil(
    (async () => {
      for (const k of await caches.keys()) if (k !== SHELL_CACHE && k !== MAIL_CACHE) await caches.delete(k);
      await self.clients.claim();
    })(),
  );
});

// --- the app shell, and mail only with offline reading on ------------------------------

self.addEventListener("fetch", (e) => {
  const req = e.request;
  if (req.method !== "GET") return;
  const url = new URL(req.url);
  if (url.origin !== self.location.origin) return;
  // Only the top-level page is the shell: an iframe navigation is a message's HTML.
  const page = req.mode === "navigate" && req.destination === "document" && (url.pathname === "/" || url.pathname === "/index.html");
  if (page || SHELL_FILES.has(url.pathname)) return e.respondWith(networkFirst(SHELL_CACHE, req, page ? "/" : url.pathname));
  if (url.pathname.startsWith("/assets/")) return e.respondWith(cacheFirst(req));
  // Known off (the usual case): the mail page goes to the network without us.
  if (url.pathname.startsWith("/web/html/") && offlineReading !== false) return e.respondWith(mailPage(req));
  // Everything else (JMAP, blobs, sign-in) goes to the network untouched.
});

async function networkFirst(cache: string, req: Request, key: string): Promise<Response> {
  try {
    const r = await fetch(req);
    if (r.ok) await (await caches.open(cache)).put(key, r.clone());
    return r;
  } catch (e) {
    const hit = await (await caches.open(cache)).match(key);
    if (hit) return hit;
    throw e;
  }
}

async function cacheFirst(req: Request): Promise<Response> {
  const c = await caches.open(SHELL_CACHE);
  const hit = await c.match(req);
  if (hit) return hit;
  const r = await fetch(req);
  if (r.ok) await c.put(req, r.clone());
  return r;
}

/** Whether offline reading is on: read from IndexedDB once per worker start, then told
 * by the page when the user changes it; null until read. */
let offlineReading: boolean | null = null;

async function readOfflineReading(): Promise<boolean> {
  if (offlineReading !== null) return offlineReading;
  try {
    const db = await Db.open(PUSH_DB);
    try {
      offlineReading = (await db.get<boolean>("kv", "offline-reading")) === true;
    } finally {
      db.close();
    }
  } catch {
    offlineReading = false;
  }
  return offlineReading;
}

self.addEventListener("message", (e: ExtendableMessageEvent) => {
  const m = e.data as { type?: string; on?: boolean } | null;
  if (m?.type === "tidings:offline-reading" && typeof m.on === "boolean") offlineReading = m.on;
});

// Read at start, so that the usual case (off) is known before the first mail page.
void readOfflineReading();

async function mailPage(req: Request): Promise<Response> {
  if (!(await readOfflineReading())) return fetch(req);
  return networkFirst(MAIL_CACHE, req, req.url);
}

// --- push ------------------------------------------------------------------------------

interface Push {
  "@type"?: string;
  pushSubscriptionId?: string;
  verificationCode?: string;
  changed?: Record<string, Record<string, string>>;
}

interface Address {
  name?: string | null;
  email?: string | null;
}

interface NewEmail {
  id: string;
  from?: Address[] | null;
  subject?: string | null;
  mailboxIds: Record<string, boolean>;
  keywords: Record<string, boolean>;
}

/** What a notification opens (read back on click). */
export interface NotificationTarget {
  accountId: string;
  emailId: string;
}

self.addEventListener("push", (e) => {
  let msg: Push | null = null;
  try {
    msg = (e.data?.json() ?? null) as Push | null;
  } catch {
    msg = null;
  }
  e.waitUntil(onPush(msg));
});

async function kv(): Promise<Db> {
  return Db.open(PUSH_DB);
}

async function api(calls: unknown[]): Promise<Map<string, [string, Record<string, unknown>]>> {
  const db = await kv();
  let url: string;
  try {
    url = (await db.get<string>("kv", "apiUrl")) ?? "/jmap/api";
  } finally {
    db.close();
  }
  // Same origin only: the session cookie must not go anywhere else.
  if (new URL(url, self.location.href).origin !== self.location.origin) url = "/jmap/api";
  const r = await fetch(url, {
    method: "POST",
    credentials: "same-origin",
    headers: CLIENT_HEADERS,
    body: JSON.stringify({ using: ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail"], methodCalls: calls }),
  });
  if (!r.ok) throw new Error(`JMAP request failed: ${r.status}`);
  const body = (await r.json()) as { methodResponses: [string, Record<string, unknown>, string][] };
  return new Map(body.methodResponses.map(([name, args, id]) => [id, [name, args]]));
}

async function onPush(msg: Push | null): Promise<void> {
  if (msg?.["@type"] === "PushVerification" && msg.pushSubscriptionId && msg.verificationCode) {
    // RFC 8620 7.2.2: the subscription is verified by setting the code it carried.
    await api([["PushSubscription/set", { update: { [msg.pushSubscriptionId]: { verificationCode: msg.verificationCode } } }, "v"]]);
    return;
  }
  if (msg?.["@type"] !== "StateChange" || !msg.changed) return;
  // The app in view shows new mail itself (and a focused page is what browsers accept
  // in place of a notification for a userVisibleOnly push).
  const wins = await self.clients.matchAll({ type: "window" });
  const inView = wins.some((w) => w.focused && new URL(w.url).origin === self.location.origin);
  const all: { accountId: string; e: NewEmail }[] = [];
  let failed = false;
  for (const [accountId, types] of Object.entries(msg.changed)) {
    const state = types.Email;
    if (!state) continue;
    try {
      for (const e of await newInInbox(accountId, state)) all.push({ accountId, e });
    } catch {
      failed = true;
    }
  }
  // The states above still advance, so nothing seen in the app is notified later.
  if (inView) return;
  // Signed out, or the server unreachable: the push still says something changed.
  if (failed && !all.length) await self.registration.showNotification("New mail", { tag: "tidings-new", body: "Open Tidings to read it.", icon: "/icon-192.png" });
  for (const { accountId, e } of all.slice(0, MAX_SHOWN)) {
    const from = e.from?.[0];
    const target: NotificationTarget = { accountId, emailId: e.id };
    await self.registration.showNotification(from?.name || from?.email || "New mail", {
      body: e.subject ?? "",
      tag: `tidings-${accountId}-${e.id}`,
      icon: "/icon-192.png",
      data: target,
    });
  }
  if (all.length > MAX_SHOWN)
    await self.registration.showNotification(`${all.length - MAX_SHOWN} more new messages`, { tag: "tidings-more", icon: "/icon-192.png" });
}

/** The Inbox messages created since the Email state seen last (kept per account), not
 * read yet. The first push after subscribing compares with the state
 * the page wrote when it subscribed. */
async function newInInbox(accountId: string, pushed: string): Promise<NewEmail[]> {
  const db = await kv();
  const key = `email-state:${accountId}`;
  try {
    const since = await db.get<string>("kv", key);
    if (!since || since === pushed) {
      await db.put("kv", key, pushed);
      return [];
    }
    const r = await api([
      ["Email/changes", { accountId, sinceState: since, maxChanges: MAX_CHANGES }, "c"],
      ["Mailbox/get", { accountId, ids: null, properties: ["role"] }, "m"],
      ["Email/get", { accountId, "#ids": { resultOf: "c", name: "Email/changes", path: "/created" }, properties: ["from", "subject", "mailboxIds", "keywords"] }, "g"],
    ]);
    const c = r.get("c");
    const m = r.get("m");
    const g = r.get("g");
    // cannotCalculateChanges (RFC 8620 5.2): start again from the pushed state.
    const next = c?.[0] === "Email/changes" && typeof c[1].newState === "string" ? c[1].newState : pushed;
    await db.put("kv", key, next);
    if (m?.[0] !== "Mailbox/get" || g?.[0] !== "Email/get") return [];
    const boxes = (m[1].list ?? []) as { id: string; role?: string | null }[];
    const inbox = boxes.find((b) => b.role === "inbox")?.id;
    if (!inbox) return [];
    const list = (g[1].list ?? []) as NewEmail[];
    return list.filter((e) => e.mailboxIds?.[inbox] && !e.keywords?.$seen);
  } finally {
    db.close();
  }
}

// The push service replaced the subscription (it expired, or the browser renewed it): the
// server must learn the new endpoint and keys, or pushes stop without anyone knowing.
self.addEventListener("pushsubscriptionchange", (e: PushSubscriptionChangeEvent) => {
  e.waitUntil(
    (async () => {
      const key = e.oldSubscription?.options.applicationServerKey;
      const sub = e.newSubscription ?? (key ? await self.registration.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: key }) : null);
      const j = sub?.toJSON();
      const db = await kv();
      try {
        const old = await db.get<string>("kv", "subscription-id");
        const device = await db.get<string>("kv", "device");
        if (!old || !device || !j?.endpoint || !j.keys?.p256dh || !j.keys.auth) return;
        const r = await api([
          [
            "PushSubscription/set",
            { create: { p: { deviceClientId: device, url: j.endpoint, keys: { p256dh: j.keys.p256dh, auth: j.keys.auth }, types: ["Email"] } }, destroy: [old] },
            "p",
          ],
        ]);
        const created = r.get("p")?.[1].created as Record<string, { id?: string }> | undefined;
        if (created?.p?.id) await db.put("kv", "subscription-id", created.p.id);
      } finally {
        db.close();
      }
    })(),
  );
});

self.addEventListener("notificationclick", (e) => {
  e.notification.close();
  const t = e.notification.data as Partial<NotificationTarget> | null;
  const route = t?.accountId && t.emailId ? `#/message/${encodeURIComponent(t.accountId)}/${encodeURIComponent(t.emailId)}` : "";
  e.waitUntil(
    (async () => {
      const wins = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
      const open = wins.find((w) => new URL(w.url).origin === self.location.origin);
      if (open) {
        await open.focus();
        if (route) open.postMessage({ type: "tidings:open", route });
        return;
      }
      await self.clients.openWindow(`/${route}`);
    })(),
  );
});
