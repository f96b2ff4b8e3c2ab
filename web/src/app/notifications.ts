// Notifications of new mail in Inbox, optional and asked for by the user:
//
// - while the page is open but hidden, shown by the page itself from what push brought;
// - with the tab closed, through Web Push (RFC 8030): the page subscribes the browser's
//   push service with the server's VAPID key (RFC 9749, the Session's
//   `urn:ietf:params:jmap:webpush-vapid`), registers that subscription with the server's
//   own PushSubscription (RFC 8620 7.2), and the service worker (web/src/sw.ts) answers
//   the verification and shows what arrives. Turning notifications off destroys it.

import { type Invocation, MethodError, WEBPUSH_VAPID } from "../jmap";
import type { Email, Id, TypeStates } from "../jmap-types";
import { Db, PUSH_DB } from "../offline-db";
import type { MailApp } from "../state";
import { readPref, writePref } from "./prefs";

const SUB_ID = "tidings.push.id";
const SUB_AT = "tidings.push.at";
const DEVICE = "tidings.device";
/** A subscription is made again after this long: the server grants 30 days at most
 * (RFC 8620 7.2: it may shorten `expires`), so it never runs out while in use. */
const RENEW_MS = 7 * 24 * 3600 * 1000;

/** A browser's push subscription as the server needs it (RFC 8620 7.2 `url`, `keys`). */
export interface WebPushTarget {
  endpoint: string;
  keys: { p256dh: string; auth: string };
}

function fromB64url(s: string): Uint8Array<ArrayBuffer> {
  const b = atob(s.replace(/-/g, "+").replace(/_/g, "/") + "=".repeat((4 - (s.length % 4)) % 4));
  const out = new Uint8Array(b.length);
  for (let i = 0; i < b.length; i++) out[i] = b.charCodeAt(i);
  return out;
}

function sameKey(a: ArrayBuffer | null, b: Uint8Array): boolean {
  if (!a || a.byteLength !== b.length) return false;
  const x = new Uint8Array(a);
  return x.every((v, i) => v === b[i]);
}

/** The server's id of this browser's PushSubscription as the service worker knows it
 * (it registers the new one when the push service renews it): read, or written when
 * `set` is given. */
async function subscriptionId(set?: string): Promise<string | undefined> {
  const db = await Db.open(PUSH_DB);
  try {
    if (set === undefined) return await db.get<string>("kv", "subscription-id");
    await db.put("kv", "subscription-id", set);
    return set;
  } finally {
    db.close();
  }
}

/** `#/message/{account}/{email}`: the route a notification opens. */
export function messageRoute(hash: string): { accountId: Id; emailId: Id } | null {
  const m = /^#\/message\/([^/]+)\/([^/]+)$/.exec(hash);
  return m?.[1] && m[2] ? { accountId: decodeURIComponent(m[1]), emailId: decodeURIComponent(m[2]) } : null;
}

export class Notifications {
  on = readPref("tidings.notify") === "1";
  /** Whether they reach a closed tab: a push subscription registered with the server. */
  push = !!readPref(SUB_ID);
  /** Why they do not, when the user turned them on. */
  pushProblem = "";

  /** The Email state of each account as far as its new mail was told (`onPush`). */
  private states = new Map<Id, string>();
  /** `{account}/{email}` of what was told already. */
  private told = new Set<string>();

  constructor(private app: MailApp) {}

  async set(on: boolean): Promise<void> {
    if (on && typeof Notification !== "undefined" && Notification.permission !== "granted") {
      on = (await Notification.requestPermission()) === "granted";
    }
    this.on = on;
    writePref("tidings.notify", on ? "1" : "0");
    this.app.emit();
    try {
      if (on) await this.subscribe();
      else await this.unsubscribe();
      this.pushProblem = "";
    } catch (e) {
      this.pushProblem = e instanceof Error ? e.message : String(e);
    }
    await this.prime().catch(() => undefined);
    this.app.emit();
  }

  /** Registers the service worker (the app shell offline, and Web Push) once the first
   * screen is up, renews an old push subscription and opens the message a notification
   * was clicked for. */
  async start(route: { accountId: Id; emailId: Id } | null): Promise<void> {
    if (route) await this.openRoute(route);
    window.addEventListener("hashchange", () => {
      const r = messageRoute(location.hash);
      if (r) void this.openRoute(r);
    });
    void this.prime().catch(() => undefined);
    if (typeof navigator === "undefined" || !("serviceWorker" in navigator)) return;
    navigator.serviceWorker.addEventListener("message", (e: MessageEvent<{ type?: string; route?: string }>) => {
      const r = e.data?.type === "tidings:open" && e.data.route ? messageRoute(e.data.route) : null;
      if (r) void this.openRoute(r);
    });
    try {
      await navigator.serviceWorker.register("/sw.js", { scope: "/" });
    } catch {
      return; // no service worker (a private window, an http origin that is not localhost)
    }
    const at = Number(readPref(SUB_AT) ?? "0");
    if (this.on && this.push && Date.now() - at > RENEW_MS) await this.subscribe().catch(() => undefined);
  }

