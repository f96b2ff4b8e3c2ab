// Start-up and the Session: the first screen in as few round trips as possible (the
// Session, then one JMAP request for the probe of optional methods, the list and the
// mailboxes), sign-in and sign-out, and the accounts' sync status (Tidings' own account
// capability), followed while an account's first sync runs.

import { type Answers, HttpError, MethodError, Push, type Invocation, TIDINGS_SYNC, signOut } from "../jmap";
import type { Id, SyncInfo } from "../jmap-types";
import type { MailApp } from "../state";
import { mark, readPref, writePref } from "./prefs";

export class Boot {
  /** Each account's sync status, from the Session. */
  sync: Record<Id, SyncInfo> = {};
  private following = false;
  /** How often the Session is read again while an account's first sync runs. */
  syncPollMs = 1000;

  constructor(private app: MailApp) {}

  async start(): Promise<void> {
    // The first screen needs the Session (which account, which URLs) and then one JMAP
    // request. The account and API URL of the last visit are remembered, so on a return
    // visit both go out at once and the list does not wait for the Session's round trip;
    // the Session still decides: if it names another account or URL, that answer is
    // dropped and the request is made again.
    const boot = readBoot();
    let early: Promise<Answers | Error> | null = null;
    let earlyGuess = "";
    if (boot) {
      this.app.accountId = boot.accountId;
      earlyGuess = this.guessMailbox();
      early = this.app.jmap.request(this.firstCalls(earlyGuess), boot.apiUrl).catch((e: unknown) => (e instanceof Error ? e : new Error(String(e))));
    }
    try {
      this.app.session = await this.app.jmap.loadSession();
      mark("tidings:session");
    } catch (e) {
      if (e instanceof HttpError && e.status === 401) {
        this.app.phase = "signin";
      } else {
        this.app.phase = "error";
        this.app.fatal = "The server cannot be reached. Retrying…";
        setTimeout(() => void this.start(), 3000);
      }
      this.app.emit();
      return;
    }
    this.app.accountId =
      this.app.session.primaryAccounts["urn:ietf:params:jmap:mail"] ?? Object.keys(this.app.session.accounts)[0] ?? "";
    this.readSync();
    void this.followSync();
    if (!this.app.accountId) {
      // No mail account yet: the first screen is the Add-account one.
      this.app.phase = "setup";
      this.app.emit();
      return;
    }
    // Back from a provider's sign-in (`#/accounts?added=…` or `?error=…`): show what
    // happened, and follow the new account's first sync.
    if (location.hash.startsWith("#/accounts")) {
      if (new URLSearchParams(location.hash.split("?")[1] ?? "").get("error")) this.app.accountsOpen = true;
      setTimeout(() => void this.reloadSession(), 0);
    }
    writeBoot({ accountId: this.app.accountId, apiUrl: this.app.session.apiUrl });
    // One request for everything the first screen needs: which optional methods exist,
    // the mailboxes, the identities and, when the mailbox is known (the URL, or the one
    // opened last time), its first window of messages.
    let guess: string;
    let first: Answers;
    try {
      const same = early && boot && boot.accountId === this.app.accountId && boot.apiUrl === this.app.session.apiUrl;
      const got = same ? await early : null;
      if (got && !(got instanceof Error)) {
        guess = earlyGuess;
        first = got;
      } else {
        guess = this.guessMailbox();
        first = await this.app.jmap.request(this.firstCalls(guess));
      }
    } catch (e) {
      this.app.phase = "error";
      this.app.fatal = "The server cannot be reached. Retrying…";
      this.app.emit();
      setTimeout(() => void this.start(), 3000);
      return void e;
    }
    mark("tidings:first-response");
    this.app.jmap.readProbe(first);
    if (guess) {
      // The list first: the mailboxes (whose counts cost the server a pass over the
      // mailbox) come in a second request right after it is on screen.
      const q = first.get("q", "Email/query");
      this.app.phase = "ready";
      if (q && !(q instanceof MethodError)) {
        if (location.hash !== `#/mailbox/${guess}`) history.replaceState(null, "", `#/mailbox/${guess}`);
        this.app.list.applyWindow(first, this.app.list.queryKey, 0);
      }
      this.app.emit();
      mark("tidings:list");
      let side: Answers;
      try {
        side = await this.app.jmap.request(this.sidebarCalls());
      } catch (e) {
        this.app.report(e);
        return;
      }
      if (!this.readSidebar(side)) return;
      if (!this.app.folders.mailbox(guess) || !q || q instanceof MethodError) {
        const start = this.app.folders.byRole("inbox") ?? this.app.folders.mailboxes[0];
        if (start) await this.app.list.selectMailbox(start.id);
      }
      this.app.emit();
    } else {
      if (!this.readSidebar(first)) return;
      this.app.phase = "ready";
      const start = this.app.folders.byRole("inbox") ?? this.app.folders.mailboxes[0];
      this.app.emit();
      if (start) await this.app.list.selectMailbox(start.id);
    }
    this.app.push = new Push(this.app.session, {
      onChange: (c) => void this.app.live.onPush(c),
      onStatus: (s) => {
        this.app.connection = s;
        this.app.emit();
      },
      pollMs: 10_000,
    });
    this.app.push.start();
  }

