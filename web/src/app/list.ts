// The message list: the query it shows (a mailbox, or a search), its rows fetched in
// windows of PAGE as the user scrolls (a sparse `ListModel`), the cursor and the
// selection, and the Emails the list knows (`cache`, kept bounded by `trim`).

import { type Answers, MethodError, type Invocation } from "../jmap";
import type { Email, Id } from "../jmap-types";
import { type ListModel, emptyList, missingWindows, setWindow, trimCache } from "../model";
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
  "hasAttachment", "size",
];

export interface View {
  mailboxId: Id | null;
  search: string;
  collapseThreads: boolean;
}

export class ListWindow {
  view: View = { mailboxId: null, search: "", collapseThreads: readPref("tidings.collapseThreads") === "1" };
  filter: Filter | null = null;
  searchProblems: string[] = [];
  model: ListModel = emptyList();
  loading = false;
  cache = new Map<Id, Email>();
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

  async selectMailbox(id: Id): Promise<void> {
    this.view = { ...this.view, mailboxId: id, search: "" };
    if (location.hash !== `#/mailbox/${id}`) history.replaceState(null, "", `#/mailbox/${id}`);
    writePref(`tidings.mailbox.${this.app.accountId}`, id);
    await this.resetList();
  }

  async setSearch(q: string): Promise<void> {
    this.view = { ...this.view, search: q };
    await this.resetList();
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

  queryArgs(): Record<string, unknown> {
    return {
      accountId: this.app.accountId,
      filter: this.filter,
      sort: [{ property: "receivedAt", isAscending: false }],
      collapseThreads: this.view.collapseThreads,
    };
  }

  async resetList(): Promise<void> {
    this.filter = this.buildFilter();
    this.queryKey = JSON.stringify(this.queryArgs());
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
    trimCache(this.model, this.cache, this.shown[0], this.shown[1], keep, CACHE_MAX, CACHE_MARGIN);
  }

  windowCalls(position: number): Invocation[] {
    const calls: Invocation[] = [
      ["Email/query", { ...this.queryArgs(), position, limit: PAGE, calculateTotal: true }, "q"],
      ["Email/get", { accountId: this.app.accountId, "#ids": { resultOf: "q", name: "Email/query", path: "/ids" }, properties: LIST_PROPS }, "g"],
    ];
    if (this.view.collapseThreads)
      calls.push(["Thread/get", { accountId: this.app.accountId, "#ids": { resultOf: "g", name: "Email/get", path: "/list/*/threadId" } }, "t"]);
    if (this.view.search.trim() && this.filter)
      calls.push(["SearchSnippet/get", { accountId: this.app.accountId, filter: this.filter, "#emailIds": { resultOf: "q", name: "Email/query", path: "/ids" } }, "s"]);
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
      for (const e of g.list) this.cache.set(e.id, e);
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
}
