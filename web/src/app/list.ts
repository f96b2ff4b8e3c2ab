// The message list: the query it shows (a mailbox, a search, or a unified view across the
// accounts), its rows fetched in windows of PAGE as the user scrolls (a sparse
// `ListModel`), the cursor and the selection, and the Emails the list knows (`cache`,
// kept bounded by `trim`) with the account each belongs to (`accountOf`).
//
// A unified view (Inbox, Flagged, Drafts, Sent of every account) is one JMAP request with
// one Email/query and its Email/get per account, merged here newest first
// (`mergeNewest`); scrolling reads the next page of the accounts that limit what can be
// placed.

import { type Answers, MethodError, type Invocation } from "../jmap";
import type { Email, Id } from "../jmap-types";
import { type ListModel, type UnifiedPart, emptyList, mergeNewest, missingWindows, setWindow, trimCache } from "../model";
import { type Filter, parseSearch } from "../search";
import type { MailApp } from "../state";
import { readPref, writePref } from "./prefs";

export const PAGE = 100;
/** Emails kept for the list before rows far from the screen are dropped (`trimCache`). */
const CACHE_MAX = 4000;
/** Rows kept on either side of the ones shown when dropping. */
const CACHE_MARGIN = 1000;
export const LIST_PROPS = [
  "id", "threadId", "mailboxIds", "keywords", "from", "to", "subject", "preview", "receivedAt",
  "sentAt", "hasAttachment", "size",
];

export type Unified = "inbox" | "flagged" | "drafts" | "sent";
export const UNIFIED: { kind: Unified; name: string }[] = [
  { kind: "inbox", name: "All inboxes" },
  { kind: "flagged", name: "All flagged" },
  { kind: "drafts", name: "All drafts" },
  { kind: "sent", name: "All sent" },
];

export interface View {
  mailboxId: Id | null;
  search: string;
  collapseThreads: boolean;
  /** A view across the accounts, instead of one mailbox. */
  unified?: Unified | null;
}

export class ListWindow {
  view: View = { mailboxId: null, search: "", collapseThreads: readPref("tidings.collapseThreads") === "1" };
  filter: Filter | null = null;
  searchProblems: string[] = [];
  model: ListModel = emptyList();
  loading = false;
  cache = new Map<Id, Email>();
  /** The account of each Email the list knows (JMAP ids are unique across accounts here,
   * but every method call still names the account). */
  accountOf = new Map<Id, Id>();
  /** A unified view's parts, one per account. */
  parts = new Map<Id, UnifiedPart>();
  /** The rows the list last asked for (`ensureRange`): what `trim` keeps around. */
  private shown: [number, number] = [0, PAGE];
  threadSizes = new Map<Id, number>();
  snippets = new Map<Id, { subject: string | null; preview: string | null }>();
  cursor = 0;
  selected = new Set<Id>();
  private inflight = new Set<string>();
  /** The query the list shows; a window answered for another one is dropped. */
  queryKey = "";

  constructor(private app: MailApp) {}

  /** Opens a mailbox, of the current account or (given) of another one, which becomes
   * the current account. */
  async selectMailbox(id: Id, accountId = this.app.folders.accountOf(id) ?? this.app.accountId): Promise<void> {
    if (accountId !== this.app.accountId) this.app.switchAccount(accountId);
    // Back from a unified view: the account's Email state is read with the first window
    // (the one held is as old as the moment the unified view was opened).
    else if (this.view.unified) this.app.live.emailState = "";
    this.view = { ...this.view, mailboxId: id, search: "", unified: null };
    if (location.hash !== `#/mailbox/${id}`) history.replaceState(null, "", `#/mailbox/${id}`);
    writePref(`tidings.mailbox.${this.app.accountId}`, id);
    this.app.reader.closeThread();
    await this.resetList();
  }

  /** Opens a unified view across the accounts. */
  async selectUnified(kind: Unified): Promise<void> {
    this.view = { ...this.view, mailboxId: null, search: "", unified: kind };
    if (location.hash !== `#/all/${kind}`) history.replaceState(null, "", `#/all/${kind}`);
    this.app.reader.closeThread();
    await this.resetList();
  }

