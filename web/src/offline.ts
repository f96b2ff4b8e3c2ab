// Offline reading and actions, loaded (dynamic import) only when the user turned it on:
//
// - every answer of the calls that read mail (Mailbox/get, Email/query, Email/get,
//   Thread/get, Identity/get, the probes) is kept in IndexedDB as it goes by: Email/get
//   and Thread/get object by object (so a thread fetched ahead in a batch answers the
//   single fetch of the reader), the others by their arguments, back-references
//   (RFC 8620 3.7) resolved first;
// - recent mail is fetched ahead while online: the first PREFETCH messages of every
//   mailbox of every account, with their threads and bodies (the service worker keeps
//   their sanitised HTML pages, only with this on), and the unified Inbox's first page;
// - without a network, the Session and the calls are answered from what was kept, and a
//   change to mail (Email/set update or destroy: flags, read, moves, deletion) is queued
//   in IndexedDB, applied to what was kept, and sent when the network is back, each as
//   its own Email/set without `ifInState` so that the server's rules decide per
//   property (RFC 8620 5.3) rather than refusing the whole change for any other one.
//
// Turning it off deletes the database and the service worker's mail cache.

import type { Invocation, Jmap, OfflineSeam, Response } from "./jmap";
import type { Session } from "./jmap-types";
import { Db, OFFLINE_DB, PUSH_DB } from "./offline-db";
import type { MailApp } from "./state";

/** Messages kept per mailbox, from the top of its list. */
export const PREFETCH = 50;
/** Accounts, and mailboxes of each, fetched ahead at most. */
const MAX_ACCOUNTS = 20;
const MAX_MAILBOXES = 200;
/** Threads asked for in one request while fetching ahead. */
const BATCH = 10;
/** How often recent mail is fetched ahead at most. */
const AHEAD_EVERY_MS = 15 * 60 * 1000;
/** Kept answers past which the oldest go. */
const MAX_KEPT = 20_000;
/** Methods whose answers are kept. */
const KEPT = new Set(["Mailbox/get", "Email/query", "Email/get", "Thread/get", "Identity/get", "SearchSnippet/get"]);
/** The service worker's cache of sanitised HTML (web/src/sw.ts). */
const MAIL_CACHE = "tidings-mail-v1";

type Args = Record<string, unknown>;

interface Kept {
  /** When it was written (the oldest go first past MAX_KEPT). */
  t: number;
  v: unknown;
}

/** RFC 8620 3.7: the value at `path` (a JSON Pointer where `*` maps over an array and
 * flattens) of a previous response. */
export function pointer(value: unknown, path: string): unknown {
  let cur: unknown[] = [value];
  let flatten = false;
  for (const raw of path.split("/").slice(1)) {
    const part = raw.replace(/~1/g, "/").replace(/~0/g, "~");
    const next: unknown[] = [];
    for (const v of cur) {
      if (part === "*" && Array.isArray(v)) next.push(...v);
      else if (v && typeof v === "object") next.push((v as Record<string, unknown>)[part]);
    }
    if (part === "*") flatten = true;
    cur = flatten && part !== "*" ? next.flat() : next;
  }
  return flatten ? cur : cur[0];
}

/** `args` with every `#name` back-reference replaced by its value, or null when one
 * names a call not answered (or answered by another method). */
export function resolve(args: Args, answered: Map<string, [string, unknown]>): Args | null {
  const out: Args = {};
  for (const [k, v] of Object.entries(args)) {
    if (!k.startsWith("#")) {
      out[k] = v;
      continue;
    }
    const ref = v as { resultOf?: string; name?: string; path?: string };
    const a = ref.resultOf !== undefined ? answered.get(ref.resultOf) : undefined;
    if (!a || a[0] !== ref.name || typeof ref.path !== "string") return null;
    out[k.slice(1)] = pointer(a[1], ref.path);
  }
  return out;
}

/** The key of a call's whole answer. */
function callKey(name: string, args: Args): string {
  return `c|${name}|${JSON.stringify(args)}`;
}

/** The key prefix of one object of an Email/get or Thread/get asked with `args`. */
function objectPrefix(name: string, args: Args): string {
  const { ids: _ids, ...rest } = args;
  return `o|${name}|${String(args.accountId)}|${JSON.stringify(rest)}|`;
}

/** A /set that changes something (a /set with nothing to do is the probe of boot). */
function isChange(name: string, args: Args): boolean {
  return name.endsWith("/set") && (args.update !== undefined || args.destroy !== undefined || args.create !== undefined);
}

/** A queued Email/set: what the user did offline. */
interface Queued {
  accountId: string;
  update?: Record<string, Record<string, unknown>>;
  destroy?: string[];
}

