// The application's data layer: one object holding what the UI shows, loading it through
// JMAP, keeping it current from push, and acting on mail optimistically. Components
// subscribe and re-render on `emit()`. Actions whose JMAP method the server lacks are
// not offered (`can()`), never simulated.

import {
  type Connection, HttpError, Jmap, MethodError, Push, type Id, type Invocation, type Session,
  type StateChange, type SyncInfo, TIDINGS_SYNC, signOut,
} from "./jmap";
import {
  type Email, type ListModel, type Mailbox, Optimistic, type QueryChanges, applyEmailChanges, applyQueryChanges, contiguousEnd,
  emptyList, missingWindows, patchEmail, setWindow, trimCache,
} from "./model";
import { type Filter, parseSearch } from "./search";
import {
  type Draft, type Identity, type Source, draftEmail, emptyDraft, forwardDraft, replyDraft,
} from "./compose";
import { type SendState, type Submission, describe, isError, sendState, settled } from "./outgoing";

export const PAGE = 100;
/** Seconds an outgoing message is followed by the timer (push follows it longer). */
const OUTGOING_TICKS = 600;
/** Emails kept for the list before rows far from the screen are dropped (`trimCache`). */
const CACHE_MAX = 4000;
/** Rows kept on either side of the ones shown when dropping. */
const CACHE_MARGIN = 1000;
export const LIST_PROPS = [
  "id", "threadId", "mailboxIds", "keywords", "from", "to", "subject", "preview", "receivedAt",
  "hasAttachment", "size",
];
const BODY_PROPS = [
  ...LIST_PROPS, "cc", "bcc", "replyTo", "sentAt", "messageId", "inReplyTo", "references",
  "textBody", "htmlBody", "attachments", "bodyValues", "blobId",
];

export interface BodyPart {
  partId: string | null;
  blobId: string | null;
  size: number;
  name: string | null;
  type: string;
  charset: string | null;
  disposition: string | null;
  cid: string | null;
}

export interface FullEmail extends Email {
  cc: Email["from"];
  bcc: Email["from"];
  replyTo: Email["from"];
  sentAt: string | null;
  messageId: string[] | null;
  inReplyTo: string[] | null;
  references: string[] | null;
  textBody: BodyPart[];
  htmlBody: BodyPart[];
  attachments: BodyPart[];
  bodyValues: Record<string, { value: string; isTruncated: boolean }>;
  blobId: string;
}

export interface Toast {
  text: string;
  undo?: () => void;
  error?: boolean;
  /** It tells the state of the message being sent (`outgoing`). */
  send?: boolean;
}

export type Action = "read" | "flag" | "move" | "delete" | "draft" | "send" | "folders";

/** Which JMAP method each action needs. */
const NEEDS: Record<Action, string[]> = {
  read: ["Email/set"],
  flag: ["Email/set"],
  move: ["Email/set"],
  delete: ["Email/set"],
  draft: ["Email/set"],
  send: ["Email/set", "EmailSubmission/set"],
  folders: ["Mailbox/set"],
};

/** Which parts a refresh reads again. */
export interface Wanted {
  mailboxes: boolean;
  emails: boolean;
}

const MAILBOX_QUIET = 400;
const MAILBOX_LATEST = 2000;

const BODIES_KEPT = 24;

export interface View {
  mailboxId: Id | null;
  search: string;
  collapseThreads: boolean;
}

export class MailApp {
  jmap: Jmap;
  session: Session | null = null;
  phase: "loading" | "signin" | "setup" | "ready" | "error" = "loading";
  /** The accounts screen (add, edit, remove) is open. */
  accountsOpen = false;
  fatal = "";
  accountId: Id = "";
  mailboxes: Mailbox[] = [];
  mailboxState = "";
  emailState = "";
  view: View = { mailboxId: null, search: "", collapseThreads: readPref("tidings.collapseThreads") === "1" };
  filter: Filter | null = null;
  searchProblems: string[] = [];
  list: ListModel = emptyList();
  listLoading = false;
  cache = new Map<Id, Email>();
  /** The rows the list last asked for (`ensureRange`): what `trim` keeps around. */
  private shown: [number, number] = [0, PAGE];
  threadSizes = new Map<Id, number>();
  snippets = new Map<Id, { subject: string | null; preview: string | null }>();
  cursor = 0;
  selected = new Set<Id>();
  open: { emailId: Id; threadId: Id; emails: FullEmail[] } | null = null;
  connection: Connection = "connecting";
  toast: Toast | null = null;
  /** The message sent last, as its EmailSubmission says, followed until it settles. */
  outgoing: SendState | null = null;
  private outgoingTimer: ReturnType<typeof setInterval> | null = null;
  sync: Record<Id, SyncInfo> = {};
  /** Senders whose remote images are always shown (kept in this browser). */
  trustedSenders = new Set<string>(readTrusted());
  private optimistic = new Optimistic();
  private push: Push | null = null;
  private listeners = new Set<() => void>();
  private inflight = new Set<string>();
  private queryKey = "";
  private refreshing: Promise<void> | null = null;
  private refreshAgain: Wanted | null = null;
  /** Threads fetched for reading (the open one, and its neighbours in the list, fetched
   * ahead), by the Email id opened; at most BODIES_KEPT, oldest dropped first. */
  private bodies = new Map<Id, { threadId: Id; emails: FullEmail[] }>();
  private prefetching = new Set<Id>();
  private mailboxTimer: ReturnType<typeof setTimeout> | null = null;
  private mailboxFirst = 0;
  private lastUndo: (() => Promise<void>) | null = null;
  private noQueryChanges = false;
  compose: Draft | null = null;
  composeStatus = "";
  uploads: { name: string; progress: number }[] = [];
  private draftTimer: ReturnType<typeof setTimeout> | null = null;
  private draftSaving: Promise<void> | null = null;
  identities: Identity[] = [];

  constructor(jmap = new Jmap()) {
    this.jmap = jmap;
  }

  subscribe(f: () => void): () => void {
    this.listeners.add(f);
    return () => this.listeners.delete(f);
  }

  emit(): void {
    for (const f of this.listeners) f();
  }

  can(a: Action): boolean {
    return NEEDS[a].every((m) => this.jmap.has(m));
  }

  mailbox(id: Id | null): Mailbox | undefined {
    return this.mailboxes.find((m) => m.id === id);
  }

  byRole(role: string): Mailbox | undefined {
    return this.mailboxes.find((m) => m.role === role);
  }

  // --- start and sign-in -------------------------------------------------------------------