  /** Subscribes this browser's push service with the server's VAPID key and registers
   * the subscription with the server. */
  async subscribe(): Promise<void> {
    const cap = this.app.session?.capabilities[WEBPUSH_VAPID] as { applicationServerKey?: string } | undefined;
    if (!cap?.applicationServerKey) throw new Error("the server offers no Web Push");
    if (typeof navigator === "undefined" || !("serviceWorker" in navigator) || typeof PushManager === "undefined")
      throw new Error("this browser has no Web Push");
    // `ready` never settles when the worker could not be registered: bounded.
    const reg = await Promise.race([
      navigator.serviceWorker.ready,
      new Promise<never>((_, reject) => setTimeout(() => reject(new Error("the service worker is not running")), 10_000)),
    ]);
    const key = fromB64url(cap.applicationServerKey);
    let sub = await reg.pushManager.getSubscription();
    // RFC 9749 5: after the server's key changed, the old subscription is worthless.
    if (sub && !sameKey(sub.options.applicationServerKey, key)) {
      await sub.unsubscribe();
      sub = null;
    }
    sub ??= await reg.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: key });
    const j = sub.toJSON();
    if (!j.endpoint || !j.keys?.p256dh || !j.keys.auth) throw new Error("the browser's push subscription has no keys");
    await this.register({ endpoint: j.endpoint, keys: { p256dh: j.keys.p256dh, auth: j.keys.auth } });
  }

  /** Registers `target` with the server (replacing this browser's previous one), after
   * telling the service worker the Email states to compare the next pushes with. */
  async register(target: WebPushTarget): Promise<Id> {
    const session = this.app.session;
    if (!session) throw new Error("not signed in");
    const accounts = Object.keys(session.accounts);
    const old = readPref(SUB_ID);
    let device = readPref(DEVICE);
    if (!device) {
      device = crypto.randomUUID();
      writePref(DEVICE, device);
    }
    const r = await this.app.jmap.request([
      ...accounts.map((accountId, i): [string, Record<string, unknown>, string] => ["Email/get", { accountId, ids: [] }, `s${i}`]),
      [
        "PushSubscription/set",
        {
          create: { p: { deviceClientId: device, url: target.endpoint, keys: target.keys, types: ["Email"] } },
          ...(old ? { destroy: [old] } : {}),
        },
        "p",
      ],
    ]);
    const db = await Db.open(PUSH_DB);
    try {
      await db.put("kv", "apiUrl", session.apiUrl);
      await db.put("kv", "device", device);
      for (const [i, accountId] of accounts.entries()) {
        const s = r.get(`s${i}`, "Email/get");
        if (s && !(s instanceof MethodError)) await db.put("kv", `email-state:${accountId}`, s.state);
      }
    } finally {
      db.close();
    }
    const p = r.get("p", "PushSubscription/set");
    if (!p || p instanceof MethodError) throw p ?? new Error("the server did not answer PushSubscription/set");
    const id = p.created?.p?.id;
    if (!id) throw new Error(p.notCreated?.p?.description ?? "the server refused the push subscription");
    await subscriptionId(id);
    writePref(SUB_ID, id);
    writePref(SUB_AT, String(Date.now()));
    this.push = true;
    return id;
  }

  /** Destroys the server's PushSubscription and the browser's subscription. */
  async unsubscribe(): Promise<void> {
    // The worker's id is the newer one when the push service renewed the subscription.
    const ids = [...new Set([await subscriptionId(), readPref(SUB_ID)].filter((x): x is string => !!x))];
    if (ids.length) await this.app.jmap.request([["PushSubscription/set", { destroy: ids }, "p"]]);
    await subscriptionId("");
    writePref(SUB_ID, "");
    this.push = false;
    if (typeof navigator !== "undefined" && "serviceWorker" in navigator) {
      const reg = await navigator.serviceWorker.getRegistration("/");
      await (await reg?.pushManager.getSubscription())?.unsubscribe();
    }
  }

  /** Before signing out: nothing of this user stays on the device (the mail kept for
   * offline reading) or keeps coming to it (the push subscription, while the session
   * still allows destroying it). */
  async forgetDevice(): Promise<void> {
    await this.unsubscribe().catch(() => undefined);
    if (readPref("tidings.offline") === "1" || this.app.jmap.offline) {
      // Off for whoever signs in next: keeping mail is each user's own choice.
      writePref("tidings.offline", "0");
      const jmap = this.app.jmap;
      await import("../offline")
        .then((m) => (jmap.offline instanceof m.Offline ? jmap.offline.destroy(jmap) : m.forget()))
        .catch(() => undefined);
    }
    this.app.jmap.offline = null;
  }

  /** Opens the message of a `#/message/{account}/{email}` route: another account's in
   * its Inbox (which makes it the current account), unless a unified view shows it. */
  async openRoute(r: { accountId: Id; emailId: Id }): Promise<void> {
    if (!this.app.accountIds().includes(r.accountId)) return;
    if (r.accountId !== this.app.accountId && !this.app.list.view.unified) {
      const inbox = this.app.folders.byRole("inbox", r.accountId)?.id;
      if (inbox) await this.app.list.selectMailbox(inbox, r.accountId);
    }
    this.app.list.accountOf.set(r.emailId, r.accountId);
    await this.app.reader.openThread(r.emailId);
  }

  /** Whether the page itself shows notifications (with Web Push the service worker
   * does, once, tab open or not). */
  private shows(): boolean {
    return this.on && !this.push && typeof Notification !== "undefined" && Notification.permission === "granted";
  }

  /** The accounts whose new mail no list refresh brings: the list reads the current
   * account's changes, the unified Inbox those of its accounts. */
  private unwatched(): Id[] {
    const { list, accountId } = this.app;
    if (list.view.unified === "inbox") return [];
    return this.app.accountIds().filter((a) => list.view.unified || a !== accountId);
  }

  /** Reads the Email state of the accounts `onPush` follows, so that the first new
   * message after the page opened is told too. */
  async prime(): Promise<void> {
    if (!this.shows()) return;
    const accounts = this.app.accountIds().filter((a) => !this.states.has(a));
    if (!accounts.length) return;
    const r = await this.app.jmap.request(accounts.map((accountId, i): Invocation => ["Email/get", { accountId, ids: [] }, `s${i}`]));
    for (const [i, acc] of accounts.entries()) {
      const g = r.get(`s${i}`, "Email/get");
      if (g && !(g instanceof MethodError) && !this.states.has(acc)) this.states.set(acc, g.state);
    }
  }

  /** What a push says of Emails in accounts no list follows now (`unwatched`): their
   * new Emails since the state held (RFC 8620 5.2 /changes), told when unread in their
   * Inbox. While the page is seen only the state moves on: the user sees the counts. */
  async onPush(c: TypeStates | null): Promise<void> {
    if (!this.shows()) return;
    const hidden = typeof document !== "undefined" && document.hidden;
    const moved = this.unwatched().filter((a) => {
      const t = c?.[a];
      return !c || (!!t && (t.Email !== undefined ? t.Email !== this.states.get(a) : t.EmailDelivery !== undefined));
    });
    const read: Id[] = [];
    for (const acc of moved.slice(0, 20)) {
      const pushed = c?.[acc]?.Email;
      if (this.states.has(acc) && (hidden || !pushed)) read.push(acc);
      else if (pushed) this.states.set(acc, pushed);
    }
    if (moved.some((a) => !this.states.has(a))) await this.prime();
    if (!read.length) return;
    // One request for all of them: each account's changes and its new Emails.
    const r = await this.app.jmap.request(
      read.flatMap((accountId, i): Invocation[] => [
        ["Email/changes", { accountId, sinceState: this.states.get(accountId), maxChanges: 50 }, `c${i}`],
        ["Email/get", { accountId, "#ids": { resultOf: `c${i}`, name: "Email/changes", path: "/created" }, properties: ["mailboxIds", "keywords", "from", "subject"] }, `g${i}`],
      ]),
    );
    for (const [i, acc] of read.entries()) {
      const ch = r.get(`c${i}`, "Email/changes");
      const g = r.get(`g${i}`, "Email/get");
      // Too far behind to follow (or refused): start again from now, telling nothing.
      if (!ch || ch instanceof MethodError) {
        this.states.delete(acc);
        continue;
      }
      this.states.set(acc, ch.newState);
      if (g && !(g instanceof MethodError)) this.notifyNew(acc, g.list);
    }
    if (read.some((a) => !this.states.has(a))) await this.prime();
  }

  /** Tells new unread Emails of `accountId`'s Inbox, each once (the unified view and
   * the account's own list may both bring it), named after the account when there are
   * several; a click opens the message. */
  notifyNew(accountId: Id, created: Email[]): void {
    const inbox = this.app.folders.byRole("inbox", accountId)?.id;
    if (!this.shows() || !inbox) return;
    const fresh = created.filter((x) => x.mailboxIds[inbox] && !x.keywords.$seen && !this.told.has(`${accountId}/${x.id}`));
    for (const e of fresh) this.told.add(`${accountId}/${e.id}`);
    // Bounded: the oldest told go first.
    for (const k of [...this.told].slice(0, Math.max(0, this.told.size - 1000))) this.told.delete(k);
    if (typeof document !== "undefined" && !document.hidden) return;
    const several = this.app.accountIds().length > 1;
    for (const e of fresh.slice(0, 3)) {
      const from = e.from?.[0];
      const title = from?.name || from?.email || "New mail";
      const n = new Notification(several ? `${title} (${this.app.accountName(accountId)})` : title, { body: e.subject ?? "", tag: e.id });
      n.onclick = () => {
        window.focus();
        location.hash = `#/message/${encodeURIComponent(accountId)}/${encodeURIComponent(e.id)}`;
        n.close();
      };
    }
  }
}