export class Offline implements OfflineSeam {
  /** Changes waiting for the network. */
  queued = 0;
  /** The screen shows kept mail (a call was answered from IndexedDB). */
  fromCache = false;
  private writes = 0;
  private flushing: Promise<void> | null = null;
  private fetchedAhead = new Set<string>();
  private ahead: Promise<void> | null = null;
  private closed = false;

  private constructor(
    private db: Db,
    private app: MailApp,
  ) {}

  static async open(app: MailApp): Promise<Offline> {
    const o = new Offline(await Db.open(OFFLINE_DB), app);
    o.queued = await o.db.count("queue");
    await setWorkerFlag(true);
    window.addEventListener("online", () => void o.flush());
    return o;
  }

  /** Turns it off: nothing kept stays, in IndexedDB or in the service worker. */
  async destroy(jmap: Jmap): Promise<void> {
    if (jmap.offline === this) jmap.offline = null;
    this.closed = true;
    this.db.close();
    await forget();
  }

  /** What the connection indicator says while offline. */
  note(): string {
    if (this.queued) return `Offline: ${this.queued} change${this.queued === 1 ? "" : "s"} queued, sent when the connection is back.`;
    return this.fromCache ? "Offline: showing mail kept on this device." : "";
  }

  sessionLoaded(s: Session): void {
    void this.db.put("kv", "session", s).catch(() => undefined);
  }

  async session(): Promise<Session | null> {
    return (await this.db.get<Session>("kv", "session")) ?? null;
  }

  answered(calls: Invocation[], responses: Response[]): void {
    void this.keep(calls, responses).catch(() => undefined);
    if (this.queued && !this.flushing) void this.flush();
  }

  private async keep(calls: Invocation[], responses: Response[]): Promise<void> {
    const byId = new Map<string, [string, unknown]>(responses.map(([n, a, id]) => [id, [n, a]]));
    const now = Date.now();
    const entries: [string, Kept][] = [];
    for (const [name, raw, id] of calls) {
      const got = byId.get(id);
      if (!KEPT.has(name) && !(name.endsWith("/set") && !isChange(name, raw))) continue;
      if (!got || got[0] !== name) continue;
      const args = resolve(raw, byId);
      if (!args) continue;
      const answer = got[1] as Args;
      if ((name === "Email/get" || name === "Thread/get") && Array.isArray(args.ids)) {
        const prefix = objectPrefix(name, args);
        for (const o of (answer.list ?? []) as { id: string }[]) entries.push([prefix + o.id, { t: now, v: o }]);
        entries.push([`${prefix}state`, { t: now, v: answer.state }]);
      } else entries.push([callKey(name, args), { t: now, v: answer }]);
    }
    await this.db.putMany("answers", entries);
    this.writes += entries.length;
    if (this.writes > 1000) {
      this.writes = 0;
      await this.prune();
    }
  }

  private async prune(): Promise<void> {
    const keys = await this.db.keys("answers");
    if (keys.length <= MAX_KEPT) return;
    const aged: [IDBValidKey, number][] = [];
    for (const k of keys) aged.push([k, (await this.db.get<Kept>("answers", k))?.t ?? 0]);
    aged.sort((a, b) => a[1] - b[1]);
    for (const [k] of aged.slice(0, keys.length - MAX_KEPT)) await this.db.delete("answers", k);
  }

  async replay(calls: Invocation[]): Promise<Response[] | null> {
    const answered = new Map<string, [string, unknown]>();
    const out: Response[] = [];
    for (const [name, raw, id] of calls) {
      const args = resolve(raw, answered);
      if (!args) return null;
      let answer: unknown;
      if (isChange(name, args)) {
        // Only changes to mail wait for the network; anything else needs the server.
        answer = name === "Email/set" ? await this.enqueue(args) : null;
        if (!answer) return null;
      } else if ((name === "Email/get" || name === "Thread/get") && Array.isArray(args.ids)) {
        const prefix = objectPrefix(name, args);
        const list: unknown[] = [];
        const notFound: string[] = [];
        for (const oid of args.ids as string[]) {
          const k = await this.db.get<Kept>("answers", prefix + oid);
          if (k) list.push(k.v);
          else notFound.push(oid);
        }
        if (!list.length && notFound.length) return null;
        const state = (await this.db.get<Kept>("answers", `${prefix}state`))?.v ?? "";
        answer = { accountId: args.accountId, state, list, notFound };
      } else {
        answer = (await this.db.get<Kept>("answers", callKey(name, args)))?.v;
        if (answer === undefined) return null;
      }
      answered.set(id, [name, answer]);
      out.push([name, answer, id]);
    }
    this.fromCache = true;
    return out;
  }

