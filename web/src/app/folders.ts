// The mailboxes (RFC 8621 2) of every account: the lists the sidebar shows with their
// counts, found by id or role, kept current from Mailbox/changes, and created, renamed and
// deleted through Mailbox/set when the server has it. `mailboxes` is the current
// account's (the one whose folder is open); `of(account)` any account's.

import { type Answers, MethodError } from "../jmap";
import type { Id, Mailbox } from "../jmap-types";
import type { MailApp } from "../state";

interface AccountMailboxes {
  list: Mailbox[];
  state: string;
}

export class Folders {
  /** Each account's mailboxes and their Mailbox state. */
  byAccount = new Map<Id, AccountMailboxes>();

  constructor(private app: MailApp) {}

  /** The current account's mailboxes. */
  get mailboxes(): Mailbox[] {
    let m = this.byAccount.get(this.app.accountId);
    if (!m) this.byAccount.set(this.app.accountId, (m = { list: [], state: "" }));
    return m.list;
  }

  set mailboxes(list: Mailbox[]) {
    this.put(this.app.accountId, list, this.mailboxState);
  }

  get mailboxState(): string {
    return this.byAccount.get(this.app.accountId)?.state ?? "";
  }

  set mailboxState(state: string) {
    this.put(this.app.accountId, this.mailboxes, state);
  }

  of(accountId: Id): Mailbox[] {
    return this.byAccount.get(accountId)?.list ?? [];
  }

  put(accountId: Id, list: Mailbox[], state: string): void {
    this.byAccount.set(accountId, { list, state });
  }

  /** The account a mailbox belongs to (mailbox ids are unique across accounts). */
  accountOf(mailboxId: Id): Id | undefined {
    for (const [acc, m] of this.byAccount) if (m.list.some((x) => x.id === mailboxId)) return acc;
    return undefined;
  }

  mailbox(id: Id | null, accountId = this.app.accountId): Mailbox | undefined {
    return this.of(accountId).find((m) => m.id === id);
  }

  byRole(role: string, accountId = this.app.accountId): Mailbox | undefined {
    return this.of(accountId).find((m) => m.role === role);
  }

  async loadMailboxes(accountId = this.app.accountId): Promise<void> {
    const r = await this.app.jmap.call("Mailbox/get", { accountId, ids: null });
    this.put(accountId, r.list, r.state);
  }

  /** Mailbox/changes and the Mailbox/get of what it names, merged into the mailboxes;
   * anything unexpected (too many changes, an error) reads them all again. */
  async applyMailboxChanges(r: Answers): Promise<void> {
    const mc = r.get("mc", "Mailbox/changes");
    const got = ["mgc", "mgu"].map((k) => r.get(k, "Mailbox/get"));
    if (!mc || mc instanceof MethodError || mc.hasMoreChanges || got.some((g) => !g || g instanceof MethodError)) {
      await this.loadMailboxes();
      return;
    }
    const byId = new Map(this.mailboxes.map((m) => [m.id, m]));
    for (const g of got) if (g && !(g instanceof MethodError)) for (const m of g.list) byId.set(m.id, m);
    for (const id of mc.destroyed ?? []) byId.delete(id);
    this.mailboxes = [...byId.values()];
    this.mailboxState = mc.newState;
  }

  async createFolder(name: string, parentId: Id | null = null): Promise<void> {
    await this.mailboxSet({ create: { n: { name, parentId } } }, "create the folder");
  }

  async renameFolder(id: Id, name: string): Promise<void> {
    await this.mailboxSet({ update: { [id]: { name } } }, "rename the folder");
  }

  async deleteFolder(id: Id): Promise<void> {
    await this.mailboxSet({ destroy: [id] }, "delete the folder");
    if (!this.mailbox(id) && this.app.list.view.mailboxId === id) {
      const inbox = this.byRole("inbox");
      if (inbox) await this.app.list.selectMailbox(inbox.id);
    }
  }

  private async mailboxSet(args: Record<string, unknown>, label: string): Promise<void> {
    if (!this.app.can("folders")) return;
    try {
      const r = await this.app.jmap.call("Mailbox/set", {
        accountId: this.app.accountId,
        ...args,
      });
      const err = Object.values(r.notCreated ?? {})[0] ?? Object.values(r.notUpdated ?? {})[0] ?? Object.values(r.notDestroyed ?? {})[0];
      if (err) this.app.toasts.error(`Could not ${label}: ${err.description ?? err.type}`);
    } catch (e) {
      this.app.report(e);
    }
    await this.loadMailboxes();
    this.app.emit();
  }
}
