// Acting on mail (only when the server has Email/set): flags, read state, moves, Trash
// and deletion. Each change is shown at once (optimistic), sent, and rolled back with a
// toast when the server refuses it; the last one can be undone.

import { MethodError } from "../jmap";
import type { Email, Id } from "../jmap-types";
import { Optimistic, patchEmail } from "../model";
import type { MailApp } from "../state";
import { LIST_PROPS } from "./list";

export class Actions {
  optimistic = new Optimistic();
  private lastUndo: (() => Promise<void>) | null = null;

  constructor(private app: MailApp) {}

  /** The Emails with an optimistic update still waiting: they keep their local version. */
  pending(): Set<Id> {
    const mine = new Set<Id>();
    for (const p of this.optimistic.pending.values()) for (const id of p.before.keys()) mine.add(id);
    return mine;
  }

  /** Applies `patches` locally, sends them, and rolls back what the server refuses. */
  private async update(patches: Map<Id, Record<string, unknown>>, removeFromList: Id[], label: string, undo: (() => Promise<void>) | null): Promise<boolean> {
    const seq = this.optimistic.apply(this.app.list.cache, this.app.list.model, patches);
    if (removeFromList.length) {
      const gone = new Set(removeFromList);
      const ids = this.app.list.model.ids.filter((id) => id === undefined || !gone.has(id));
      const n = this.app.list.model.ids.length - ids.length;
      this.app.list.model = { ids, total: this.app.list.model.total - n, queryState: this.app.list.model.queryState };
      for (const id of gone) this.app.list.selected.delete(id);
      for (const p of this.app.list.parts.values()) {
        const n = p.emails.length;
        p.emails = p.emails.filter((e) => !gone.has(e.id));
        p.total -= n - p.emails.length;
      }
      this.app.list.cursor = Math.min(this.app.list.cursor, Math.max(0, this.app.list.model.total - 1));
    }
    this.app.reader.patchOpen(patches);
    this.app.emit();
    const update: Record<Id, Record<string, unknown>> = {};
    for (const [id, p] of patches) update[id] = p;
    // Threads fetched for reading carry the change too (a refusal drops them below).
    for (const [id, t] of this.app.reader.bodies)
      if (t.emails.some((e) => patches.has(e.id)))
        this.app.reader.bodies.set(id, { ...t, emails: t.emails.map((e) => { const p = patches.get(e.id); return p ? { ...e, ...patchEmail(e, p) } : e; }) });
    let refused: Id[] = [];
    let why = "";
    // One Email/set per account the Emails belong to, in one request.
    const byAccount = new Map<Id, Record<Id, Record<string, unknown>>>();
    for (const [id, p] of Object.entries(update)) {
      const acc = this.app.list.account(id);
      byAccount.set(acc, { ...byAccount.get(acc), [id]: p });
    }
    const accounts = [...byAccount.keys()];
    try {
      const before = this.app.live.emailState;
      const tag = (i: number) => (i === 0 ? "0" : `u${i}`);
      const r = await this.app.jmap.request(accounts.map((accountId, i) => ["Email/set", { accountId, update: byAccount.get(accountId) }, tag(i)]));
      const answers = accounts.map((_, i) => r.get(tag(i), "Email/set"));
      for (const [i, a] of answers.entries()) {
        if (!a || a instanceof MethodError) {
          refused.push(...Object.keys(byAccount.get(accounts[i] ?? "") ?? {}));
          why ||= a instanceof MethodError ? a.description ?? a.type : "";
          continue;
        }
        refused.push(...Object.keys(a.notUpdated ?? {}));
        const first = Object.values(a.notUpdated ?? {})[0];
        why ||= first ? first.description ?? first.type : "";
      }
      // Our own change of keywords, made on top of the state we hold, in a list whose
      // filter does not look at keywords: the Emails are what we patched and the list
      // did not move, so the push it causes needs no Email/changes round (the mailbox
      // counts are still refreshed). Anything else follows the push as usual.
      const keywordsOnly = [...patches.values()].every((p) => Object.keys(p).every((k) => k.startsWith("keywords/")));
      const only = answers.length === 1 && accounts[0] === this.app.accountId && !this.app.list.view.unified ? answers[0] : undefined;
      if (only && !(only instanceof MethodError) && !refused.length && keywordsOnly && !this.app.list.view.search.trim() && only.oldState && only.oldState === before && this.app.live.emailState === before && only.newState)
        this.app.live.emailState = only.newState;
    } catch (e) {
      refused = [...patches.keys()];
      why = e instanceof Error ? e.message : String(e);
    }
    if (refused.length) {
      for (const [id, t] of this.app.reader.bodies) if (t.emails.some((e) => refused.includes(e.id))) this.app.reader.bodies.delete(id);
      const list = this.optimistic.rollback(this.app.list.cache, seq, refused);
      if (list && removeFromList.length) this.app.list.model = list;
      this.app.reader.patchOpen(new Map(refused.map((id) => [id, {}])));
      this.app.toasts.error(`The server refused to ${label}${why ? `: ${why}` : ""}. It has been undone.`);
      this.app.emit();
      return false;
    }
    this.optimistic.commit(seq);
    if (undo) {
      this.lastUndo = undo;
      this.app.toasts.current = { text: `${label[0]?.toUpperCase()}${label.slice(1)}: done.`, undo: () => void this.undo() };
      this.app.emit();
    }
    return true;
  }