  async start(): Promise<void> {
    // The first screen needs the Session (which account, which URLs) and then one JMAP
    // request. The account and API URL of the last visit are remembered, so on a return
    // visit both go out at once and the list does not wait for the Session's round trip;
    // the Session still decides: if it names another account or URL, that answer is
    // dropped and the request is made again.
    const boot = readBoot();
    let early: Promise<Map<string, Record<string, unknown> | MethodError> | Error> | null = null;
    let earlyGuess = "";
    if (boot) {
      this.accountId = boot.accountId;
      earlyGuess = this.guessMailbox();
      early = this.jmap.request(this.firstCalls(earlyGuess), boot.apiUrl).catch((e: unknown) => (e instanceof Error ? e : new Error(String(e))));
    }
    try {
      this.session = await this.jmap.loadSession();
      mark("tidings:session");
    } catch (e) {
      if (e instanceof HttpError && e.status === 401) {
        this.phase = "signin";
      } else {
        this.phase = "error";
        this.fatal = "The server cannot be reached. Retrying…";
        setTimeout(() => void this.start(), 3000);
      }
      this.emit();
      return;
    }
    this.accountId =
      this.session.primaryAccounts["urn:ietf:params:jmap:mail"] ?? Object.keys(this.session.accounts)[0] ?? "";
    this.readSync();
    void this.followSync();
    if (!this.accountId) {
      // No mail account yet: the first screen is the Add-account one.
      this.phase = "setup";
      this.emit();
      return;
    }
    // Back from a provider's sign-in (`#/accounts?added=…` or `?error=…`): show what
    // happened, and follow the new account's first sync.
    if (location.hash.startsWith("#/accounts")) {
      if (new URLSearchParams(location.hash.split("?")[1] ?? "").get("error")) this.accountsOpen = true;
      setTimeout(() => void this.reloadSession(), 0);
    }
    writeBoot({ accountId: this.accountId, apiUrl: this.session.apiUrl });
    // One request for everything the first screen needs: which optional methods exist,
    // the mailboxes, the identities and, when the mailbox is known (the URL, or the one
    // opened last time), its first window of messages.
    let guess: string;
    let first: Map<string, Record<string, unknown> | MethodError>;
    try {
      const same = early && boot && boot.accountId === this.accountId && boot.apiUrl === this.session.apiUrl;
      const got = same ? await early : null;
      if (got && !(got instanceof Error)) {
        guess = earlyGuess;
        first = got;
      } else {
        guess = this.guessMailbox();
        first = await this.jmap.request(this.firstCalls(guess));
      }
    } catch (e) {
      this.phase = "error";
      this.fatal = "The server cannot be reached. Retrying…";
      this.emit();
      setTimeout(() => void this.start(), 3000);
      return void e;
    }
    mark("tidings:first-response");
    this.jmap.readProbe(first);
    if (guess) {
      // The list first: the mailboxes (whose counts cost the server a pass over the
      // mailbox) come in a second request right after it is on screen.
      const q = first.get("q");
      this.phase = "ready";
      if (q && !(q instanceof MethodError)) {
        if (location.hash !== `#/mailbox/${guess}`) history.replaceState(null, "", `#/mailbox/${guess}`);
        this.applyWindow(first, this.queryKey, 0);
      }
      this.emit();
      mark("tidings:list");
      let side: Map<string, Record<string, unknown> | MethodError>;
      try {
        side = await this.jmap.request(this.sidebarCalls());
      } catch (e) {
        this.report(e);
        return;
      }
      if (!this.readSidebar(side)) return;
      if (!this.mailbox(guess) || !q || q instanceof MethodError) {
        const start = this.byRole("inbox") ?? this.mailboxes[0];
        if (start) await this.selectMailbox(start.id);
      }
      this.emit();
    } else {
      if (!this.readSidebar(first)) return;
      this.phase = "ready";
      const start = this.byRole("inbox") ?? this.mailboxes[0];
      this.emit();
      if (start) await this.selectMailbox(start.id);
    }
    this.push = new Push(this.session, {
      onChange: (c) => void this.onPush(c),
      onStatus: (s) => {
        this.connection = s;
        this.emit();
      },
      pollMs: 10_000,
    });
    this.push.start();
  }

