// The application's data layer: one object (`MailApp`) holding what the UI shows, loading
// it through JMAP, keeping it current from push, and acting on mail optimistically.
// Components subscribe and re-render on `emit()`. Actions whose JMAP method the server
// lacks are not offered (`can()`), never simulated.
//
// MailApp itself holds what every part needs (the JMAP client, the Session, the current
// account: the one whose folder is open, the phase of the app, the push connection) and
// one object per part, each in its own file under app/. Every account of the Session is
// shown (its folders, and unified views across them); an Email keeps the account it was
// read from (`list.account(id)`), and every call about it names that account.
//   boot           start-up, sign-in and out, the Session and the accounts' sync status
//   folders        the mailboxes, and creating, renaming, deleting them (Mailbox/set)
//   list           the message list: its query, the windows fetched as it scrolls, the
//                  cursor and the selection, the Emails the list knows (`cache`)
//   live           push and refresh: what changed, read through /changes and queryChanges
//   reader         the open thread, the threads fetched ahead, the sanitised HTML
//   actions        flags, moves, deletion: optimistic, rolled back when refused, Undo
//   composer       the draft being written: saving, attachments, sending
//   sending        the message sent last, followed through its EmailSubmission
//   notifications  desktop notifications of new mail
//   toasts         the one message at the bottom of the screen

import { type Connection, HttpError, Jmap, type Push } from "./jmap";
import type { Id, Session } from "./jmap-types";
import { Actions } from "./app/actions";
import { Boot } from "./app/boot";
import { Composer } from "./app/composer";
import { Folders } from "./app/folders";
import { ListWindow } from "./app/list";
import { Live } from "./app/live";
import { Notifications } from "./app/notifications";
import { Reader } from "./app/reader";
import { Sending } from "./app/sending";
import { Toasts } from "./app/toasts";

export { PAGE } from "./app/list";

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

export class MailApp {
  jmap: Jmap;
  session: Session | null = null;
  phase: "loading" | "signin" | "setup" | "ready" | "error" = "loading";
  /** The accounts screen (add, edit, remove) is open. */
  accountsOpen = false;
  /** The settings screen is open (`#/settings`). */
  settingsOpen = false;
  fatal = "";
  accountId: Id = "";
  connection: Connection = "connecting";
  /** The push channel, once the first screen is up (`Boot.start`). */
  push: Push | null = null;
  private listeners = new Set<() => void>();

  readonly toasts = new Toasts(this);
  readonly boot = new Boot(this);
  readonly folders = new Folders(this);
  readonly list = new ListWindow(this);
  readonly live = new Live(this);
  readonly reader = new Reader(this);
  readonly actions = new Actions(this);
  readonly composer = new Composer(this);
  readonly sending = new Sending(this);
  readonly notifications = new Notifications(this);

  constructor(jmap = new Jmap()) {
    this.jmap = jmap;
    if (typeof window !== "undefined") {
      this.settingsOpen = location.hash === "#/settings";
      // Back (or forward) to or from `#/settings` opens or closes the screen.
      window.addEventListener("popstate", () => {
        const open = location.hash === "#/settings";
        if (open !== this.settingsOpen) {
          this.settingsOpen = open;
          this.emit();
        }
      });
    }
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

  openAccounts(open: boolean): void {
    this.accountsOpen = open;
    this.emit();
    // An account added, renamed or removed there shows at once.
    if (!open) void this.boot.reloadSession();
  }

  openSettings(open: boolean): void {
    this.settingsOpen = open;
    if (open && location.hash !== "#/settings") history.pushState(null, "", "#/settings");
    if (!open && location.hash === "#/settings") history.back();
    this.emit();
  }

  /** The mail accounts of the Session: the primary first, then by name. */
  accountIds(): Id[] {
    if (!this.session) return this.accountId ? [this.accountId] : [];
    const accs = this.session.accounts;
    const primary = this.session.primaryAccounts["urn:ietf:params:jmap:mail"];
    return Object.keys(accs).sort((a, b) => (a === primary ? -1 : b === primary ? 1 : (accs[a]?.name ?? "").localeCompare(accs[b]?.name ?? "")));
  }

  accountName(id: Id): string {
    return this.session?.accounts[id]?.name ?? id;
  }

  /** Makes `id` the current account (a folder of it was opened): the list's Email state
   * is the new account's from its first window on. */
  switchAccount(id: Id): void {
    if (id === this.accountId) return;
    this.accountId = id;
    this.boot.remember();
    this.live.emailState = "";
    this.list.selected.clear();
  }

  /** Shows what went wrong where it belongs: a lost sign-in is the sign-in screen, a
   * lost connection the connection indicator, anything else a toast. */
  report(e: unknown): void {
    if (e instanceof HttpError && e.status === 401) {
      this.push?.stop();
      this.phase = "signin";
    } else if (e instanceof HttpError || e instanceof TypeError) {
      this.connection = navigator.onLine === false ? "offline" : "connecting";
    } else {
      this.toasts.error(e instanceof Error ? e.message : String(e));
    }
    this.emit();
  }
}