  async undo(): Promise<void> {
    const u = this.lastUndo;
    this.lastUndo = null;
    this.app.toasts.current = null;
    this.app.emit();
    if (u) await u();
  }

  async setKeyword(ids: Id[], keyword: string, on: boolean, withUndo = true): Promise<void> {
    if (!this.app.can("read") || ids.length === 0) return;
    const patches = new Map(ids.map((id) => [id, { [`keywords/${keyword}`]: on ? true : null }]));
    const label = keyword === "$seen" ? (on ? "mark as read" : "mark as unread") : on ? "flag" : "unflag";
    if (keyword === "$seen") this.moveUnreadCounts(ids, on);
    const ok = await this.update(patches, [], label, withUndo ? () => this.setKeyword(ids, keyword, !on, false) : null);
    // Refused: the server's counts, not ours.
    if (!ok && keyword === "$seen") await Promise.all([...new Set(ids.map((id) => this.app.list.account(id)))].map((a) => this.app.folders.loadMailboxes(a))).then(() => this.app.emit(), () => undefined);
  }

  /** The unread counts of the mailboxes holding these Emails, moved at once (the
   * server's counts follow with the next mailbox refresh). */
  private moveUnreadCounts(ids: Id[], seen: boolean): void {
    const delta = new Map<Id, number>();
    for (const id of ids) {
      const e = this.app.list.cache.get(id);
      if (!e || !!e.keywords.$seen === seen) continue;
      for (const m of Object.keys(e.mailboxIds)) delta.set(m, (delta.get(m) ?? 0) + (seen ? -1 : 1));
    }
    if (delta.size)
      for (const [acc, box] of this.app.folders.byAccount)
        this.app.folders.put(
          acc,
          box.list.map((m) => {
            const d = delta.get(m.id);
            return d ? { ...m, unreadEmails: Math.max(0, m.unreadEmails + d) } : m;
          }),
          box.state,
        );
  }

  /** Marks the targets (whole conversations when they are on) read or unread. */
  async mark(keyword: "$seen" | "$flagged", on: boolean, ids = this.app.list.targets()): Promise<void> {
    await this.setKeyword(await this.expand(ids), keyword, on);
  }

  async toggle(keyword: "$seen" | "$flagged", ids = this.app.list.targets()): Promise<void> {
    // The state of the row decides (a flagged conversation unflags as a whole).
    const rowOn = ids.every((id) => this.app.list.cache.get(id)?.keywords[keyword]);
    ids = await this.expand(ids);
    const es = ids.map((id) => this.app.list.cache.get(id)).filter((e): e is Email => !!e);
    if (this.app.list.view.collapseThreads && !this.app.list.view.unified) {
      await this.setKeyword(es.map((e) => e.id), keyword, !rowOn);
      return;
    }
    const allOn = es.length > 0 && es.every((e) => e.keywords[keyword]);
    await this.setKeyword(es.map((e) => e.id), keyword, !allOn);
  }

  /** With conversations on, a row stands for its thread: the Emails of those threads (in
   * the mailbox shown, when one is), fetched into the cache. */
  async expand(ids: Id[]): Promise<Id[]> {
    if (!this.app.list.view.collapseThreads || this.app.list.view.unified || ids.length === 0) return ids;
    const threads = [...new Set(ids.map((id) => this.app.list.cache.get(id)?.threadId).filter((t): t is Id => !!t))];
    if (!threads.length) return ids;
    // Conversations are shown in one account's folders only (never a unified view).
    const accountId = this.app.list.account(ids[0] ?? "");
    const r = await this.app.jmap
      .request([
        ["Thread/get", { accountId, ids: threads }, "t"],
        ["Email/get", { accountId, "#ids": { resultOf: "t", name: "Thread/get", path: "/list/*/emailIds" }, properties: LIST_PROPS }, "g"],
      ])
      .catch(() => null);
    const g = r?.get("g", "Email/get");
    if (!g || g instanceof MethodError) return ids;
    const mine = this.pending();
    const mb = this.app.list.view.search ? null : this.app.list.view.mailboxId;
    const out = new Set(ids);
    this.app.list.keep(accountId, g.list, mine);
    for (const e of g.list) {
      if (!mb || (this.app.list.cache.get(e.id) ?? e).mailboxIds[mb]) out.add(e.id);
    }
    return [...out];
  }

