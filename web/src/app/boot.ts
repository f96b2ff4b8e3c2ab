// Start-up and the Session: the first screen in as few round trips as possible (the
// Session, then one JMAP request for the probe of optional methods, the list and the
// mailboxes), sign-in and sign-out, and the accounts' sync status (Tidings' own account
// capability), followed while an account's first sync runs.

import { type Answers, HttpError, MethodError, Push, type Invocation, TIDINGS_SYNC, signOut } from "../jmap";
import type { Id, SyncInfo } from "../jmap-types";
import type { MailApp } from "../state";
import { UNIFIED, type Unified } from "./list";
import { mark, readPref, writePref } from "./prefs";

export class Boot {
  /** Each account's sync status, from the Session. */
  sync: Record<Id, SyncInfo> = {};
  private following = false;
  /** The accounts the push channel was started for. */
  private pushAccounts = "";
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
    }
    // A unified view on a return visit: its request goes out beside the Session's too,
    // for the accounts and with the role mailboxes remembered from the last visit.
    const kind = UNIFIED.find((u) => location.hash === `#/all/${u.kind}`)?.kind;
    const roles = boot && kind ? readRoles() : null;
    let earlyUnified: Promise<Answers | Error> | null = null;
    if (boot && kind && roles && roles.accounts.length > 1) {
      this.app.list.hintRoles = roles.roles;
      this.app.list.view = { ...this.app.list.view, mailboxId: null, search: "", unified: kind };
      earlyUnified = this.app.jmap
        .request([...this.app.jmap.probeCalls(boot.accountId), ...this.app.list.unifiedCalls(roles.accounts)], boot.apiUrl)
        .catch((e: unknown) => (e instanceof Error ? e : new Error(String(e))));
    }
    // Without a mailbox to guess the first request needs every account's, which only
    // the Session names.
    else if (boot && earlyGuess) {
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
    const primary = this.app.session.primaryAccounts["urn:ietf:params:jmap:mail"] ?? Object.keys(this.app.session.accounts)[0] ?? "";
    // The account of the last visit stays the current one while it exists.
    this.app.accountId = boot && this.app.session.accounts[boot.accountId] ? boot.accountId : primary;
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
    if (earlyUnified && kind && roles && boot?.accountId === this.app.accountId && boot.apiUrl === this.app.session.apiUrl && roles.accounts.join(",") === this.app.accountIds().join(",")) {
      const got = await earlyUnified;
      if (!(got instanceof Error) && (await this.startUnified(got, kind, roles.accounts))) return;
    }
    this.app.list.hintRoles = {};
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
        // The mailbox of another account (opened there last): that account's, else Inbox.
        const start = this.app.folders.accountOf(guess) ? { id: guess } : this.app.folders.byRole("inbox") ?? this.app.folders.mailboxes[0];
        if (start) await this.app.list.selectMailbox(start.id);
      }
      this.app.emit();
    } else {
      if (!this.readSidebar(first)) return;
      this.app.phase = "ready";
      const start = this.app.folders.byRole("inbox") ?? this.app.folders.mailboxes[0];
      this.app.emit();
      const unified = UNIFIED.find((u) => location.hash === `#/all/${u.kind}`);
      if (unified && this.app.accountIds().length > 1) await this.app.list.selectUnified(unified.kind);
      else if (start) await this.app.list.selectMailbox(start.id);
    }
    this.startPush();
  }

  /** The first screen of a unified view from its early answer: the list, then the
   * sidebar (every account's mailboxes and identities); a mailbox found to be another one
   * than remembered reads the view again. False when the answer cannot be used. */
  private async startUnified(got: Answers, kind: Unified, accounts: Id[]): Promise<boolean> {
    const q = got.get("q0", "Email/query");
    if (!q || q instanceof MethodError) return false;
    mark("tidings:first-response");
    this.app.jmap.readProbe(got);
    this.app.phase = "ready";
    const key = this.app.list.unifiedKey();
    this.app.list.queryKey = key;
    this.app.list.parts.clear();
    this.app.list.applyUnified(got, key, accounts);
    this.app.emit();
    mark("tidings:list");
    let side: Answers;
    try {
      side = await this.app.jmap.request(this.sidebarCalls());
    } catch (e) {
      this.app.report(e);
      return true;
    }
    if (!this.readSidebar(side)) return true;
    this.app.list.hintRoles = {};
    if (this.app.list.unifiedKey() !== key) await this.app.list.selectUnified(kind);
    this.app.emit();
    this.startPush();
    return true;
  }

  /** The push channel follows the accounts the user has when it connects: it is started
   * again when an account is added or removed. */
  private startPush(): void {
    if (!this.app.session) return;
    this.app.push?.stop();
    this.pushAccounts = this.app.accountIds().join(",");
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

  /** The mailbox to open first: the one in the URL, else the one opened last time (none
   * for a unified view: the sidebar comes first, its mailboxes name each account's). */
  private guessMailbox(): string {
    const hash = decodeURIComponent(location.hash.replace(/^#\/?/, ""));
    if (hash.startsWith("all/")) return "";
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

  /** The mailboxes and identities of every account (`only`: of these). */
  private sidebarCalls(only?: Id[]): Invocation[] {
    const accounts = only ?? this.app.accountIds();
    return accounts.flatMap((accountId, i): Invocation[] => [
      ["Mailbox/get", { accountId, ids: null }, i === 0 && !only ? "mb" : `mb:${accountId}`],
      ["Identity/get", { accountId }, i === 0 && !only ? "ident" : `ident:${accountId}`],
    ]);
  }

  /** Takes the mailboxes and identities; false (and the error shown) without the current
   * account's mailboxes. Another account's failure leaves it without folders. */
  private readSidebar(r: Answers, only?: Id[]): boolean {
    const accounts = only ?? this.app.accountIds();
    for (const [i, acc] of accounts.entries()) {
      const tag = i === 0 && !only ? "" : `:${acc}`;
      const mb = r.get(`mb${tag}`, "Mailbox/get");
      if (mb && !(mb instanceof MethodError)) this.app.folders.put(acc, mb.list, mb.state);
      else if (acc === this.app.accountId) {
        this.app.phase = "error";
        this.app.fatal = "The mailboxes could not be read.";
        this.app.emit();
        return false;
      }
      const ident = r.get(`ident${tag}`, "Identity/get");
      if (ident && !(ident instanceof MethodError)) this.app.composer.identitiesOf.set(acc, ident.list);
    }
    this.rememberRoles();
    return true;
  }

  /** The accounts and their role mailboxes, for the next visit's first request of a
   * unified view (not secret: ids). */
  private rememberRoles(): void {
    const accounts = this.app.accountIds();
    const roles: Record<Id, Record<string, Id>> = {};
    for (const a of accounts) {
      roles[a] = {};
      for (const m of this.app.folders.of(a)) if (m.role && ROLES.includes(m.role)) roles[a][m.role] = m.id;
    }
    writePref("tidings.roles", JSON.stringify({ accounts, roles }));
  }

  /** Remembers the current account for the next visit's first request. */
  remember(): void {
    if (this.app.session) writeBoot({ accountId: this.app.accountId, apiUrl: this.app.session.apiUrl });
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

  /** Reads the Session again (an account was added, edited or removed): a new account's
   * folders and identities are read, a removed one's dropped, the push channel follows
   * the new set; then the accounts still syncing are followed. */
  async reloadSession(): Promise<void> {
    try {
      this.app.session = await this.app.jmap.loadSession();
      this.readSync();
      await this.readAccounts();
    } catch (e) {
      this.app.report(e);
    }
    this.app.emit();
    await this.followSync();
  }

  /** Brings the accounts the client shows in line with the Session. */
  private async readAccounts(): Promise<void> {
    if (!this.app.session || this.app.phase !== "ready") return;
    const now = this.app.accountIds();
    for (const acc of [...this.app.folders.byAccount.keys()])
      if (!now.includes(acc)) {
        this.app.folders.byAccount.delete(acc);
        this.app.composer.identitiesOf.delete(acc);
      }
    if (!now.includes(this.app.accountId) && now[0]) {
      this.app.switchAccount(now[0]);
      const inbox = this.app.folders.byRole("inbox");
      if (inbox) void this.app.list.selectMailbox(inbox.id);
    }
    const added = now.filter((a) => !this.app.folders.byAccount.get(a)?.state);
    if (added.length) this.readSidebar(await this.app.jmap.request(this.sidebarCalls(added)), added);
    if (this.app.push && now.join(",") !== this.pushAccounts) this.startPush();
  }

  /** While an account is `new` or `syncing`, reads its status again: the end of a sync
   * changes no mail, so no push says the status became `ok`, and the progress bar would
   * stay full. Every `syncPollMs` at first, then less often (up to 10 s) as a sync goes
   * on; a failed read is tried again (a restart of the server must not leave the bar
   * behind). Bounded: at most 2000 reads. */
  async followSync(): Promise<void> {
    if (this.following) return;
    this.following = true;
    let failures = 0;
    try {
      for (let i = 0; i < 2000 && Object.values(this.sync).some((x) => x.status === "new" || x.status === "syncing"); i++) {
        const wait = Math.min(10_000, this.syncPollMs * (i < 60 ? 1 : i < 300 ? 3 : 10)) * 2 ** Math.min(failures, 4);
        await new Promise((r) => setTimeout(r, wait));
        try {
          this.app.session = await this.app.jmap.loadSession();
          failures = 0;
        } catch (e) {
          if (e instanceof HttpError && e.status === 401) throw e;
          if (++failures > 20) throw e;
          continue;
        }
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

/** The roles a unified view reads. */
const ROLES = ["inbox", "drafts", "sent", "junk", "trash"];

interface RoleHint {
  accounts: Id[];
  roles: Record<Id, Record<string, Id>>;
}

/** The accounts and role mailboxes of the last visit, when well formed. */
function readRoles(): RoleHint | null {
  try {
    const v = JSON.parse(readPref("tidings.roles") ?? "null") as Partial<RoleHint> | null;
    if (!v || !Array.isArray(v.accounts) || !v.accounts.every((a) => typeof a === "string") || typeof v.roles !== "object" || v.roles === null) return null;
    const roles: Record<Id, Record<string, Id>> = {};
    for (const a of v.accounts) {
      const r = v.roles[a];
      if (!r || typeof r !== "object") return null;
      roles[a] = Object.fromEntries(Object.entries(r).filter(([k, id]) => ROLES.includes(k) && typeof id === "string"));
    }
    return { accounts: v.accounts, roles };
  } catch {
    return null;
  }
}
