// Live updates: a push (RFC 8620 7.1) or a poll says which types changed; the refresh
// reads only what moved past the states held here, in one request of /changes,
// queryChanges and the Emails they name (never a reload of the list), one refresh at a
// time, and patches the list, the mailboxes and the open thread. The other accounts'
// mailboxes (their counts in the sidebar) are read again when theirs change; a unified
// view reads again the loaded start of each account whose Emails changed; an account the
// client does not know yet (added elsewhere) makes it read the Session again.

import { MethodError, type Invocation } from "../jmap";
import type { Email, Id, TypeStates } from "../jmap-types";
import { applyEmailChanges, applyQueryChanges, contiguousEnd } from "../model";
import { settled } from "../outgoing";
import type { MailApp } from "../state";
import { LIST_PROPS, PAGE } from "./list";

/** Which parts a refresh reads again. */
export interface Wanted {
  mailboxes: boolean;
  emails: boolean;
}

const MAILBOX_QUIET = 400;
const MAILBOX_LATEST = 2000;

export class Live {
  /** The Email state the list and the cache are at. */
  emailState = "";
  private refreshing: Promise<void> | null = null;
  private refreshAgain: Wanted | null = null;
  private mailboxTimer: ReturnType<typeof setTimeout> | null = null;
  private mailboxFirst = 0;
  private noQueryChanges = false;
  /** The Email state of each account's part of a unified view. */
  unifiedStates = new Map<Id, string>();
  /** Accounts a push named before the Session did: the Session is read once for each. */
  private unknown = new Set<Id>();

  constructor(private app: MailApp) {}

  /** What a push says of the accounts other than the current one (and of all of them in
   * a unified view). */
  private others(c: TypeStates | null): void {
    const known = this.app.accountIds();
    for (const [acc, t] of Object.entries(c ?? {})) {
      if (!known.includes(acc)) {
        if (!this.unknown.has(acc)) void this.app.boot.reloadSession();
        this.unknown.add(acc);
        continue;
      }
      if (acc !== this.app.accountId && t.Mailbox !== undefined && t.Mailbox !== this.app.folders.byAccount.get(acc)?.state)
        void this.app.folders.loadMailboxes(acc).then(() => this.app.emit(), (e: unknown) => this.app.report(e));
    }
    if (this.app.list.view.unified) {
      const moved = this.app.list.unifiedAccounts().filter((acc) => {
        if (!c) return true;
        const t = c[acc];
        return !!t && (t.Email !== undefined ? t.Email !== this.unifiedStates.get(acc) : t.EmailDelivery !== undefined);
      });
      if (moved.length) void this.refreshUnified(moved);
    }
  }

  /** Reads again the loaded start of these accounts' parts of the unified view (bounded:
   * at most 500 rows each; what lies further is read again as it is scrolled to). */
  private async refreshUnified(accounts: Id[]): Promise<void> {
    const key = this.app.list.queryKey;
    const calls: Invocation[] = [];
    for (const [i, acc] of accounts.entries()) {
      const n = Math.min(500, Math.max(PAGE, this.app.list.parts.get(acc)?.emails.length ?? 0));
      calls.push(
        ["Email/query", { ...this.app.list.unifiedQuery(acc), position: 0, limit: n, calculateTotal: true }, `q${i}`],
        ["Email/get", { accountId: acc, "#ids": { resultOf: `q${i}`, name: "Email/query", path: "/ids" }, properties: LIST_PROPS }, `g${i}`],
      );
    }
    try {
      const r = await this.app.jmap.request(calls);
      const created = accounts.map((acc, i): [Id, Email[]] => {
        const g = r.get(`g${i}`, "Email/get");
        const had = new Set(this.app.list.parts.get(acc)?.emails.map((e) => e.id));
        return [acc, g && !(g instanceof MethodError) ? g.list.filter((e) => !had.has(e.id)) : []];
      });
      if (this.app.list.applyUnified(r, key, accounts, true)) {
        if (this.app.list.view.unified === "inbox") for (const [acc, list] of created) this.app.notifications.notifyNew(acc, list);
        this.app.emit();
      }
    } catch (e) {
      this.app.report(e);
    }
  }