  async move(ids: Id[], to: Id, label = `move to ${this.app.folders.mailbox(to)?.name ?? "the folder"}`): Promise<void> {
    if (!this.app.can("move") || ids.length === 0) return;
    const from = this.app.list.view.search ? null : this.app.list.view.mailboxId;
    ids = await this.expand(ids);
    // A mailbox holds its own account's Emails only.
    const toAccount = this.app.folders.accountOf(to);
    if (toAccount) {
      const all = ids.length;
      ids = ids.filter((id) => this.app.list.account(id) === toAccount);
      if (ids.length < all) this.app.toasts.error(`Only ${this.app.accountName(toAccount)}'s messages can go to its folders: ${all - ids.length} stayed where they are.`);
      if (!ids.length) return;
    }
    // Only what is in the mailbox shown moves (a thread's replies in Sent stay there).
    const here = from ? ids.filter((id) => this.app.list.cache.get(id)?.mailboxIds[from]) : ids;
    if (here.length) ids = here;
    const es = ids.map((id) => this.app.list.cache.get(id)).filter((e): e is Email => !!e);
    const patches = new Map<Id, Record<string, unknown>>();
    const back = new Map<Id, Record<string, boolean>>();
    for (const e of es) {
      back.set(e.id, { ...e.mailboxIds });
      patches.set(e.id, { mailboxIds: { [to]: true } });
    }
    const leaves = (from && from !== to) || this.app.list.view.unified ? es.map((e) => e.id) : [];
    if (this.app.reader.open && leaves.includes(this.app.reader.open.emailId)) this.app.reader.open = null;
    await this.update(patches, leaves, label, async () => {
      const undo = new Map<Id, Record<string, unknown>>();
      for (const [id, m] of back) undo.set(id, { mailboxIds: m });
      await this.update(undo, [], "undo the move", null);
      await this.app.live.refresh();
    });
  }

  /** The targets by account (a unified view mixes them). */
  private byAccount(ids: Id[]): Map<Id, Id[]> {
    const out = new Map<Id, Id[]>();
    for (const id of ids) {
      const acc = this.app.list.account(id);
      out.set(acc, [...(out.get(acc) ?? []), id]);
    }
    return out;
  }

  async archive(ids = this.app.list.targets()): Promise<void> {
    for (const [acc, some] of this.byAccount(ids)) {
      const a = this.app.folders.byRole("archive", acc);
      if (a) await this.move(some, a.id, "archive");
      else this.app.toasts.error(`There is no Archive folder in ${this.app.accountName(acc)}.`);
    }
  }

  async remove(ids = this.app.list.targets()): Promise<void> {
    if (!this.app.can("delete") || ids.length === 0) return;
    const groups = this.byAccount(ids);
    if (groups.size > 1 || this.app.list.view.unified) {
      for (const [acc, some] of groups) {
        const t = this.app.folders.byRole("trash", acc);
        if (t) await this.move(some, t.id, "move to Trash");
      }
      return;
    }
    const trash = this.app.folders.byRole("trash", [...groups.keys()][0]);
    if (trash && this.app.list.view.mailboxId !== trash.id) return this.move(ids, trash.id, "move to Trash");
    ids = await this.expand(ids);
    if (trash) ids = ids.filter((id) => this.app.list.cache.get(id)?.mailboxIds[trash.id]);
    if (!confirm(`Delete ${ids.length} message${ids.length > 1 ? "s" : ""} for good?`)) return;
    const gone = new Set(ids);
    const before = this.app.list.model;
    this.app.list.model = { ids: this.app.list.model.ids.filter((id) => id === undefined || !gone.has(id)), total: this.app.list.model.total - ids.length, queryState: this.app.list.model.queryState };
    if (this.app.reader.open && gone.has(this.app.reader.open.emailId)) this.app.reader.open = null;
    this.app.list.selected.clear();
    this.app.emit();
    try {
      const r = await this.app.jmap.call("Email/set", { accountId: this.app.list.account(ids[0] ?? ""), destroy: ids });
      if (Object.keys(r.notDestroyed ?? {}).length) throw new Error("refused");
      this.app.toasts.current = { text: `Deleted ${ids.length} for good.` };
    } catch {
      this.app.list.model = before;
      this.app.toasts.error("The server refused to delete. Nothing was deleted.");
    }
    this.app.emit();
  }
}