  async setSearch(q: string): Promise<void> {
    this.view = { ...this.view, search: q, unified: q.trim() ? null : this.view.unified };
    this.app.reader.closeThread();
    await this.resetList();
  }

  /** The account an Email of the list belongs to. */
  account(id: Id): Id {
    return this.accountOf.get(id) ?? this.app.accountId;
  }

  /** Takes Emails read from `accountId` into the cache. */
  keep(accountId: Id, emails: Email[], skip?: Set<Id>): void {
    for (const e of emails) {
      this.accountOf.set(e.id, accountId);
      if (!skip?.has(e.id)) this.cache.set(e.id, e);
    }
  }

  async setCollapse(on: boolean): Promise<void> {
    this.view = { ...this.view, collapseThreads: on };
    writePref("tidings.collapseThreads", on ? "1" : "0");
    await this.resetList();
  }

  buildFilter(): Filter | null {
    const { mailboxId, search } = this.view;
    if (search.trim()) {
      const p = parseSearch(search, this.app.folders.mailboxes);
      this.searchProblems = p.unknown;
      // A search without in: looks everywhere but Trash and Junk.
      const f = p.filter ?? {};
      const scoped = JSON.stringify(f).includes('"inMailbox"');
      const skip = ["trash", "junk"].map((r) => this.app.folders.byRole(r)?.id).filter((x): x is Id => !!x);
      if (scoped || skip.length === 0) return p.filter;
      return { operator: "AND", conditions: [f, { inMailboxOtherThan: skip }] };
    }
    this.searchProblems = [];
    return mailboxId ? { inMailbox: mailboxId } : null;
  }

  queryArgs(accountId = this.app.accountId): Record<string, unknown> {
    return {
      accountId,
      filter: this.filter,
      sort: [{ property: "receivedAt", isAscending: false }],
      collapseThreads: this.view.collapseThreads,
    };
  }

  async resetList(): Promise<void> {
    this.filter = this.buildFilter();
    this.queryKey = this.view.unified ? this.unifiedKey() : JSON.stringify(this.queryArgs());
    this.parts.clear();
    this.model = emptyList();
    this.snippets.clear();
    this.cursor = 0;
    this.selected.clear();
    this.loading = true;
    this.app.emit();
    await this.ensureRange(0, PAGE);
    this.loading = false;
    this.app.emit();
  }

  /** Fetches the windows of [from, to) not loaded yet (the list calls it as it scrolls). */
  async ensureRange(from: number, to: number): Promise<void> {
    this.shown = [from, to];
    const key = this.queryKey;
    if (this.view.unified) return this.ensureUnified(key, to);
    const first = this.model.total === 0 && this.model.queryState === null;
    const wanted = first ? [0] : missingWindows(this.model, from, to, PAGE);
    await Promise.all(
      wanted.map(async (position) => {
        const tag = `${key}@${position}`;
        if (this.inflight.has(tag)) return;
        this.inflight.add(tag);
        try {
          await this.fetchWindow(key, position);
        } finally {
          this.inflight.delete(tag);
        }
      }),
    );
  }

  /** Keeps the heap bounded on a long list: see `trimCache`. */
  private trim(): void {
    const keep = new Set<Id>([...this.selected, ...this.app.actions.pending()]);
    for (const t of this.app.reader.bodies.values()) for (const e of t.emails) keep.add(e.id);
    for (const e of this.app.reader.open?.emails ?? []) keep.add(e.id);
    const atCursor = this.model.ids[this.cursor];
    if (atCursor) keep.add(atCursor);
    if (this.view.unified) return; // a unified view keeps its parts' loaded starts
    trimCache(this.model, this.cache, this.shown[0], this.shown[1], keep, CACHE_MAX, CACHE_MARGIN);
    if (this.accountOf.size > this.cache.size * 2) for (const id of this.accountOf.keys()) if (!this.cache.has(id)) this.accountOf.delete(id);
  }