  /** What a push asks to refresh: only the types whose state moved past ours (RFC 8620
   * 7.1); `null` (a reconnect, a poll) means everything. */
  private wanted(c: TypeStates | null): Wanted {
    if (!c) return { mailboxes: true, emails: true };
    const t = c[this.app.accountId];
    if (!t) return { mailboxes: false, emails: false };
    const emailTypes = ["Email", "Thread", "EmailDelivery"].filter((k) => t[k] !== undefined);
    return {
      mailboxes: t.Mailbox !== undefined && t.Mailbox !== this.app.folders.mailboxState,
      emails: t.Email !== undefined ? t.Email !== this.emailState : emailTypes.length > 0,
    };
  }

  /** What the push channel calls with each StateChange's `changed` (null: anything may
   * have changed). */
  async onPush(c: TypeStates | null): Promise<void> {
    this.others(c);
    void this.app.notifications.onPush(c).catch(() => undefined);
    const sentFrom = this.app.sending.account || this.app.accountId;
    if (this.app.sending.outgoing && !settled(this.app.sending.outgoing) && (!c || c[sentFrom]?.EmailSubmission !== undefined)) void this.app.sending.check();
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
    if (this.app.list.view.unified && what.emails) {
      // The list is the unified view's (`others`); the mailboxes are the current account's.
      what = { mailboxes: true, emails: false };
      if (!this.app.folders.mailboxState) return;
    } else if (!this.emailState || this.app.phase !== "ready") return;
    try {
      // While an account syncs (or fails), its status in the Session changes: follow it.
      if (Object.values(this.app.boot.sync).some((x) => x.status !== "ok")) {
        this.app.session = await this.app.jmap.loadSession();
        this.app.boot.readSync();
        void this.app.boot.followSync();
      }
      await this.refreshAll(what);
      if (this.app.connection === "offline") this.app.connection = "polling";
    } catch (e) {
      this.app.report(e);
    }
    this.app.emit();
  }

