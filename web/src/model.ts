// The client's state logic, pure functions over plain data so that it can be tested
// without a browser or a server: the sparse message list of a query (windows fetched as
// the user scrolls), applying `Email/queryChanges` and `Email/changes` to it, and
// optimistic updates with their rollback.

import type { Email, Id, Mailbox, QueryChangesResponse } from "./jmap-types";

export type { Email, EmailAddress, Mailbox } from "./jmap-types";

/** The message list of one query: `ids[i]` is the id at position i, or undefined when
 * that window has not been fetched (yet, or any more). */
export interface ListModel {
  ids: (Id | undefined)[];
  total: number;
  queryState: string | null;
}

export function emptyList(): ListModel {
  return { ids: [], total: 0, queryState: null };
}

/** Puts a fetched window in place. A different query state means the list changed under
 * us: what was loaded before is dropped and only this window is kept. */
export function setWindow(list: ListModel, position: number, ids: Id[], total: number, queryState: string | null): ListModel {
  const keep = list.queryState === null || list.queryState === queryState;
  // A window of the same query state only fills holes: it goes into the same array (a
  // copy of a 100,000-slot array per window, many a second while scrolling, is what made
  // the garbage collector stop the page). Every other change builds a new array.
  const inPlace = keep && list.queryState === queryState && list.ids.length === total;
  const next: (Id | undefined)[] = inPlace ? list.ids : keep ? list.ids.slice(0, total) : [];
  next.length = total;
  for (let i = 0; i < ids.length && position + i < total; i++) next[position + i] = ids[i];
  return { ids: next, total, queryState };
}

/** Positions of the first unloaded page-aligned windows touching [from, to). */
export function missingWindows(list: ListModel, from: number, to: number, page: number): number[] {
  const out: number[] = [];
  const end = Math.min(to, list.total);
  for (let p = Math.floor(Math.max(0, from) / page) * page; p < end; p += page) {
    for (let i = p; i < Math.min(p + page, end); i++) {
      if (list.ids[i] === undefined) {
        out.push(p);
        break;
      }
    }
  }
  return out;
}

/** What `applyQueryChanges` reads of an Email/queryChanges answer. */
export type QueryChanges = Omit<QueryChangesResponse, "accountId">;

/** RFC 8620 5.6: remove every removed id, then insert each added id at its index, in
 * ascending index order. Positions beyond what is loaded stay unloaded. */
export function applyQueryChanges(list: ListModel, ch: QueryChanges, upToId: Id | null = null): ListModel {
  const removed = new Set(ch.removed);
  const ids: (Id | undefined)[] = [];
  for (let i = 0; i < list.ids.length; i++) {
    const id = list.ids[i];
    if (id !== undefined && removed.has(id)) continue;
    ids.push(id);
  }
  // Removed ids we had not loaded still shrink the list: trust the server's total.
  const added = [...ch.added].sort((a, b) => a.index - b.index);
  for (const a of added) {
    if (a.index <= ids.length) ids.splice(a.index, 0, a.id);
    else {
      ids.length = a.index;
      ids.push(a.id);
    }
  }
  const total = ch.total ?? Math.max(0, list.total - ch.removed.length + ch.added.length);
  ids.length = Math.min(ids.length, total);
  // Asked with `upToId`, the server reports nothing past it: what lies after it here (a
  // changed row it would have placed there) is fetched again when scrolled to.
  const end = upToId === null ? -1 : ids.indexOf(upToId);
  if (end >= 0) ids.length = Math.min(ids.length, end + 1);
  return { ids, total, queryState: ch.newQueryState };
}

/** The `upToId` for Email/queryChanges: the last loaded id when what is loaded is one
 * run from the top of the list (the live update of a long list then costs the server a
 * run to that row, not to the end); null when nothing is, or something after a hole is
 * (the user scrolled far: the whole answer is needed to keep that place). */
export function contiguousEnd(list: ListModel): Id | null {
  const n = list.ids.length;
  let hole = 0;
  while (hole < n && list.ids[hole] !== undefined) hole++;
  if (hole === 0) return null;
  for (let i = hole; i < n; i++) if (list.ids[i] !== undefined) return null;
  return list.ids[hole - 1] ?? null;
}

/** Where a list is ordered newest first (receivedAt descending, then id), and which
 * Emails belong in it: what is needed to apply `Email/changes` without queryChanges. */
export interface ListView {
  matches: (e: Email) => boolean;
  /** Threads mode: one row per thread (the newest matching Email). */
  collapseThreads: boolean;
}

function newerFirst(a: Email, b: Email): number {
  if (a.receivedAt !== b.receivedAt) return a.receivedAt < b.receivedAt ? 1 : -1;
  return a.id < b.id ? 1 : a.id > b.id ? -1 : 0;
}