  /** The calls reading one window of the view (of `accountId`'s mailbox: offline
   * reading fetches every account's ahead with the keys the list asks later). */
  windowCalls(position: number, accountId = this.app.accountId): Invocation[] {
    const calls: Invocation[] = [
      ["Email/query", { ...this.queryArgs(accountId), position, limit: PAGE, calculateTotal: true }, "q"],
      ["Email/get", { accountId, "#ids": { resultOf: "q", name: "Email/query", path: "/ids" }, properties: LIST_PROPS }, "g"],
    ];
    if (this.view.collapseThreads)
      calls.push(["Thread/get", { accountId, "#ids": { resultOf: "g", name: "Email/get", path: "/list/*/threadId" } }, "t"]);
    if (this.view.search.trim() && this.filter)
      calls.push(["SearchSnippet/get", { accountId, filter: this.filter, "#emailIds": { resultOf: "q", name: "Email/query", path: "/ids" } }, "s"]);
    return calls;
  }

  private async fetchWindow(key: string, position: number): Promise<void> {
    let r: Answers;
    try {
      r = await this.app.jmap.request(this.windowCalls(position));
    } catch (e) {
      this.app.report(e);
      return;
    }
    this.applyWindow(r, key, position);
    this.trim();
    this.app.emit();
  }

  applyWindow(r: Answers, key: string, position: number): void {
    if (key !== this.queryKey) return; // the user went elsewhere meanwhile
    const q = r.get("q", "Email/query");
    const g = r.get("g", "Email/get");
    if (q instanceof MethodError || !q) {
      this.app.toasts.error(q instanceof MethodError ? `The search failed: ${q.description ?? q.type}` : "The list could not be loaded.");
      return;
    }
    if (g && !(g instanceof MethodError)) {
      this.keep(this.app.accountId, g.list);
      if (!this.app.live.emailState) this.app.live.emailState = g.state;
    }
    const t = r.get("t", "Thread/get");
    if (t && !(t instanceof MethodError))
      for (const th of t.list) this.threadSizes.set(th.id, th.emailIds.length);
    const s = r.get("s", "SearchSnippet/get");
    if (s && !(s instanceof MethodError))
      for (const sn of s.list)
        this.snippets.set(sn.emailId, sn);
    const ids = q.ids;
    this.model = setWindow(this.model, position, ids, q.total ?? ids.length, q.queryState ?? null);
  }

  /** The Email ids an action applies to: the selection, else the row under the cursor,
   * else the open message. With threads collapsed a row stands for its whole thread
   * in this mailbox. */
  targets(): Id[] {
    if (this.selected.size) return [...this.selected];
    const id = this.model.ids[this.cursor] ?? this.app.reader.open?.emailId;
    return id ? [id] : [];
  }

  // --- unified views ---------------------------------------------------------------------

  /** The role mailboxes of each account remembered from the last visit, used until the
   * mailboxes are read (the first request of a unified view goes out with the Session's). */
  hintRoles: Record<Id, Record<string, Id>> = {};

  /** An account's mailbox of a role: read, else remembered. */
  roleId(accountId: Id, role: string): Id | undefined {
    return this.app.folders.byRole(role, accountId)?.id ?? this.hintRoles[accountId]?.[role];
  }

  /** The accounts a unified view reads: those with the mailbox it needs. */
  unifiedAccounts(): Id[] {
    const kind = this.view.unified;
    return this.app.accountIds().filter((a) => (kind === "flagged" ? this.app.folders.of(a).length > 0 || !!this.hintRoles[a] : !!this.roleId(a, kind ?? "inbox")));
  }

  /** What a unified view's answers are filed under: the view, its accounts and their
   * mailboxes (a mailbox found to be another one than remembered starts it over). */
  unifiedKey(): string {
    const kind = this.view.unified ?? "inbox";
    return `unified:${kind}:${this.unifiedAccounts().map((a) => `${a}=${this.roleId(a, kind) ?? ""}`).join(",")}`;
  }

  /** One account's query in a unified view. */
  unifiedQuery(accountId: Id): Record<string, unknown> {
    const kind = this.view.unified ?? "inbox";
    const bySent = kind === "drafts" || kind === "sent";
    let filter: Record<string, unknown>;
    if (kind === "flagged") {
      const skip = ["trash", "junk"].map((r) => this.roleId(accountId, r)).filter((x): x is Id => !!x);
      filter = skip.length ? { operator: "AND", conditions: [{ hasKeyword: "$flagged" }, { inMailboxOtherThan: skip }] } : { hasKeyword: "$flagged" };
    } else filter = { inMailbox: this.roleId(accountId, kind) ?? "" };
    return { accountId, filter, sort: [{ property: bySent ? "sentAt" : "receivedAt", isAscending: false }], collapseThreads: false };
  }