  /** Everything a change can touch, in ONE request (back-references carry the ids from
   * one call to the next): mailbox changes and the changed mailboxes, Email changes and
   * the changed Emails, and the list's queryChanges with its new Emails. */
  private async refreshAll(what: Wanted): Promise<void> {
    const acc = this.app.accountId;
    const ref = (resultOf: string, name: string, path: string) => ({ resultOf, name, path });
    const useQc = !this.noQueryChanges && !!this.app.list.model.queryState;
    const upToId = useQc ? contiguousEnd(this.app.list.model) : null;
    const calls: Invocation[] = [];
    if (what.mailboxes)
      calls.push(
        ["Mailbox/changes", { accountId: acc, sinceState: this.app.folders.mailboxState }, "mc"],
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
        ["Email/queryChanges", { ...this.app.list.queryArgs(), sinceQueryState: this.app.list.model.queryState, calculateTotal: true, ...(upToId ? { upToId } : {}) }, "qc"],
        ["Email/get", { accountId: acc, "#ids": ref("qc", "Email/queryChanges", "/added/*/id"), properties: LIST_PROPS }, "ga"],
      );
    if (!calls.length) return;
    const r = await this.app.jmap.request(calls);
    if (what.mailboxes) await this.app.folders.applyMailboxChanges(r);
    if (!what.emails) return;
    const ec = r.get("ec", "Email/changes");
    if (ec instanceof MethodError && ec.type === "cannotCalculateChanges") {
      // Too old to follow: start the list over (rare: a long time offline).
      this.emailState = "";
      await this.app.list.resetList();
      return;
    }
    if (!ec || ec instanceof MethodError) throw ec ?? new MethodError("serverFail", "no Email/changes");
    const created = [...ec.created];
    const updated = [...ec.updated];
    const destroyed = [...ec.destroyed];
    const changed: Email[] = [];
    for (const k of ["gc", "gu"]) {
      const g = r.get(k, "Email/get");
      if (g && !(g instanceof MethodError)) changed.push(...g.list);
    }
    let since = ec.newState;
    // More changes than one page: follow the rest (bounded).
    for (let round = 0; ec.hasMoreChanges && round < 20; round++) {
      const more = await this.app.jmap.request([
        ["Email/changes", { accountId: acc, sinceState: since, maxChanges: 500 }, "ec"],
        ["Email/get", { accountId: acc, "#ids": ref("ec", "Email/changes", "/created"), properties: LIST_PROPS }, "gc"],
        ["Email/get", { accountId: acc, "#ids": ref("ec", "Email/changes", "/updated"), properties: LIST_PROPS }, "gu"],
      ]);
      const m = more.get("ec", "Email/changes");
      if (!m || m instanceof MethodError) break;
      created.push(...m.created);
      updated.push(...m.updated);
      destroyed.push(...m.destroyed);
      for (const k of ["gc", "gu"]) {
        const g = more.get(k, "Email/get");
        if (g && !(g instanceof MethodError)) changed.push(...g.list);
      }
      since = m.newState;
      if (!m.hasMoreChanges) break;
    }
    if (since === this.emailState) return;
    const changedIds = [...new Set([...created, ...updated])];
    // An optimistic update still waiting keeps its local version.
    const mine = this.app.actions.pending();
    const newThreads = new Set<Id>();
    for (const e of changed) {
      if (!this.app.list.cache.has(e.id) && created.includes(e.id)) newThreads.add(e.threadId);
      this.app.list.accountOf.set(e.id, acc);
      if (!mine.has(e.id)) this.app.list.cache.set(e.id, e);
    }
    for (const id of destroyed) this.app.list.cache.delete(id);
    this.app.notifications.notifyNew(acc, changed.filter((e) => created.includes(e.id)));
    for (const t of newThreads) if (this.app.list.threadSizes.has(t)) this.app.list.threadSizes.set(t, (this.app.list.threadSizes.get(t) ?? 0) + 1);
    this.emailState = since;

    if (useQc) {
      // `unknownMethod` once means never again; `cannotCalculateChanges` means this time
      // the changes are applied locally.
      const a = r.get("qc", "Email/queryChanges");
      if (a instanceof MethodError && a.type === "unknownMethod") this.noQueryChanges = true;
      const qc = a && !(a instanceof MethodError) ? a : null;
      const ga = r.get("ga", "Email/get");
      if (qc && ga && !(ga instanceof MethodError)) {
        this.app.list.keep(acc, ga.list, mine);
        this.app.list.model = applyQueryChanges(this.app.list.model, qc, upToId);
        await this.afterListChange(created, changedIds, destroyed);
        return;
      }
    }
    const mailboxId = this.app.list.view.mailboxId;
    const searching = !!this.app.list.view.search.trim();
    const shown = new Set(this.app.list.model.ids.filter((x): x is Id => !!x));
    this.app.list.model = applyEmailChanges(
      this.app.list.model,
      {
        matches: (e) => (searching ? shown.has(e.id) : !!mailboxId && !!e.mailboxIds[mailboxId]),
        collapseThreads: this.app.list.view.collapseThreads,
      },
      this.app.list.cache,
      destroyed,
      changed.filter((e) => !mine.has(e.id)),
    );
    await this.afterListChange(created, changedIds, destroyed);
  }

  private async afterListChange(created: Id[], changed: Id[], destroyed: Id[]): Promise<void> {
    this.app.list.cursor = Math.min(this.app.list.cursor, Math.max(0, this.app.list.model.total - 1));
    for (const id of destroyed) this.app.list.selected.delete(id);
    // Prefetched threads that a change touches are fetched again when opened.
    const gone = new Set([...changed, ...destroyed]);
    const newThreads = new Set(created.map((id) => this.app.list.cache.get(id)?.threadId).filter((t): t is Id => !!t));
    for (const [id, t] of this.app.reader.bodies)
      if (newThreads.has(t.threadId) || t.emails.some((e) => gone.has(e.id))) this.app.reader.bodies.delete(id);
    if (this.app.reader.open) {
      const open = this.app.reader.open;
      // A new message in the thread, or one of it gone: read the thread again. Otherwise
      // the changed Emails' keywords and mailboxes are patched in (no body refetch).
      const joins = newThreads.has(open.threadId);
      const lost = destroyed.some((id) => open.emails.some((e) => e.id === id));
      if (joins || lost) await this.app.reader.openThread(open.emailId, false, false);
      else if (open.emails.some((e) => gone.has(e.id)))
        this.app.reader.open = {
          ...open,
          emails: open.emails.map((e) => {
            const c = gone.has(e.id) ? this.app.list.cache.get(e.id) : undefined;
            return c ? { ...e, keywords: c.keywords, mailboxIds: c.mailboxIds } : e;
          }),
        };
    }
  }
}