/** Applies `Email/changes` (destroyed ids, and the current version of created and
 * updated Emails) to a newest-first list. Rows that stop matching go; new matches are
 * put at their place when it lies in the loaded start of the list, else the total grows
 * and the unloaded rest is fetched as it is scrolled to. Returns the new list. */
export function applyEmailChanges(
  list: ListModel,
  view: ListView,
  cache: Map<Id, Email>,
  destroyed: Id[],
  changed: Email[],
): ListModel {
  let ids = [...list.ids];
  let total = list.total;
  const gone = new Set(destroyed);
  for (const e of changed) if (!view.matches(e)) gone.add(e.id);
  const before = ids.length;
  ids = ids.filter((id) => id === undefined || !gone.has(id));
  total -= before - ids.length;
  for (const e of changed) {
    if (!view.matches(e)) continue;
    if (ids.includes(e.id)) continue;
    if (view.collapseThreads) {
      // One row per thread: the thread's row moves to the newest of its Emails.
      const at = ids.findIndex((id) => id !== undefined && cache.get(id)?.threadId === e.threadId);
      if (at >= 0) {
        const cur = cache.get(ids[at] as Id);
        if (cur && newerFirst(e, cur) > 0) continue; // older than the row: no change
        ids.splice(at, 1);
        total--;
      }
    }
    // The loaded start: positions 0..n-1 all known.
    let n = 0;
    while (n < ids.length && ids[n] !== undefined) n++;
    let pos = 0;
    while (pos < n) {
      const other = cache.get(ids[pos] as Id);
      if (!other || newerFirst(e, other) < 0) break;
      pos++;
    }
    if (pos < n || n === ids.length) ids.splice(pos, 0, e.id);
    else ids.splice(n, ids.length - n); // beyond the loaded start: refetch the rest
    total++;
  }
  ids.length = Math.min(ids.length, Math.max(total, 0));
  return { ids, total: Math.max(total, 0), queryState: null };
}

// --- optimistic updates -------------------------------------------------------------------

/** A change applied locally before the server confirms it. */
export interface Pending {
  seq: number;
  /** The Emails as they were before, to put back when the server refuses. */
  before: Map<Id, Email>;
  list: ListModel;
}

/** A patch in JMAP's form (`keywords/$seen: true`, `mailboxIds/m1: null`), applied to a
 * local Email the way the server will apply it. */
export function patchEmail(e: Email, patch: Record<string, unknown>): Email {
  const out: Email = { ...e, keywords: { ...e.keywords }, mailboxIds: { ...e.mailboxIds } };
  for (const [path, v] of Object.entries(patch)) {
    const [head, ...rest] = path.split("/");
    const key = rest.join("/").replace(/~1/g, "/").replace(/~0/g, "~");
    if ((head === "keywords" || head === "mailboxIds") && key) {
      const map = out[head] as Record<string, boolean>;
      if (v === null || v === false) delete map[key];
      else map[key] = true;
    } else if ((head === "keywords" || head === "mailboxIds") && !key && v && typeof v === "object") {
      out[head] = { ...(v as Record<string, boolean>) };
    }
  }
  return out;
}

export class Optimistic {
  private seq = 0;
  pending = new Map<number, Pending>();

  /** Applies `patches` (per Email id) to `cache` and records what to restore. */
  apply(cache: Map<Id, Email>, list: ListModel, patches: Map<Id, Record<string, unknown>>): number {
    const seq = ++this.seq;
    const before = new Map<Id, Email>();
    for (const [id, p] of patches) {
      const e = cache.get(id);
      if (!e) continue;
      before.set(id, e);
      cache.set(id, patchEmail(e, p));
    }
    this.pending.set(seq, { seq, before, list });
    return seq;
  }

  /** The server accepted: forget the snapshot. */
  commit(seq: number): void {
    this.pending.delete(seq);
  }

  /** The server refused some or all: restore those Emails (unless the server has sent a
   * newer version since, which `cache` then already holds as a different object that
   * was not produced by this update). Returns the list as it was before. */
  rollback(cache: Map<Id, Email>, seq: number, ids?: Iterable<Id>): ListModel | null {
    const p = this.pending.get(seq);
    if (!p) return null;
    this.pending.delete(seq);
    const which = ids ? new Set(ids) : new Set(p.before.keys());
    for (const [id, old] of p.before) if (which.has(id)) cache.set(id, old);
    return p.list;
  }
}

// --- mailboxes ------------------------------------------------------------------------------

const ROLE_ORDER = ["inbox", "drafts", "sent", "archive", "junk", "trash"];

/** Mailboxes in display order: roles first (Inbox, Drafts, Sent, Archive, Junk, Trash),
 * then the others by sortOrder and name, each followed by its children, with depth. */