  /** The mailbox to open first: the one in the URL, else the one opened last time. */
  private guessMailbox(): string {
    const hash = decodeURIComponent(location.hash.replace(/^#\/?/, ""));
    return (hash.startsWith("mailbox/") ? hash.slice(8) : "") || readPref(`tidings.mailbox.${this.app.accountId}`) || "";
  }

  /** The calls of the first request; with a mailbox, the view is set to it. */
  private firstCalls(guess: string): Invocation[] {
    const calls: Invocation[] = [...this.app.jmap.probeCalls(this.app.accountId)];
    if (!guess) return [...calls, ...this.sidebarCalls()];
    this.app.list.view = { ...this.app.list.view, mailboxId: guess };
    this.app.list.filter = this.app.list.buildFilter();
    this.app.list.queryKey = JSON.stringify(this.app.list.queryArgs());
    return [...calls, ...this.app.list.windowCalls(0)];
  }

  private sidebarCalls(): Invocation[] {
    return [
      ["Mailbox/get", { accountId: this.app.accountId, ids: null }, "mb"],
      ["Identity/get", { accountId: this.app.accountId }, "ident"],
    ];
  }

  /** Takes the mailboxes and identities; false (and the error shown) without mailboxes. */
  private readSidebar(r: Answers): boolean {
    const mb = r.get("mb", "Mailbox/get");
    if (!mb || mb instanceof MethodError) {
      this.app.phase = "error";
      this.app.fatal = "The mailboxes could not be read.";
      this.app.emit();
      return false;
    }
    this.app.folders.mailboxes = mb.list;
    this.app.folders.mailboxState = mb.state;
    const ident = r.get("ident", "Identity/get");
    if (ident && !(ident instanceof MethodError)) this.app.composer.identities = ident.list;
    return true;
  }

  async signedIn(): Promise<void> {
    this.app.phase = "loading";
    this.app.emit();
    await this.start();
  }

  async signOut(): Promise<void> {
    this.app.push?.stop();
    await this.app.notifications.forgetDevice();
    await signOut().catch(() => undefined);
    writePref("tidings.boot", "null");
    location.hash = "";
    location.reload();
  }

  /** Takes each account's sync status from the Session. */
  readSync(): void {
    if (!this.app.session) return;
    // Rebuilt, not merged: a removed account's status must not linger.
    const sync: Record<Id, SyncInfo> = {};
    for (const [id, a] of Object.entries(this.app.session.accounts)) {
      const s = a.accountCapabilities[TIDINGS_SYNC];
      if (s) sync[id] = s;
    }
    this.sync = sync;
  }

  /** Reads the Session again (an account was added, edited or removed), then follows
   * the accounts still syncing. */
  async reloadSession(): Promise<void> {
    try {
      this.app.session = await this.app.jmap.loadSession();
      this.readSync();
    } catch (e) {
      this.app.report(e);
    }
    this.app.emit();
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
        this.app.session = await this.app.jmap.loadSession();
        this.readSync();
        this.app.emit();
      }
    } catch (e) {
      this.app.report(e);
    } finally {
      this.following = false;
    }
  }
}

interface BootHint {
  accountId: Id;
  apiUrl: string;
}

/** The account and API URL of the last visit (not secret: ids and a path). */
function readBoot(): BootHint | null {
  try {
    const v = JSON.parse(localStorage.getItem("tidings.boot") ?? "null") as Partial<BootHint> | null;
    if (!v || typeof v.accountId !== "string" || typeof v.apiUrl !== "string" || !v.accountId) return null;
    // Only ever our own origin (the cookie must not go anywhere else).
    if (new URL(v.apiUrl, location.href).origin !== location.origin) return null;
    return { accountId: v.accountId, apiUrl: v.apiUrl };
  } catch {
    return null;
  }
}

function writeBoot(b: BootHint): void {
  writePref("tidings.boot", JSON.stringify(b));
}