  /** The mailbox to open first: the one in the URL, else the one opened last time. */
  private guessMailbox(): string {
    const hash = decodeURIComponent(location.hash.replace(/^#\/?/, ""));
    return (hash.startsWith("mailbox/") ? hash.slice(8) : "") || readPref(`tidings.mailbox.${this.accountId}`) || "";
  }

  /** The calls of the first request; with a mailbox, the view is set to it. */
  private firstCalls(guess: string): Invocation[] {
    const calls: Invocation[] = [...this.jmap.probeCalls(this.accountId)];
    if (!guess) return [...calls, ...this.sidebarCalls()];
    this.view = { ...this.view, mailboxId: guess };
    this.filter = this.buildFilter();
    this.queryKey = JSON.stringify(this.queryArgs());
    return [...calls, ...this.windowCalls(0)];
  }

  private sidebarCalls(): Invocation[] {
    return [
      ["Mailbox/get", { accountId: this.accountId, ids: null }, "mb"],
      ["Identity/get", { accountId: this.accountId }, "ident"],
    ];
  }

  /** Takes the mailboxes and identities; false (and the error shown) without mailboxes. */
  private readSidebar(r: Map<string, Record<string, unknown> | MethodError>): boolean {
    const mb = r.get("mb");
    if (!mb || mb instanceof MethodError) {
      this.phase = "error";
      this.fatal = "The mailboxes could not be read.";
      this.emit();
      return false;
    }
    this.mailboxes = mb.list as Mailbox[];
    this.mailboxState = mb.state as string;
    const ident = r.get("ident");
    if (ident && !(ident instanceof MethodError)) this.identities = ident.list as Identity[];
    return true;
  }

  async signedIn(): Promise<void> {
    this.phase = "loading";
    this.emit();
    await this.start();
  }

  async signOut(): Promise<void> {
    this.push?.stop();
    await signOut().catch(() => undefined);
    writePref("tidings.boot", "null");
    location.hash = "";
    location.reload();
  }

  private readSync(): void {
    if (!this.session) return;
    // Rebuilt, not merged: a removed account's status must not linger.
    const sync: Record<Id, SyncInfo> = {};
    for (const [id, a] of Object.entries(this.session.accounts)) {
      const s = a.accountCapabilities[TIDINGS_SYNC] as SyncInfo | undefined;
      if (s) sync[id] = s;
    }
    this.sync = sync;
  }

  openAccounts(open: boolean): void {
    this.accountsOpen = open;
    this.emit();
  }

  private following = false;
  /** How often the Session is read again while an account's first sync runs. */
  syncPollMs = 1000;

  /** Reads the Session again (an account was added, edited or removed), then follows
   * the accounts still syncing. */
  async reloadSession(): Promise<void> {
    try {
      this.session = await this.jmap.loadSession();
      this.readSync();
    } catch (e) {
      this.report(e);
    }
    this.emit();
    await this.followSync();
  }

  /** While an account is `new` or `syncing`, reads its status again every `syncPollMs`:
   * the end of a sync changes no mail, so no push says the status became `ok`, and the
   * progress bar would stay full; and the push channel carries the primary account's
   * changes, not another account's first sync. Bounded: at most 600 reads. */
  async followSync(): Promise<void> {
    if (this.following) return;
    this.following = true;
    try {
      for (let i = 0; i < 600 && Object.values(this.sync).some((x) => x.status === "new" || x.status === "syncing"); i++) {
        await new Promise((r) => setTimeout(r, this.syncPollMs));
        this.session = await this.jmap.loadSession();
        this.readSync();
        this.emit();
      }
    } catch (e) {
      this.report(e);
    } finally {
      this.following = false;
    }
  }

  // --- mailboxes -----------------------------------------------------------------------------

  async loadMailboxes(): Promise<void> {
    const r = await this.jmap.call<{ list: Mailbox[]; state: string }>("Mailbox/get", {
      accountId: this.accountId,
      ids: null,
    });
    this.mailboxes = r.list;
    this.mailboxState = r.state;
  }

  // --- the list --------------------------------------------------------------------------------

  async selectMailbox(id: Id): Promise<void> {
    this.view = { ...this.view, mailboxId: id, search: "" };
    if (location.hash !== `#/mailbox/${id}`) history.replaceState(null, "", `#/mailbox/${id}`);
    writePref(`tidings.mailbox.${this.accountId}`, id);
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

  private buildFilter(): Filter | null {
    const { mailboxId, search } = this.view;
    if (search.trim()) {
      const p = parseSearch(search, this.mailboxes);
      this.searchProblems = p.unknown;
      // A search without in: looks everywhere but Trash and Junk.
      const f = p.filter ?? {};
      const scoped = JSON.stringify(f).includes('"inMailbox"');
      const skip = ["trash", "junk"].map((r) => this.byRole(r)?.id).filter((x): x is Id => !!x);
      if (scoped || skip.length === 0) return p.filter;
      return { operator: "AND", conditions: [f, { inMailboxOtherThan: skip }] };
    }
    this.searchProblems = [];
    return mailboxId ? { inMailbox: mailboxId } : null;
  }

  private queryArgs(): Record<string, unknown> {
    return {
      accountId: this.accountId,
      filter: this.filter,
      sort: [{ property: "receivedAt", isAscending: false }],
      collapseThreads: this.view.collapseThreads,
    };
  }

  async resetList(): Promise<void> {
    this.filter = this.buildFilter();
    this.queryKey = JSON.stringify(this.queryArgs());
    this.list = emptyList();
    this.snippets.clear();
    this.cursor = 0;
    this.selected.clear();
    this.listLoading = true;
    this.emit();
    await this.ensureRange(0, PAGE);
    this.listLoading = false;
    this.emit();
  }

  /** Fetches the windows of [from, to) not loaded yet (the list calls it as it scrolls). */
  async ensureRange(from: number, to: number): Promise<void> {
    this.shown = [from, to];
    const key = this.queryKey;
    const first = this.list.total === 0 && this.list.queryState === null;
    const wanted = first ? [0] : missingWindows(this.list, from, to, PAGE);
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
    const keep = new Set<Id>(this.selected);
    for (const p of this.optimistic.pending.values()) for (const id of p.before.keys()) keep.add(id);
    for (const t of this.bodies.values()) for (const e of t.emails) keep.add(e.id);
    for (const e of this.open?.emails ?? []) keep.add(e.id);
    const atCursor = this.list.ids[this.cursor];
    if (atCursor) keep.add(atCursor);
    trimCache(this.list, this.cache, this.shown[0], this.shown[1], keep, CACHE_MAX, CACHE_MARGIN);
  }

  private windowCalls(position: number): Invocation[] {
    const calls: Invocation[] = [
      ["Email/query", { ...this.queryArgs(), position, limit: PAGE, calculateTotal: true }, "q"],
      ["Email/get", { accountId: this.accountId, "#ids": { resultOf: "q", name: "Email/query", path: "/ids" }, properties: LIST_PROPS }, "g"],
    ];
    if (this.view.collapseThreads)
      calls.push(["Thread/get", { accountId: this.accountId, "#ids": { resultOf: "g", name: "Email/get", path: "/list/*/threadId" } }, "t"]);
    if (this.view.search.trim() && this.filter)
      calls.push(["SearchSnippet/get", { accountId: this.accountId, filter: this.filter, "#emailIds": { resultOf: "q", name: "Email/query", path: "/ids" } }, "s"]);
    return calls;
  }

  private async fetchWindow(key: string, position: number): Promise<void> {
    let r: Map<string, Record<string, unknown> | MethodError>;
    try {
      r = await this.jmap.request(this.windowCalls(position));
    } catch (e) {
      this.report(e);
      return;
    }
    this.applyWindow(r, key, position);
    this.trim();
    this.emit();
  }

  private applyWindow(r: Map<string, Record<string, unknown> | MethodError>, key: string, position: number): void {
    if (key !== this.queryKey) return; // the user went elsewhere meanwhile
    const q = r.get("q");
    const g = r.get("g");
    if (q instanceof MethodError || !q) {
      this.toastError(q instanceof MethodError ? `The search failed: ${q.description ?? q.type}` : "The list could not be loaded.");
      return;
    }
    if (g && !(g instanceof MethodError)) {
      for (const e of g.list as Email[]) this.cache.set(e.id, e);
      if (!this.emailState) this.emailState = g.state as string;
    }
    const t = r.get("t");
    if (t && !(t instanceof MethodError))
      for (const th of t.list as { id: Id; emailIds: Id[] }[]) this.threadSizes.set(th.id, th.emailIds.length);
    const s = r.get("s");
    if (s && !(s instanceof MethodError))
      for (const sn of s.list as { emailId: Id; subject: string | null; preview: string | null }[])
        this.snippets.set(sn.emailId, sn);
    const ids = q.ids as Id[];
    this.list = setWindow(this.list, position, ids, (q.total as number | undefined) ?? ids.length, (q.queryState as string) ?? null);
  }

  // --- live updates ------------------------------------------------------------------------------

  /** What a push asks to refresh: only the types whose state moved past ours (RFC 8620
   * 7.1); `null` (a reconnect, a poll) means everything. */
  private wanted(c: StateChange | null): Wanted {
    if (!c) return { mailboxes: true, emails: true };
    const t = c[this.accountId];
    if (!t) return { mailboxes: false, emails: false };
    const emailTypes = ["Email", "Thread", "EmailDelivery"].filter((k) => t[k] !== undefined);
    return {
      mailboxes: t.Mailbox !== undefined && t.Mailbox !== this.mailboxState,
      emails: t.Email !== undefined ? t.Email !== this.emailState : emailTypes.length > 0,
    };
  }

  private async onPush(c: StateChange | null): Promise<void> {
    if (this.outgoing && !settled(this.outgoing) && (!c || c[this.accountId]?.EmailSubmission !== undefined)) void this.followSend();
    await this.schedule(this.wanted(c));
  }

  /** One refresh at a time; what is asked meanwhile is merged and runs next. A refresh
   * of the mailboxes alone (their counts, after our own mark-read: the counts were
   * already moved here) waits until the pushes pause for MAILBOX_QUIET ms (at most
   * MAILBOX_LATEST ms), so that reading message after message is not queued behind the
   * server's counting. */
  private async schedule(w: Wanted, deferred = false): Promise<void> {
    if (!w.mailboxes && !w.emails) return;
    if (!w.emails && !deferred) return this.deferMailboxes();
    if (w.mailboxes && this.mailboxTimer) {
      clearTimeout(this.mailboxTimer);
      this.mailboxTimer = null;
    }
    if (this.refreshing) {
      const p = this.refreshAgain;
      this.refreshAgain = { mailboxes: w.mailboxes || !!p?.mailboxes, emails: w.emails || !!p?.emails };
      return;
    }
    this.refreshing = this.refresh(w);
    try {
      await this.refreshing;
    } finally {
      this.refreshing = null;
    }
    const again = this.refreshAgain;
    if (again) {
      this.refreshAgain = null;
      await this.schedule(again, true);
    }
  }

  private deferMailboxes(): void {
    if (this.mailboxTimer === null) this.mailboxFirst = Date.now();
    else clearTimeout(this.mailboxTimer);
    const wait = Math.max(0, Math.min(MAILBOX_QUIET, this.mailboxFirst + MAILBOX_LATEST - Date.now()));
    this.mailboxTimer = setTimeout(() => {
      this.mailboxTimer = null;
      void this.schedule({ mailboxes: true, emails: false }, true);
    }, wait);
  }

  /** Brings mailboxes, the list and the open thread in line with the server's changes,
   * through `/changes` (never a reload of the list). */
  async refresh(what: Wanted = { mailboxes: true, emails: true }): Promise<void> {
    if (!this.emailState || this.phase !== "ready") return;
    try {
      // While an account syncs (or fails), its status in the Session changes: follow it.
      if (Object.values(this.sync).some((x) => x.status !== "ok")) {
        this.session = await this.jmap.loadSession();
        this.readSync();
      }
      await this.refreshAll(what);
      if (this.connection === "offline") this.connection = "polling";
    } catch (e) {
      this.report(e);
    }
    this.emit();
  }

  /** Everything a change can touch, in ONE request (back-references carry the ids from
   * one call to the next): mailbox changes and the changed mailboxes, Email changes and
   * the changed Emails, and the list's queryChanges with its new Emails. */
  private async refreshAll(what: Wanted): Promise<void> {
    const acc = this.accountId;
    const ref = (resultOf: string, name: string, path: string) => ({ resultOf, name, path });
    const useQc = !this.noQueryChanges && !!this.list.queryState;
    const upToId = useQc ? contiguousEnd(this.list) : null;
    const calls: Invocation[] = [];
    if (what.mailboxes)
      calls.push(
        ["Mailbox/changes", { accountId: acc, sinceState: this.mailboxState }, "mc"],
        ["Mailbox/get", { accountId: acc, "#ids": ref("mc", "Mailbox/changes", "/created") }, "mgc"],
        ["Mailbox/get", { accountId: acc, "#ids": ref("mc", "Mailbox/changes", "/updated") }, "mgu"],
      );
    if (what.emails)
      calls.push(
        ["Email/changes", { accountId: acc, sinceState: this.emailState, maxChanges: 500 }, "ec"],
        ["Email/get", { accountId: acc, "#ids": ref("ec", "Email/changes", "/created"), properties: LIST_PROPS }, "gc"],
        ["Email/get", { accountId: acc, "#ids": ref("ec", "Email/changes", "/updated"), properties: LIST_PROPS }, "gu"],
      );
    if (what.emails && useQc)
      calls.push(
        ["Email/queryChanges", { ...this.queryArgs(), sinceQueryState: this.list.queryState, calculateTotal: true, ...(upToId ? { upToId } : {}) }, "qc"],
        ["Email/get", { accountId: acc, "#ids": ref("qc", "Email/queryChanges", "/added/*/id"), properties: LIST_PROPS }, "ga"],
      );
    if (!calls.length) return;
    const r = await this.jmap.request(calls);
    if (what.mailboxes) await this.applyMailboxChanges(r);
    if (!what.emails) return;
    const ec = r.get("ec");
    if (ec instanceof MethodError && ec.type === "cannotCalculateChanges") {
      // Too old to follow: start the list over (rare: a long time offline).
      this.emailState = "";
      await this.resetList();
      return;
    }
    if (!ec || ec instanceof MethodError) throw ec ?? new MethodError("serverFail", "no Email/changes");
    const created = [...(ec.created as Id[])];
    const updated = [...(ec.updated as Id[])];
    const destroyed = [...(ec.destroyed as Id[])];
    const changed: Email[] = [];
    for (const k of ["gc", "gu"]) {
      const g = r.get(k);
      if (g && !(g instanceof MethodError)) changed.push(...(g.list as Email[]));
    }
    let since = ec.newState as string;
    // More changes than one page: follow the rest (bounded).
    for (let round = 0; ec.hasMoreChanges && round < 20; round++) {
      const more = await this.jmap.request([
        ["Email/changes", { accountId: acc, sinceState: since, maxChanges: 500 }, "ec"],
        ["Email/get", { accountId: acc, "#ids": ref("ec", "Email/changes", "/created"), properties: LIST_PROPS }, "gc"],
        ["Email/get", { accountId: acc, "#ids": ref("ec", "Email/changes", "/updated"), properties: LIST_PROPS }, "gu"],
      ]);
      const m = more.get("ec");
      if (!m || m instanceof MethodError) break;
      created.push(...(m.created as Id[]));
      updated.push(...(m.updated as Id[]));
      destroyed.push(...(m.destroyed as Id[]));
      for (const k of ["gc", "gu"]) {
        const g = more.get(k);
        if (g && !(g instanceof MethodError)) changed.push(...(g.list as Email[]));
      }
      since = m.newState as string;
      if (!m.hasMoreChanges) break;
    }
    if (since === this.emailState) return;
    const changedIds = [...new Set([...created, ...updated])];
    // An optimistic update still waiting keeps its local version.
    const mine = new Set<Id>();
    for (const p of this.optimistic.pending.values()) for (const id of p.before.keys()) mine.add(id);
    const newThreads = new Set<Id>();
    for (const e of changed) {
      if (!this.cache.has(e.id) && created.includes(e.id)) newThreads.add(e.threadId);
      if (!mine.has(e.id)) this.cache.set(e.id, e);
    }
    for (const id of destroyed) this.cache.delete(id);
    this.notifyNew(changed.filter((e) => created.includes(e.id)));
    for (const t of newThreads) if (this.threadSizes.has(t)) this.threadSizes.set(t, (this.threadSizes.get(t) ?? 0) + 1);
    this.emailState = since;

    if (useQc) {
      // `unknownMethod` once means never again; `cannotCalculateChanges` means this time
      // the changes are applied locally.
      const a = r.get("qc");
      if (a instanceof MethodError && a.type === "unknownMethod") this.noQueryChanges = true;
      const qc = a && !(a instanceof MethodError) ? (a as unknown as QueryChanges) : null;
      const ga = r.get("ga");
      if (qc && ga && !(ga instanceof MethodError)) {
        for (const e of ga.list as Email[]) if (!mine.has(e.id)) this.cache.set(e.id, e);
        this.list = applyQueryChanges(this.list, qc, upToId);
        await this.afterListChange(created, changedIds, destroyed);
        return;
      }
    }
    const mailboxId = this.view.mailboxId;
    const searching = !!this.view.search.trim();
    const shown = new Set(this.list.ids.filter((x): x is Id => !!x));
    this.list = applyEmailChanges(
      this.list,
      {
        matches: (e) => (searching ? shown.has(e.id) : !!mailboxId && !!e.mailboxIds[mailboxId]),
        collapseThreads: this.view.collapseThreads,
      },
      this.cache,
      destroyed,
      changed.filter((e) => !mine.has(e.id)),
    );
    await this.afterListChange(created, changedIds, destroyed);
  }

  /** Mailbox/changes and the Mailbox/get of what it names, merged into the mailboxes;
   * anything unexpected (too many changes, an error) reads them all again. */
  private async applyMailboxChanges(r: Map<string, Record<string, unknown> | MethodError>): Promise<void> {
    const mc = r.get("mc");
    const got = ["mgc", "mgu"].map((k) => r.get(k));
    if (!mc || mc instanceof MethodError || mc.hasMoreChanges || got.some((g) => !g || g instanceof MethodError)) {
      await this.loadMailboxes();
      return;
    }
    const byId = new Map(this.mailboxes.map((m) => [m.id, m]));
    for (const g of got) for (const m of ((g as Record<string, unknown>).list as Mailbox[])) byId.set(m.id, m);
    for (const id of (mc.destroyed as Id[] | undefined) ?? []) byId.delete(id);
    this.mailboxes = [...byId.values()];
    this.mailboxState = mc.newState as string;
  }

  private async afterListChange(created: Id[], changed: Id[], destroyed: Id[]): Promise<void> {
    this.cursor = Math.min(this.cursor, Math.max(0, this.list.total - 1));
    for (const id of destroyed) this.selected.delete(id);
    // Prefetched threads that a change touches are fetched again when opened.
    const gone = new Set([...changed, ...destroyed]);
    const newThreads = new Set(created.map((id) => this.cache.get(id)?.threadId).filter((t): t is Id => !!t));
    for (const [id, t] of this.bodies)
      if (newThreads.has(t.threadId) || t.emails.some((e) => gone.has(e.id))) this.bodies.delete(id);
    if (this.open) {
      const open = this.open;
      // A new message in the thread, or one of it gone: read the thread again. Otherwise
      // the changed Emails' keywords and mailboxes are patched in (no body refetch).
      const joins = newThreads.has(open.threadId);
      const lost = destroyed.some((id) => open.emails.some((e) => e.id === id));
      if (joins || lost) await this.openThread(open.emailId, false, false);
      else if (open.emails.some((e) => gone.has(e.id)))
        this.open = {
          ...open,
          emails: open.emails.map((e) => {
            const c = gone.has(e.id) ? this.cache.get(e.id) : undefined;
            return c ? { ...e, keywords: c.keywords, mailboxIds: c.mailboxIds } : e;
          }),
        };
    }
  }

  // --- reading ------------------------------------------------------------------------------------

  /** The request that reads whole threads for reading, from some of their Email ids. */
  private threadCalls(ids: Id[]): Invocation[] {
    return [
      ["Email/get", { accountId: this.accountId, ids, properties: ["threadId"] }, "e"],
      ["Thread/get", { accountId: this.accountId, "#ids": { resultOf: "e", name: "Email/get", path: "/list/*/threadId" } }, "t"],
      [
        "Email/get",
        {
          accountId: this.accountId,
          "#ids": { resultOf: "t", name: "Thread/get", path: "/list/*/emailIds" },
          properties: BODY_PROPS,
          fetchTextBodyValues: true,
          maxBodyValueBytes: 1_000_000,
        },
        "b",
      ],
    ];
  }

  /** Files the threads of a threadCalls answer under the Email ids asked for. */
  private keepThreads(asked: Id[], r: Map<string, Record<string, unknown> | MethodError>): boolean {
    const e = r.get("e");
    const t = r.get("t");
    const b = r.get("b");
    if (!e || e instanceof MethodError || !b || b instanceof MethodError || !t || t instanceof MethodError) return false;
    const threadOf = new Map((e.list as { id: Id; threadId: Id }[]).map((x) => [x.id, x.threadId]));
    const byId = new Map((b.list as FullEmail[]).map((x) => [x.id, x]));
    for (const th of t.list as { id: Id; emailIds: Id[] }[]) {
      const emails = th.emailIds.map((id) => byId.get(id)).filter((x): x is FullEmail => !!x);
      for (const id of asked) if (threadOf.get(id) === th.id) this.bodies.set(id, { threadId: th.id, emails });
    }
    while (this.bodies.size > BODIES_KEPT) {
      const oldest = this.bodies.keys().next().value;
      if (oldest === undefined) break;
      this.bodies.delete(oldest);
    }
    return asked.every((id) => this.bodies.has(id));
  }

  /** Opens the thread of `emailId`: at once when it was fetched ahead, else in one
   * request. Marking it read is sent after it is on screen and does not hold it up;
   * the neighbours in the list are then fetched ahead. */
  async openThread(emailId: Id, markRead = true, useFetched = true): Promise<void> {
    const base = this.cache.get(emailId);
    let got = useFetched ? this.bodies.get(emailId) : undefined;
    if (got) {
      // Most recently used last.
      this.bodies.delete(emailId);
      this.bodies.set(emailId, got);
    } else {
      const r = await this.jmap.request(this.threadCalls([emailId])).catch((e: unknown) => {
        this.report(e);
        return null;
      });
      if (!r) return;
      got = this.keepThreads([emailId], r) ? this.bodies.get(emailId) : undefined;
      if (!got) {
        if (!this.open || this.open.emailId !== emailId) this.toastError("This message could not be opened.");
        return;
      }
    }
    // Thread order (oldest first); messages in Trash are left out unless opened from there.
    const trash = this.byRole("trash")?.id;
    const inTrash = !!trash && this.view.mailboxId === trash;
    const emails = got.emails
      .filter((e) => inTrash || !trash || !e.mailboxIds[trash] || e.id === emailId)
      // What this client changed since (the list's Emails carry it) wins.
      .map((e) => {
        const c = this.cache.get(e.id);
        return c && (c.keywords !== e.keywords || c.mailboxIds !== e.mailboxIds) ? { ...e, keywords: c.keywords, mailboxIds: c.mailboxIds } : e;
      });
    this.open = { emailId, threadId: got.threadId || base?.threadId || "", emails };
    this.emit();
    if (markRead && this.can("read")) {
      const unread = emails.filter((e) => !e.keywords.$seen).map((e) => e.id);
      if (unread.length) void this.setKeyword(unread, "$seen", true, false);
    }
    if (markRead) this.prefetchAround(emailId);
  }

  /** Fetches the threads next to `emailId` in the list (the next ones to be read with
   * j/k or a click below), and warms the cache of their sanitised HTML. */
  private prefetchAround(emailId: Id): void {
    const i = this.list.ids[this.cursor] === emailId ? this.cursor : this.list.ids.indexOf(emailId);
    if (i < 0) return;
    const want = [i + 1, i - 1, i + 2]
      .map((n) => this.list.ids[n])
      .filter((id): id is Id => !!id && !this.bodies.has(id) && !this.prefetching.has(id));
    if (!want.length) return;
    for (const id of want) this.prefetching.add(id);
    void this.jmap
      .request(this.threadCalls(want))
      .then((r) => {
        this.keepThreads(want, r);
        for (const id of want) {
          const t = this.bodies.get(id);
          const e = t?.emails.find((x) => x.id === id);
          const html = e?.htmlBody.find((p) => p.type === "text/html" && p.blobId);
          if (html?.blobId) void fetch(this.htmlUrl(html.blobId, false), { credentials: "same-origin", headers: { "X-Tidings-Client": "web" } }).catch(() => undefined);
        }
      })
      .catch(() => undefined)
      .finally(() => {
        for (const id of want) this.prefetching.delete(id);
      });
  }

  /** The sanitised page of an HTML part (see api::web). */
  htmlUrl(blobId: Id, images: boolean): string {
    return `/web/html/${encodeURIComponent(this.accountId)}/${encodeURIComponent(blobId)}${images ? "?images=1" : ""}`;
  }

  closeThread(): void {
    this.open = null;
    this.emit();
  }

  trustSender(email: string): void {
    this.trustedSenders.add(email.toLowerCase());
    try {
      localStorage.setItem("tidings.trustedSenders", JSON.stringify([...this.trustedSenders]));
    } catch {
      /* private mode */
    }
    this.emit();
  }

  // --- acting on mail (only when the server has Email/set) --------------------------------------------

  /** Applies `patches` locally, sends them, and rolls back what the server refuses. */
  private async update(patches: Map<Id, Record<string, unknown>>, removeFromList: Id[], label: string, undo: (() => Promise<void>) | null): Promise<boolean> {
    const seq = this.optimistic.apply(this.cache, this.list, patches);
    if (removeFromList.length) {
      const gone = new Set(removeFromList);
      const ids = this.list.ids.filter((id) => id === undefined || !gone.has(id));
      const n = this.list.ids.length - ids.length;
      this.list = { ids, total: this.list.total - n, queryState: this.list.queryState };
      for (const id of gone) this.selected.delete(id);
      this.cursor = Math.min(this.cursor, Math.max(0, this.list.total - 1));
    }
    this.patchOpen(patches);
    this.emit();
    const update: Record<Id, Record<string, unknown>> = {};
    for (const [id, p] of patches) update[id] = p;
    // Threads fetched for reading carry the change too (a refusal drops them below).
    for (const [id, t] of this.bodies)
      if (t.emails.some((e) => patches.has(e.id)))
        this.bodies.set(id, { ...t, emails: t.emails.map((e) => { const p = patches.get(e.id); return p ? { ...e, ...patchEmail(e, p) } : e; }) });
    let refused: Id[] = [];
    let why = "";
    try {
      const before = this.emailState;
      const r = await this.jmap.call<{ notUpdated?: Record<Id, { type: string; description?: string }> | null; oldState?: string | null; newState?: string }>("Email/set", {
        accountId: this.accountId,
        update,
      });
      refused = Object.keys(r.notUpdated ?? {});
      const first = Object.values(r.notUpdated ?? {})[0];
      why = first ? first.description ?? first.type : "";
      // Our own change of keywords, made on top of the state we hold, in a list whose
      // filter does not look at keywords: the Emails are what we patched and the list
      // did not move, so the push it causes needs no Email/changes round (the mailbox
      // counts are still refreshed). Anything else follows the push as usual.
      const keywordsOnly = [...patches.values()].every((p) => Object.keys(p).every((k) => k.startsWith("keywords/")));
      if (!refused.length && keywordsOnly && !this.view.search.trim() && r.oldState && r.oldState === before && this.emailState === before && r.newState)
        this.emailState = r.newState;
    } catch (e) {
      refused = [...patches.keys()];
      why = e instanceof Error ? e.message : String(e);
    }
    if (refused.length) {
      for (const [id, t] of this.bodies) if (t.emails.some((e) => refused.includes(e.id))) this.bodies.delete(id);
      const list = this.optimistic.rollback(this.cache, seq, refused);
      if (list && removeFromList.length) this.list = list;
      this.patchOpen(new Map(refused.map((id) => [id, {}])));
      this.toastError(`The server refused to ${label}${why ? `: ${why}` : ""}. It has been undone.`);
      this.emit();
      return false;
    }
    this.optimistic.commit(seq);
    if (undo) {
      this.lastUndo = undo;
      this.toast = { text: `${label[0]?.toUpperCase()}${label.slice(1)}: done.`, undo: () => void this.undo() };
      this.emit();
    }
    return true;
  }

  private patchOpen(patches: Map<Id, Record<string, unknown>>): void {
    if (!this.open) return;
    this.open = {
      ...this.open,
      emails: this.open.emails.map((e) => {
        const c = this.cache.get(e.id);
        return patches.has(e.id) && c ? { ...e, keywords: c.keywords, mailboxIds: c.mailboxIds } : e;
      }),
    };
  }

  async undo(): Promise<void> {
    const u = this.lastUndo;
    this.lastUndo = null;
    this.toast = null;
    this.emit();
    if (u) await u();
  }

  async setKeyword(ids: Id[], keyword: string, on: boolean, withUndo = true): Promise<void> {
    if (!this.can("read") || ids.length === 0) return;
    const patches = new Map(ids.map((id) => [id, { [`keywords/${keyword}`]: on ? true : null }]));
    const label = keyword === "$seen" ? (on ? "mark as read" : "mark as unread") : on ? "flag" : "unflag";
    if (keyword === "$seen") this.moveUnreadCounts(ids, on);
    const ok = await this.update(patches, [], label, withUndo ? () => this.setKeyword(ids, keyword, !on, false) : null);
    // Refused: the server's counts, not ours.
    if (!ok && keyword === "$seen") await this.loadMailboxes().then(() => this.emit(), () => undefined);
  }

  /** The unread counts of the mailboxes holding these Emails, moved at once (the
   * server's counts follow with the next mailbox refresh). */
  private moveUnreadCounts(ids: Id[], seen: boolean): void {
    const delta = new Map<Id, number>();
    for (const id of ids) {
      const e = this.cache.get(id);
      if (!e || !!e.keywords.$seen === seen) continue;
      for (const m of Object.keys(e.mailboxIds)) delta.set(m, (delta.get(m) ?? 0) + (seen ? -1 : 1));
    }
    if (delta.size)
      this.mailboxes = this.mailboxes.map((m) => {
        const d = delta.get(m.id);
        return d ? { ...m, unreadEmails: Math.max(0, m.unreadEmails + d) } : m;
      });
  }

  /** Marks the targets (whole conversations when they are on) read or unread. */
  async mark(keyword: "$seen" | "$flagged", on: boolean, ids = this.targets()): Promise<void> {
    await this.setKeyword(await this.expand(ids), keyword, on);
  }

  async toggle(keyword: "$seen" | "$flagged", ids = this.targets()): Promise<void> {
    // The state of the row decides (a flagged conversation unflags as a whole).
    const rowOn = ids.every((id) => this.cache.get(id)?.keywords[keyword]);
    ids = await this.expand(ids);
    const es = ids.map((id) => this.cache.get(id)).filter((e): e is Email => !!e);
    if (this.view.collapseThreads) {
      await this.setKeyword(es.map((e) => e.id), keyword, !rowOn);
      return;
    }
    const allOn = es.length > 0 && es.every((e) => e.keywords[keyword]);
    await this.setKeyword(es.map((e) => e.id), keyword, !allOn);
  }

  /** The Email ids an action applies to: the selection, else the row under the cursor,
   * else the open message. With threads collapsed a row stands for its whole thread
   * in this mailbox. */
  targets(): Id[] {
    if (this.selected.size) return [...this.selected];
    const id = this.list.ids[this.cursor] ?? this.open?.emailId;
    return id ? [id] : [];
  }

  /** With conversations on, a row stands for its thread: the Emails of those threads (in
   * the mailbox shown, when one is), fetched into the cache. */
  async expand(ids: Id[]): Promise<Id[]> {
    if (!this.view.collapseThreads || ids.length === 0) return ids;
    const threads = [...new Set(ids.map((id) => this.cache.get(id)?.threadId).filter((t): t is Id => !!t))];
    if (!threads.length) return ids;
    const r = await this.jmap
      .request([
        ["Thread/get", { accountId: this.accountId, ids: threads }, "t"],
        ["Email/get", { accountId: this.accountId, "#ids": { resultOf: "t", name: "Thread/get", path: "/list/*/emailIds" }, properties: LIST_PROPS }, "g"],
      ])
      .catch(() => null);
    const g = r?.get("g");
    if (!g || g instanceof MethodError) return ids;
    const mine = new Set<Id>();
    for (const p of this.optimistic.pending.values()) for (const id of p.before.keys()) mine.add(id);
    const mb = this.view.search ? null : this.view.mailboxId;
    const out = new Set(ids);
    for (const e of g.list as Email[]) {
      if (!mine.has(e.id)) this.cache.set(e.id, e);
      if (!mb || (this.cache.get(e.id) ?? e).mailboxIds[mb]) out.add(e.id);
    }
    return [...out];
  }

  async move(ids: Id[], to: Id, label = `move to ${this.mailbox(to)?.name ?? "the folder"}`): Promise<void> {
    if (!this.can("move") || ids.length === 0) return;
    const from = this.view.search ? null : this.view.mailboxId;
    ids = await this.expand(ids);
    // Only what is in the mailbox shown moves (a thread's replies in Sent stay there).
    const here = from ? ids.filter((id) => this.cache.get(id)?.mailboxIds[from]) : ids;
    if (here.length) ids = here;
    const es = ids.map((id) => this.cache.get(id)).filter((e): e is Email => !!e);
    const patches = new Map<Id, Record<string, unknown>>();
    const back = new Map<Id, Record<string, boolean>>();
    for (const e of es) {
      back.set(e.id, { ...e.mailboxIds });
      patches.set(e.id, { mailboxIds: { [to]: true } });
    }
    const leaves = from && from !== to ? es.map((e) => e.id) : [];
    if (this.open && leaves.includes(this.open.emailId)) this.open = null;
    await this.update(patches, leaves, label, async () => {
      const undo = new Map<Id, Record<string, unknown>>();
      for (const [id, m] of back) undo.set(id, { mailboxIds: m });
      await this.update(undo, [], "undo the move", null);
      await this.refresh();
    });
  }

  async archive(ids = this.targets()): Promise<void> {
    const a = this.byRole("archive");
    if (a) await this.move(ids, a.id, "archive");
    else this.toastError("There is no Archive folder in this account.");
  }

  async remove(ids = this.targets()): Promise<void> {
    const trash = this.byRole("trash");
    if (!this.can("delete") || ids.length === 0) return;
    if (trash && this.view.mailboxId !== trash.id) return this.move(ids, trash.id, "move to Trash");
    ids = await this.expand(ids);
    if (trash) ids = ids.filter((id) => this.cache.get(id)?.mailboxIds[trash.id]);
    if (!confirm(`Delete ${ids.length} message${ids.length > 1 ? "s" : ""} for good?`)) return;
    const gone = new Set(ids);
    const before = this.list;
    this.list = { ids: this.list.ids.filter((id) => id === undefined || !gone.has(id)), total: this.list.total - ids.length, queryState: this.list.queryState };
    if (this.open && gone.has(this.open.emailId)) this.open = null;
    this.selected.clear();
    this.emit();
    try {
      const r = await this.jmap.call<{ notDestroyed?: Record<Id, unknown> | null }>("Email/set", { accountId: this.accountId, destroy: ids });
      if (Object.keys(r.notDestroyed ?? {}).length) throw new Error("refused");
      this.toast = { text: `Deleted ${ids.length} for good.` };
    } catch {
      this.list = before;
      this.toastError("The server refused to delete. Nothing was deleted.");
    }
    this.emit();
  }

  // --- folders (Mailbox/set) -----------------------------------------------------------------

  async createFolder(name: string, parentId: Id | null = null): Promise<void> {
    await this.mailboxSet({ create: { n: { name, parentId } } }, "create the folder");
  }

  async renameFolder(id: Id, name: string): Promise<void> {
    await this.mailboxSet({ update: { [id]: { name } } }, "rename the folder");
  }

  async deleteFolder(id: Id): Promise<void> {
    await this.mailboxSet({ destroy: [id] }, "delete the folder");
    if (!this.mailbox(id) && this.view.mailboxId === id) {
      const inbox = this.byRole("inbox");
      if (inbox) await this.selectMailbox(inbox.id);
    }
  }

  private async mailboxSet(args: Record<string, unknown>, label: string): Promise<void> {
    if (!this.can("folders")) return;
    try {
      const r = await this.jmap.call<Record<string, Record<string, { description?: string; type: string }> | null>>("Mailbox/set", {
        accountId: this.accountId,
        ...args,
      });
      const err = Object.values(r.notCreated ?? {})[0] ?? Object.values(r.notUpdated ?? {})[0] ?? Object.values(r.notDestroyed ?? {})[0];
      if (err) this.toastError(`Could not ${label}: ${err.description ?? err.type}`);
    } catch (e) {
      this.report(e);
    }
    await this.loadMailboxes();
    this.emit();
  }

  // --- writing (Email/set for drafts, EmailSubmission/set for sending) ------------------------

  identity(): Identity | undefined {
    return this.identities.find((i) => i.id === this.compose?.identityId) ?? this.identities[0];
  }

  private source(e: FullEmail): Source {
    const text = e.textBody
      .filter((p) => p.partId && p.type.startsWith("text/"))
      .map((p) => e.bodyValues[p.partId ?? ""]?.value ?? "")
      .join("\n\n");
    return {
      from: e.from, to: e.to, cc: e.cc, replyTo: e.replyTo, subject: e.subject, sentAt: e.sentAt,
      receivedAt: e.receivedAt, messageId: e.messageId, references: e.references, text: text || e.preview,
      attachments: e.attachments
        .filter((a) => a.blobId)
        .map((a) => ({ blobId: a.blobId as string, name: a.name ?? "attachment", type: a.type, size: a.size })),
    };
  }

  /** Opens the composer: a new message, or a reply / reply-all / forward of the open one. */
  startCompose(kind: "new" | "reply" | "replyAll" | "forward"): void {
    if (!this.can("draft")) return;
    const me = this.identities[0];
    if (!me) {
      this.toastError("This account has no sending identity.");
      return;
    }
    const last = this.open?.emails[this.open.emails.length - 1];
    if (kind !== "new" && !last) return;
    this.compose =
      kind === "new" || !last
        ? emptyDraft(me.id)
        : kind === "forward"
          ? forwardDraft(this.source(last), me)
          : replyDraft(this.source(last), me, kind === "replyAll");
    this.composeStatus = "";
    this.emit();
  }

  /** Edits the draft; it is saved on the server 3 s after the last change. */
  editDraft(patch: Partial<Draft>): void {
    if (!this.compose) return;
    this.compose = { ...this.compose, ...patch };
    if (this.draftTimer) clearTimeout(this.draftTimer);
    this.draftTimer = setTimeout(() => void this.saveDraft(), 3000);
    this.emit();
  }

  /** Saves the draft: a new draft Email replaces the previous one (Emails are immutable). */
  async saveDraft(): Promise<void> {
    if (this.draftSaving) await this.draftSaving;
    const d = this.compose;
    const me = this.identity();
    const drafts = this.byRole("drafts");
    if (!d || !me || !drafts || !this.can("draft")) return;
    this.draftSaving = (async () => {
      this.composeStatus = "Saving…";
      this.emit();
      try {
        const r = await this.jmap.call<{ created?: Record<string, { id: Id }> | null; notCreated?: Record<string, { type: string; description?: string }> | null }>(
          "Email/set",
          { accountId: this.accountId, create: { draft: draftEmail(d, me, { drafts: drafts.id }) }, ...(d.emailId ? { destroy: [d.emailId] } : {}) },
        );
        const id = r.created?.draft?.id;
        const err = r.notCreated?.draft;
        if (id && this.compose) this.compose = { ...this.compose, emailId: id };
        this.composeStatus = id ? `Draft saved at ${new Date().toLocaleTimeString()}` : `The draft could not be saved: ${err?.description ?? err?.type ?? "unknown error"}`;
      } catch (e) {
        this.composeStatus = `The draft could not be saved: ${e instanceof Error ? e.message : String(e)}`;
      }
      this.emit();
    })();
    await this.draftSaving;
    this.draftSaving = null;
  }

  async attach(files: File[]): Promise<void> {
    if (!this.compose) return;
    for (const f of files) {
      const u = { name: f.name, progress: 0 };
      this.uploads = [...this.uploads, u];
      this.emit();
      try {
        const r = await this.jmap.upload(this.accountId, f, (p) => {
          u.progress = p;
          this.emit();
        });
        if (this.compose)
          this.editDraft({ attachments: [...this.compose.attachments, { blobId: r.blobId, name: f.name, type: r.type || f.type || "application/octet-stream", size: r.size }] });
      } catch (e) {
        this.toastError(`${f.name} could not be uploaded: ${e instanceof Error ? e.message : String(e)}`);
      }
      this.uploads = this.uploads.filter((x) => x !== u);
      this.emit();
    }
  }

  /** Sends: the draft is created and submitted in one request. The server destroys the
   * draft (onSuccessDestroyEmail) only once the message was sent and its copy is in Sent;
   * a refusal, a failure or an Undo leaves it in Drafts. What happens is followed through
   * the EmailSubmission (`outgoing`). */
  async send(): Promise<boolean> {
    const d = this.compose;
    const me = this.identity();
    const drafts = this.byRole("drafts");
    if (!d || !me || !drafts || !this.can("send")) return false;
    if (this.draftTimer) clearTimeout(this.draftTimer);
    if (this.draftSaving) await this.draftSaving;
    this.composeStatus = "Sending…";
    this.emit();
    // Tidings files the sent copy in Sent itself (an APPEND) when the Email is not there;
    // the draft is destroyed after that, so Sent holds one copy and nothing is lost.
    try {
      const r = await this.jmap.request([
        ["Email/set", { accountId: this.accountId, create: { draft: draftEmail(d, me, { drafts: drafts.id }) }, ...(d.emailId ? { destroy: [d.emailId] } : {}) }, "e"],
        ["EmailSubmission/set", { accountId: this.accountId, create: { sub: { identityId: me.id, emailId: "#draft" } }, onSuccessDestroyEmail: ["#sub"] }, "s"],
      ]);
      const e = r.get("e");
      const s = r.get("s");
      const err =
        e instanceof MethodError ? e.message
        : s instanceof MethodError ? s.message
        : (() => {
            const ne = (e?.notCreated as Record<string, { type: string; description?: string }> | null)?.draft;
            const ns = (s?.notCreated as Record<string, { type: string; description?: string }> | null)?.sub;
            const x = ne ?? ns;
            return x ? x.description ?? x.type : "";
          })();
      // The draft just made is the compose's draft now (saved again, it replaces it).
      const made = (e instanceof MethodError ? undefined : (e?.created as Record<string, { id: Id }> | null)?.draft?.id) ?? null;
      if (err) {
        if (made && this.compose) this.compose = { ...this.compose, emailId: made };
        this.composeStatus = `Not sent: ${err}. The message is kept in Drafts.`;
        this.emit();
        return false;
      }
      const created = (s as Record<string, unknown>).created as Record<string, Submission> | null;
      const sub = created?.sub;
      this.compose = null;
      // Not "sent" yet: queued in the server's undo window. What happens next comes from
      // the EmailSubmission itself (push), in the server's words.
      this.outgoing = sendState({ undoStatus: "pending", deliveryStatus: null, ...sub, id: sub?.id ?? "" }, d.subject);
      this.showOutgoing();
      this.followOutgoing();
      return true;
    } catch (e) {
      this.composeStatus = `Not sent: ${e instanceof Error ? e.message : String(e)}`;
      this.emit();
      return false;
    }
  }

  /** Shows the outgoing message's state (in the toast, with Undo while possible). */
  private showOutgoing(): void {
    const o = this.outgoing;
    if (!o) return;
    this.toast = { text: describe(o, Date.now()), undo: o.canUndo ? () => void this.cancelSend() : undefined, error: isError(o), send: true };
    this.emit();
  }

  /** While the message is not settled: the undo countdown each second, and a look at the
   * submission every few seconds besides push (bounded: it stops once settled, or after
   * OUTGOING_TICKS). */
  private followOutgoing(): void {
    if (this.outgoingTimer) clearInterval(this.outgoingTimer);
    let ticks = 0;
    this.outgoingTimer = setInterval(() => {
      ticks++;
      const o = this.outgoing;
      if (!o || settled(o) || ticks > OUTGOING_TICKS) {
        if (this.outgoingTimer) clearInterval(this.outgoingTimer);
        this.outgoingTimer = null;
        return;
      }
      if (this.toast?.send) this.showOutgoing();
      if (ticks % 3 === 0) void this.followSend();
    }, 1000);
  }

  /** Reads the outgoing message's EmailSubmission again. */
  async followSend(): Promise<void> {
    const o = this.outgoing;
    if (!o?.submissionId) return;
    try {
      const r = await this.jmap.call<{ list: Submission[] }>("EmailSubmission/get", {
        accountId: this.accountId, ids: [o.submissionId], properties: ["undoStatus", "sendAt", "deliveryStatus"],
      });
      const sub = r.list[0];
      if (!sub || this.outgoing?.submissionId !== o.submissionId) return;
      const next = sendState(sub, o.subject);
      if (next.phase === o.phase && next.detail === o.detail && next.canUndo === o.canUndo) return;
      this.outgoing = next;
      // A change is shown again even if the previous toast was dismissed.
      this.showOutgoing();
    } catch (e) {
      this.report(e);
    }
  }

  /** Undo: cancels the submission in its undo window (RFC 8621 7.5); the message stays in
   * (or goes back to) Drafts. */
  async cancelSend(): Promise<void> {
    const o = this.outgoing;
    if (!o?.canUndo) return;
    try {
      const r = await this.jmap.call<{ updated?: Record<string, unknown> | null; notUpdated?: Record<string, { type: string; description?: string }> | null }>(
        "EmailSubmission/set",
        { accountId: this.accountId, update: { [o.submissionId]: { undoStatus: "canceled" } } },
      );
      const refused = r.notUpdated?.[o.submissionId];
      if (refused) this.toastError(refused.type === "cannotUnsend" ? "Too late to undo: the message is being sent." : `Could not undo: ${refused.description ?? refused.type}`);
    } catch (e) {
      this.report(e);
    }
    await this.followSend();
  }

  async discardDraft(): Promise<void> {
    const d = this.compose;
    if (this.draftTimer) clearTimeout(this.draftTimer);
    if (this.draftSaving) await this.draftSaving;
    this.compose = null;
    this.emit();
    const id = d?.emailId;
    if (id) await this.jmap.call("Email/set", { accountId: this.accountId, destroy: [id] }).catch(() => undefined);
  }

  /** Closes the composer, keeping the draft on the server. */
  async closeCompose(): Promise<void> {
    if (this.draftTimer) clearTimeout(this.draftTimer);
    if (this.compose && (this.compose.body.trim() || this.compose.subject.trim() || this.compose.to.trim())) await this.saveDraft();
    this.compose = null;
    this.emit();
  }

  // --- desktop notifications (optional, for new mail in Inbox) -------------------------------

  notifications = readPref("tidings.notify") === "1";

  async setNotifications(on: boolean): Promise<void> {
    if (on && typeof Notification !== "undefined" && Notification.permission !== "granted") {
      on = (await Notification.requestPermission()) === "granted";
    }
    this.notifications = on;
    writePref("tidings.notify", on ? "1" : "0");
    this.emit();
  }

  private notifyNew(created: Email[]): void {
    const inbox = this.byRole("inbox")?.id;
    if (!this.notifications || !inbox || typeof Notification === "undefined" || Notification.permission !== "granted") return;
    if (typeof document !== "undefined" && !document.hidden) return;
    for (const e of created.filter((x) => x.mailboxIds[inbox] && !x.keywords.$seen).slice(0, 3)) {
      const from = e.from?.[0];
      new Notification(from?.name || from?.email || "New mail", { body: e.subject ?? "", tag: e.id });
    }
  }

  // --- feedback ---------------------------------------------------------------------------------

  toastError(text: string): void {
    this.toast = { text, error: true };
    this.emit();
  }

  private report(e: unknown): void {
    if (e instanceof HttpError && e.status === 401) {
      this.push?.stop();
      this.phase = "signin";
    } else if (e instanceof HttpError || e instanceof TypeError) {
      this.connection = navigator.onLine === false ? "offline" : "connecting";
    } else {
      this.toastError(e instanceof Error ? e.message : String(e));
    }
    this.emit();
  }
}

function mark(name: string): void {
  if (typeof performance !== "undefined" && typeof performance.mark === "function") performance.mark(name);
}

function readPref(key: string): string | null {
  try {
    return localStorage.getItem(key);
  } catch {
    return null;
  }
}

function writePref(key: string, value: string): void {
  try {
    localStorage.setItem(key, value);
  } catch {
    /* private mode */
  }
}

interface Boot {
  accountId: Id;
  apiUrl: string;
}

/** The account and API URL of the last visit (not secret: ids and a path). */
function readBoot(): Boot | null {
  try {
    const v = JSON.parse(localStorage.getItem("tidings.boot") ?? "null") as Partial<Boot> | null;
    if (!v || typeof v.accountId !== "string" || typeof v.apiUrl !== "string" || !v.accountId) return null;
    // Only ever our own origin (the cookie must not go anywhere else).
    if (new URL(v.apiUrl, location.href).origin !== location.origin) return null;
    return { accountId: v.accountId, apiUrl: v.apiUrl };
  } catch {
    return null;
  }
}

function writeBoot(b: Boot): void {
  writePref("tidings.boot", JSON.stringify(b));
}

function readTrusted(): string[] {
  try {
    const v = JSON.parse(localStorage.getItem("tidings.trustedSenders") ?? "[]") as unknown;
    return Array.isArray(v) ? v.filter((x): x is string => typeof x === "string") : [];
  } catch {
    return [];
  }
}