export function mailboxTree(list: Mailbox[]): { mailbox: Mailbox; depth: number }[] {
  const kids = new Map<Id | null, Mailbox[]>();
  for (const m of list) {
    const k = m.parentId && list.some((p) => p.id === m.parentId) ? m.parentId : null;
    const arr = kids.get(k) ?? [];
    arr.push(m);
    kids.set(k, arr);
  }
  const rank = (m: Mailbox) => {
    const r = m.role ? ROLE_ORDER.indexOf(m.role) : -1;
    return r < 0 ? ROLE_ORDER.length : r;
  };
  const cmp = (a: Mailbox, b: Mailbox) =>
    rank(a) - rank(b) || a.sortOrder - b.sortOrder || a.name.localeCompare(b.name);
  const out: { mailbox: Mailbox; depth: number }[] = [];
  const walk = (parent: Id | null, depth: number) => {
    for (const m of (kids.get(parent) ?? []).sort(cmp)) {
      out.push({ mailbox: m, depth });
      if (depth < 20) walk(m.id, depth + 1);
    }
  };
  walk(null, 0);
  return out;
}

/** Bounds the Emails a long list keeps in memory (scrolling 100,000 rows otherwise ends with
 * 100,000 Emails in the heap, and every major GC then stops the page for 45 ms and more).
 * Once `cache` holds more than `max`, the rows further than `margin` from the rows shown,
 * [from, to), go back to holes (fetched again when scrolled to) and their Emails leave the
 * cache, except those in `keep` (the selection, the open thread, optimistic changes; the
 * rows kept are added to it). The list is changed in place, like a window filling holes.
 * Returns how many were dropped. */
export function trimCache(
  list: ListModel, cache: Map<Id, Email>, from: number, to: number, keep: Set<Id>, max: number, margin: number,
): number {
  if (cache.size <= max) return 0;
  const lo = Math.max(0, from - margin);
  const hi = to + margin;
  const ids = list.ids;
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i];
    if (id === undefined) continue;
    if (i >= lo && i < hi) keep.add(id);
    else if (!keep.has(id)) ids[i] = undefined;
  }
  let dropped = 0;
  // Deleting the entry just visited is safe while iterating a Map.
  for (const id of cache.keys()) {
    if (!keep.has(id)) {
      cache.delete(id);
      dropped++;
    }
  }
  return dropped;
}

// --- unified views ---------------------------------------------------------------------------

/** One account's part of a unified view: the loaded start of its own query's answer
 * (newest first) and how many the query has in all. */
export interface UnifiedPart {
  accountId: Id;
  emails: Email[];
  total: number;
}

/** The time a unified view sorts by: receivedAt, or sentAt (Drafts, Sent) when there. */
export function sortTime(e: Email, bySent: boolean): number {
  const t = Date.parse((bySent && e.sentAt) || e.receivedAt);
  return Number.isNaN(t) ? 0 : t;
}

/** Merges the parts of a unified view newest first (ties by id, newest id first). Only
 * the rows whose place is certain are returned: once a part has rows not loaded yet,
 * nothing older than its last loaded row can be placed (an unloaded row of that part may
 * come first). `more` names the parts to read further to place the next rows. */
export function mergeNewest(parts: UnifiedPart[], bySent: boolean): { rows: { id: Id; accountId: Id }[]; total: number; more: Id[] } {
  let horizon = -Infinity;
  const limiting: Id[] = [];
  for (const p of parts) {
    if (p.emails.length >= p.total) continue;
    const last = p.emails[p.emails.length - 1];
    const bound = last ? sortTime(last, bySent) : Infinity;
    if (bound > horizon) {
      horizon = bound;
      limiting.length = 0;
    }
    if (bound === horizon) limiting.push(p.accountId);
  }
  const all: { id: Id; accountId: Id; t: number }[] = [];
  for (const p of parts)
    for (const e of p.emails) {
      const t = sortTime(e, bySent);
      // A row at the horizon itself is placed only when it is its own part's (that part's
      // order is the server's); another part's unloaded rows may tie with it.
      if (t > horizon || (t === horizon && limiting.includes(p.accountId) && limiting.length === 1)) all.push({ id: e.id, accountId: p.accountId, t });
    }
  all.sort((a, b) => b.t - a.t || (a.id < b.id ? 1 : a.id > b.id ? -1 : 0));
  return {
    rows: all.map(({ id, accountId }) => ({ id, accountId })),
    total: parts.reduce((n, p) => n + p.total, 0),
    more: limiting,
  };
}

/** The attachments a message lists: not an inline part that its HTML shows by `cid:`
 * (RFC 2392), which the reader already shows in place. */
export function listedAttachments<P extends { cid: string | null; disposition: string | null; type: string }>(email: { attachments: P[]; htmlBody: { type: string }[] }): P[] {
  const html = email.htmlBody.some((p) => p.type === "text/html");
  return email.attachments.filter((a) => !(html && a.cid && a.disposition !== "attachment" && a.type.startsWith("image/")));
}