  /** Queues a change made offline and applies it to the kept Emails; the answer the
   * server would give when it accepts it. Creating (a draft) is not queued: it needs
   * the server (the blob, the id). */
  private async enqueue(args: Args): Promise<Args | null> {
    if (args.create !== undefined && Object.keys(args.create as object).length) return null;
    const q: Queued = { accountId: String(args.accountId) };
    if (args.update) q.update = args.update as Queued["update"];
    if (Array.isArray(args.destroy)) q.destroy = args.destroy as string[];
    await this.db.put("queue", `${Date.now().toString().padStart(15, "0")}-${Math.random().toString(36).slice(2)}`, q);
    this.queued = await this.db.count("queue");
    await this.applyToKept(q);
    this.app.emit();
    const updated: Record<string, null> = {};
    for (const id of Object.keys(q.update ?? {})) updated[id] = null;
    return { accountId: q.accountId, oldState: null, newState: "", updated, destroyed: q.destroy ?? [] };
  }

  /** RFC 8620 5.3 patches (`keywords/$flagged`, `mailboxIds/{id}`) applied to every kept
   * copy of the Emails they change, so a reload offline shows them. */
  private async applyToKept(q: Queued): Promise<void> {
    if (!q.update) return;
    const keys = (await this.db.keys("answers")).map(String).filter((k) => k.startsWith(`o|Email/get|${q.accountId}|`));
    for (const [id, patch] of Object.entries(q.update)) {
      for (const k of keys.filter((k) => k.endsWith(`|${id}`))) {
        const kept = await this.db.get<Kept>("answers", k);
        if (!kept) continue;
        const e = structuredClone(kept.v) as Record<string, unknown>;
        for (const [path, value] of Object.entries(patch)) {
          const [prop, ...rest] = path.split("/");
          if (!prop) continue;
          if (!rest.length) e[prop] = value;
          else if (e[prop] && typeof e[prop] === "object") {
            const inner = { ...(e[prop] as Record<string, unknown>) };
            const key = rest.join("/").replace(/~1/g, "/").replace(/~0/g, "~");
            if (value === null) delete inner[key];
            else inner[key] = value;
            e[prop] = inner;
          }
        }
        await this.db.put("answers", k, { t: kept.t, v: e });
      }
    }
  }

