// Reading: the open thread, and the threads fetched for reading (the open one and its
// neighbours in the list, fetched ahead so that j/k opens at once), the URL of an HTML
// part's sanitised page, and the senders whose remote images are always shown.

import { type Answers, MethodError, type Invocation } from "../jmap";
import { type FullEmail, type Id, isFullEmail } from "../jmap-types";
import type { MailApp } from "../state";
import { LIST_PROPS } from "./list";

const BODY_PROPS = [
  ...LIST_PROPS, "cc", "bcc", "replyTo", "sentAt", "messageId", "inReplyTo", "references",
  "textBody", "htmlBody", "attachments", "bodyValues", "blobId",
];

const BODIES_KEPT = 24;

export interface OpenThread {
  /** The Email opened (the thread is shown around it). */
  emailId: Id;
  /** The account it belongs to. */
  accountId: Id;
  threadId: Id;
  emails: FullEmail[];
}

export class Reader {
  open: OpenThread | null = null;
  /** Threads fetched for reading (the open one, and its neighbours in the list, fetched
   * ahead), by the Email id opened; at most BODIES_KEPT, oldest dropped first. */
  bodies = new Map<Id, { threadId: Id; emails: FullEmail[] }>();
  private prefetching = new Set<Id>();
  /** Bumped by each open and close the user makes, so a thread read for an earlier one
   * (a refresh in flight when the user closed it) is not drawn over the later choice. */
  private generation = 0;
  /** Senders whose remote images are always shown (kept in this browser). */
  trustedSenders = new Set<string>(readTrusted());

  constructor(private app: MailApp) {}

  /** The request that reads whole threads for reading, from some of their Email ids (of
   * one account). */
  threadCalls(ids: Id[], accountId: Id): Invocation[] {
    return [
      ["Email/get", { accountId, ids, properties: ["threadId"] }, "e"],
      ["Thread/get", { accountId, "#ids": { resultOf: "e", name: "Email/get", path: "/list/*/threadId" } }, "t"],
      [
        "Email/get",
        {
          accountId,
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
  private keepThreads(asked: Id[], r: Answers, accountId: Id): boolean {
    const e = r.get("e", "Email/get");
    const t = r.get("t", "Thread/get");
    const b = r.get("b", "Email/get");
    if (!e || e instanceof MethodError || !b || b instanceof MethodError || !t || t instanceof MethodError) return false;
    const threadOf = new Map(e.list.map((x) => [x.id, x.threadId]));
    const byId = new Map(b.list.filter(isFullEmail).map((x) => [x.id, x]));
    for (const x of b.list) this.app.list.accountOf.set(x.id, accountId);
    for (const th of t.list) {
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
    // A refresh (markRead false) re-reads what is open without claiming the pane.
    const generation = markRead ? ++this.generation : this.generation;
    const base = this.app.list.cache.get(emailId);
    const accountId = this.app.list.account(emailId);
    let got = useFetched ? this.bodies.get(emailId) : undefined;
    if (got) {
      // Most recently used last.
      this.bodies.delete(emailId);
      this.bodies.set(emailId, got);
    } else {
      const r = await this.app.jmap.request(this.threadCalls([emailId], accountId)).catch((e: unknown) => {
        this.app.report(e);
        return null;
      });
      if (!r) return;
      got = this.keepThreads([emailId], r, accountId) ? this.bodies.get(emailId) : undefined;
      // Closed, or another thread opened, while this one was read: that choice stands.
      if (generation !== this.generation) return;
      if (!got) {
        if (!this.open || this.open.emailId !== emailId) this.app.toasts.error("This message could not be opened.");
        return;
      }
    }
    // Thread order (oldest first); messages in Trash are left out unless opened from there.
    const trash = this.app.folders.byRole("trash", accountId)?.id;
    const inTrash = !!trash && this.app.list.view.mailboxId === trash;
    const emails = got.emails
      .filter((e) => inTrash || !trash || !e.mailboxIds[trash] || e.id === emailId)
      // What this client changed since (the list's Emails carry it) wins.
      .map((e) => {
        const c = this.app.list.cache.get(e.id);
        return c && (c.keywords !== e.keywords || c.mailboxIds !== e.mailboxIds) ? { ...e, keywords: c.keywords, mailboxIds: c.mailboxIds } : e;
      });
    this.open = { emailId, accountId, threadId: got.threadId || base?.threadId || "", emails };
    this.app.emit();
    if (markRead && this.app.can("read")) {
      const unread = emails.filter((e) => !e.keywords.$seen).map((e) => e.id);
      if (unread.length) void this.app.actions.setKeyword(unread, "$seen", true, false);
    }
    if (markRead) this.prefetchAround(emailId);
  }

  /** Fetches the threads next to `emailId` in the list (the next ones to be read with
   * j/k or a click below), and warms the cache of their sanitised HTML. */
  private prefetchAround(emailId: Id): void {
    const i = this.app.list.model.ids[this.app.list.cursor] === emailId ? this.app.list.cursor : this.app.list.model.ids.indexOf(emailId);
    if (i < 0) return;
    // One request reads one account's threads: the neighbours of the same account.
    const accountId = this.app.list.account(emailId);
    const want = [i + 1, i - 1, i + 2]
      .map((n) => this.app.list.model.ids[n])
      .filter((id): id is Id => !!id && !this.bodies.has(id) && !this.prefetching.has(id) && this.app.list.account(id) === accountId);
    if (!want.length) return;
    for (const id of want) this.prefetching.add(id);
    void this.app.jmap
      .request(this.threadCalls(want, accountId))
      .then((r) => {
        this.keepThreads(want, r, accountId);
        for (const id of want) {
          const t = this.bodies.get(id);
          const e = t?.emails.find((x) => x.id === id);
          const html = e?.htmlBody.find((p) => p.type === "text/html" && p.blobId);
          if (html?.blobId) void fetch(this.htmlUrl(html.blobId, false, accountId), { credentials: "same-origin", headers: { "X-Tidings-Client": "web" } }).catch(() => undefined);
        }
      })
      .catch(() => undefined)
      .finally(() => {
        for (const id of want) this.prefetching.delete(id);
      });
  }

  /** The sanitised page of an HTML part (see api::web). */
  htmlUrl(blobId: Id, images: boolean, accountId = this.open?.accountId ?? this.app.accountId): string {
    return `/web/html/${encodeURIComponent(accountId)}/${encodeURIComponent(blobId)}${images ? "?images=1" : ""}`;
  }

  closeThread(): void {
    this.generation++;
    this.open = null;
    this.app.emit();
  }

  trustSender(email: string): void {
    this.trustedSenders.add(email.toLowerCase());
    try {
      localStorage.setItem("tidings.trustedSenders", JSON.stringify([...this.trustedSenders]));
    } catch {
      /* private mode */
    }
    this.app.emit();
  }

  patchOpen(patches: Map<Id, Record<string, unknown>>): void {
    if (!this.open) return;
    this.open = {
      ...this.open,
      emails: this.open.emails.map((e) => {
        const c = this.app.list.cache.get(e.id);
        return patches.has(e.id) && c ? { ...e, keywords: c.keywords, mailboxIds: c.mailboxIds } : e;
      }),
    };
  }
}

function readTrusted(): string[] {
  try {
    const v = JSON.parse(localStorage.getItem("tidings.trustedSenders") ?? "[]") as unknown;
    return Array.isArray(v) ? v.filter((x): x is string => typeof x === "string") : [];
  } catch {
    return [];
  }
}