  /** The calls reading the next page of `accounts` in a unified view: one Email/query and
   * one Email/get per account, in one request (`fromStart`: their first pages). */
  unifiedCalls(accounts: Id[], fromStart = false): Invocation[] {
    const calls: Invocation[] = [];
    for (const [i, acc] of accounts.entries()) {
      const position = fromStart ? 0 : (this.parts.get(acc)?.emails.length ?? 0);
      calls.push(
        ["Email/query", { ...this.unifiedQuery(acc), position, limit: PAGE, calculateTotal: true }, `q${i}`],
        ["Email/get", { accountId: acc, "#ids": { resultOf: `q${i}`, name: "Email/query", path: "/ids" }, properties: LIST_PROPS }, `g${i}`],
      );
    }
    return calls;
  }

  /** Reads the next pages until the merged list reaches `to` (or every account is read to
   * its end); bounded in rounds. */
  private async ensureUnified(key: string, to: number): Promise<void> {
    for (let round = 0; round < 50; round++) {
      if (key !== this.queryKey) return;
      const have = this.model.ids.findIndex((x) => x === undefined);
      const placed = have < 0 ? this.model.ids.length : have;
      const first = this.parts.size === 0;
      if (!first && placed >= Math.min(to, this.model.total)) return;
      const accounts = first ? this.unifiedAccounts() : mergeNewest([...this.parts.values()], this.bySent()).more;
      if (!accounts.length) return;
      const tag = `${key}@${accounts.join(",")}:${accounts.map((a) => this.parts.get(a)?.emails.length ?? 0).join(",")}`;
      if (this.inflight.has(tag)) return;
      this.inflight.add(tag);
      let r: Answers;
      try {
        r = await this.app.jmap.request(this.unifiedCalls(accounts));
      } catch (e) {
        this.app.report(e);
        return;
      } finally {
        this.inflight.delete(tag);
      }
      if (!this.applyUnified(r, key, accounts)) return;
      this.app.emit();
    }
  }

  private bySent(): boolean {
    return this.view.unified === "drafts" || this.view.unified === "sent";
  }

  /** Takes the answers of `unifiedCalls(accounts)`, appending each account's page to its
   * part (or replacing the parts, `fresh`: a live update reads the starts again). */
  applyUnified(r: Answers, key: string, accounts: Id[], fresh = false): boolean {
    if (key !== this.queryKey) return false;
    for (const [i, acc] of accounts.entries()) {
      const q = r.get(`q${i}`, "Email/query");
      const g = r.get(`g${i}`, "Email/get");
      if (!q || q instanceof MethodError || !g || g instanceof MethodError) {
        // An account that cannot answer is left out of the view, not the whole view.
        this.parts.set(acc, { accountId: acc, emails: [], total: 0 });
        continue;
      }
      const mine = this.app.actions.pending();
      this.keep(acc, g.list, mine);
      const byId = new Map(g.list.map((e) => [e.id, this.cache.get(e.id) ?? e]));
      const page = q.ids.map((id) => byId.get(id)).filter((e): e is Email => !!e);
      const before = fresh ? [] : this.parts.get(acc)?.emails ?? [];
      this.parts.set(acc, { accountId: acc, emails: [...before, ...page], total: q.total ?? before.length + page.length });
      this.app.live.unifiedStates.set(acc, g.state);
    }
    this.remerge();
    return true;
  }

  /** The list of a unified view from its parts. */
  remerge(): void {
    for (const p of this.parts.values()) p.emails = p.emails.map((e) => this.cache.get(e.id) ?? e);
    const m = mergeNewest([...this.parts.values()], this.bySent());
    const ids: (Id | undefined)[] = m.rows.map((r) => r.id);
    ids.length = Math.max(ids.length, m.total);
    this.model = { ids, total: m.total, queryState: null };
  }
}