  /** Sends the queued changes in the order they were made, one Email/set each; stops at
   * the first that cannot reach the server. A change the server refuses is dropped and
   * said (its rules won). */
  flush(): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.flushing ??= this.sendQueued().finally(() => {
      this.flushing = null;
    });
    return this.flushing;
  }

  private async sendQueued(): Promise<void> {
    let sent = 0;
    const keys = await this.db.keys("queue");
    for (const k of keys.slice(0, 1000)) {
      const q = await this.db.get<Queued>("queue", k);
      if (!q) continue;
      let r: Response[];
      try {
        r = await this.app.jmap.send([["Email/set", { accountId: q.accountId, ...(q.update ? { update: q.update } : {}), ...(q.destroy ? { destroy: q.destroy } : {}) }, "q"]]);
      } catch {
        break;
      }
      await this.db.delete("queue", k);
      sent++;
      const a = r[0]?.[1] as { notUpdated?: Record<string, { description?: string; type?: string }> | null; notDestroyed?: Record<string, unknown> | null } | undefined;
      const refused = Object.values(a?.notUpdated ?? {})[0] ?? Object.values(a?.notDestroyed ?? {})[0];
      if (r[0]?.[0] !== "Email/set" || refused) this.app.toasts.error("A change made offline was refused by the server.");
    }
    this.queued = await this.db.count("queue");
    if (sent) {
      this.fromCache = false;
      await this.app.live.onPush(null);
    }
    this.app.emit();
  }

  /** Fetches ahead, while online, what offline reading needs for every account of the
   * Session: its start-up calls, each mailbox's first window and the threads (with
   * bodies) of its first PREFETCH messages, and the unified Inbox's first page. Bounded:
   * MAX_ACCOUNTS accounts, MAX_MAILBOXES mailboxes each, each mailbox once per session. */
  fetchAhead(): Promise<void> {
    this.ahead ??= this.fetchAheadNow().finally(() => {
      this.ahead = null;
    });
    return this.ahead;
  }

  private async fetchAheadNow(): Promise<void> {
    if (!this.app.accountId || navigator.onLine === false) return;
    // Once per AHEAD_EVERY_MS across reloads: what arrives in between is kept as the app
    // shows it (every answer goes by `answered`).
    const last = (await this.db.get<number>("kv", "fetched-ahead-at")) ?? 0;
    if (Date.now() - last < AHEAD_EVERY_MS) return;
    const accounts = this.app.accountIds().slice(0, MAX_ACCOUNTS);
    for (const acc of accounts) if (!(await this.accountAhead(acc))) return;
    if (accounts.length > 1 && !(await this.unifiedInboxAhead(accounts))) return;
    await this.db.put("kv", "fetched-ahead-at", Date.now());
  }

  /** One account's part of `fetchAheadNow`; false when the network went away. */
  private async accountAhead(accountId: string): Promise<boolean> {
    const { list, jmap } = this.app;
    // What the start-up asks first (boot.ts), with the same arguments so that they answer
    // it offline: the probe of optional methods (asked for the account the app opens
    // on, which may be any), the mailboxes and identities.
    let mailboxes: { id: string; totalEmails?: number }[];
    try {
      const r = await jmap.send([
        ...jmap.probeCalls(accountId),
        ["Mailbox/get", { accountId, ids: null }, "mb"],
        ["Identity/get", { accountId }, "ident"],
      ]);
      const mb = r.find(([n, , id]) => n === "Mailbox/get" && id === "mb")?.[1] as { list?: { id: string; totalEmails?: number }[] } | undefined;
      mailboxes = mb?.list ?? [];
    } catch {
      return false;
    }
    for (const mb of mailboxes.slice(0, MAX_MAILBOXES)) {
      const done = `${accountId}/${mb.id}`;
      if (this.fetchedAhead.has(done) || mb.totalEmails === 0) continue;
      // The list's own calls for that mailbox, so the keys match what it asks later.
      const saved = { view: list.view, filter: list.filter };
      list.view = { ...list.view, mailboxId: mb.id, search: "", unified: null };
      list.filter = list.buildFilter();
      const calls = list.windowCalls(0, accountId);
      list.view = saved.view;
      list.filter = saved.filter;
      const ids = await this.idsOf(calls, "q");
      if (!ids || !(await this.threadsAhead(accountId, ids))) return false;
      this.fetchedAhead.add(done);
    }
    return true;
  }

  /** The unified Inbox's first page (its own queries: not threaded, one per account), so
   * that it opens offline too; the threads are those of each account's Inbox. */
  private async unifiedInboxAhead(accounts: string[]): Promise<boolean> {
    const { list } = this.app;
    const saved = list.view;
    list.view = { ...list.view, mailboxId: null, search: "", unified: "inbox" };
    const calls = list.unifiedCalls(
      list.unifiedAccounts().filter((acc) => accounts.includes(acc)),
      true,
    );
    list.view = saved;
    if (!calls.length) return true;
    try {
      await this.app.jmap.send(calls);
      return true;
    } catch {
      return false;
    }
  }

  /** Sends `calls` (kept by `answered`) and returns the first PREFETCH ids of its
   * Email/query `tag`; null when the network went away. */
  private async idsOf(calls: Invocation[], tag: string): Promise<string[] | null> {
    try {
      const r = await this.app.jmap.send(calls);
      const q = r.find(([n, , id]) => n === "Email/query" && id === tag)?.[1] as { ids?: string[] } | undefined;
      return (q?.ids ?? []).slice(0, PREFETCH);
    } catch {
      return null;
    }
  }

  /** The threads of `ids` with their bodies, BATCH at a time as the reader asks them, and
   * their sanitised HTML through the service worker; false when the network went away. */
  private async threadsAhead(accountId: string, ids: string[]): Promise<boolean> {
    const { jmap, reader } = this.app;
    for (let i = 0; i < ids.length; i += BATCH) {
      const want = ids.slice(i, i + BATCH);
      try {
        const r = await jmap.send(reader.threadCalls(want, accountId));
        const b = r.find(([, , id]) => id === "b")?.[1] as { list?: { htmlBody?: { type: string; blobId?: string }[] }[] } | undefined;
        for (const e of b?.list ?? []) {
          const html = e.htmlBody?.find((p) => p.type === "text/html" && p.blobId);
          // Through the service worker, which keeps the page (offline reading is on).
          if (html?.blobId)
            await fetch(reader.htmlUrl(html.blobId, false, accountId), { credentials: "same-origin", headers: { "X-Tidings-Client": "web" } }).catch(() => undefined);
        }
      } catch {
        return false;
      }
    }
    return true;
  }
}

/** Tells the service worker whether it may keep mail (the sanitised HTML pages). */
async function setWorkerFlag(on: boolean): Promise<void> {
  const db = await Db.open(PUSH_DB);
  try {
    await db.put("kv", "offline-reading", on);
  } finally {
    db.close();
  }
  navigator.serviceWorker?.controller?.postMessage({ type: "tidings:offline-reading", on });
}

/** Turns offline reading on for `app`: from now on answers are kept, and recent mail
 * is fetched ahead. */
export async function enableOffline(app: MailApp): Promise<Offline> {
  const o = await Offline.open(app);
  app.jmap.offline = o;
  if (app.session) o.sessionLoaded(app.session);
  return o;
}

/** Deletes what offline reading kept, when it is off in this page (another tab kept it). */
export async function forget(): Promise<void> {
  await Db.remove(OFFLINE_DB);
  await setWorkerFlag(false);
  if (typeof caches !== "undefined") await caches.delete(MAIL_CACHE);
}
