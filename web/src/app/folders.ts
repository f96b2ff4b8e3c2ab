// The mailboxes (RFC 8621 2): the list the sidebar shows with its counts, found by id or
// role, kept current from Mailbox/changes, and created, renamed and deleted through
// Mailbox/set when the server has it.

import { type Answers, MethodError } from "../jmap";
import type { Id, Mailbox } from "../jmap-types";
import type { MailApp } from "../state";

export class Folders {
  mailboxes: Mailbox[] = [];
  mailboxState = "";

  constructor(private app: MailApp) {}

  mailbox(id: Id | null): Mailbox | undefined {
    return this.mailboxes.find((m) => m.id === id);
  }

  byRole(role: string): Mailbox | undefined {
    return this.mailboxes.find((m) => m.role === role);
  }

  async loadMailboxes(): Promise<void> {
    const r = await this.app.jmap.call("Mailbox/get", {
      accountId: this.app.accountId,
      ids: null,
    });
    this.mailboxes = r.list;
    this.mailboxState = r.state;
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
