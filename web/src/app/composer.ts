// Writing mail: the composer's draft (new, reply, reply-all, forward, or a saved draft
// reopened), saved on the server as a draft Email 3 s after the last change (Email/set),
// its attachments (uploaded blobs), and sending it (Email/set and EmailSubmission/set in
// one request; `Sending` follows it from there). Nothing written is lost: a draft that
// cannot be sent stays in Drafts, with the reason.
//
// A draft belongs to the account of its identity (the From): a reply to the account of
// the message, a new message to the current account, and choosing another From moves it.
// An account without an identity is offered to make one (`needIdentity`).

import { MethodError } from "../jmap";
import { type Email, type FullEmail, type GetResponse, type Id, type Identity, isFullEmail } from "../jmap-types";
import { type Draft, type Source, draftEmail, emptyDraft, formatAddress, forwardDraft, replyDraft, withSignature } from "../compose";
import { sendState } from "../outgoing";
import type { MailApp } from "../state";

export class Composer {
  /** The draft being written, while the composer is open. */
  draft: Draft | null = null;
  /** What happened to it last (saved, sending, not sent and why). */
  status = "";
  uploads: { name: string; progress: number }[] = [];
  private timer: ReturnType<typeof setTimeout> | null = null;
  private saving: Promise<void> | null = null;
  /** Each account's identities (RFC 8621 6). */
  identitiesOf = new Map<Id, Identity[]>();
  /** The account a message was to be written from, which has no identity yet: the
   * composer offers to make one. */
  needIdentity: Id | null = null;
  /** What `start` was asked for, run again once the identity exists. */
  private pendingStart: (() => void) | null = null;

  constructor(private app: MailApp) {}

  /** The current account's identities. */
  get identities(): Identity[] {
    return this.identitiesOf.get(this.app.accountId) ?? [];
  }

  set identities(list: Identity[]) {
    this.identitiesOf.set(this.app.accountId, list);
  }

  /** Every identity of every account, with its account (for the From of a draft). */
  allIdentities(): { accountId: Id; identity: Identity }[] {
    return this.app.accountIds().flatMap((accountId) => (this.identitiesOf.get(accountId) ?? []).map((identity) => ({ accountId, identity })));
  }

  /** The account of the draft: its identity's. */
  account(): Id {
    const id = this.draft?.identityId;
    return this.allIdentities().find((x) => x.identity.id === id)?.accountId ?? this.app.accountId;
  }

  identity(): Identity | undefined {
    const all = this.allIdentities().map((x) => x.identity);
    return all.find((i) => i.id === this.draft?.identityId) ?? this.identities[0];
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

  /** Opens the composer: a new message, or a reply / reply-all / forward of the open one,
   * from the account of that message (with the identity it was addressed to). */
  start(kind: "new" | "reply" | "replyAll" | "forward"): void {
    if (!this.app.can("draft")) return;
    const last = this.app.reader.open?.emails[this.app.reader.open.emails.length - 1];
    if (kind !== "new" && !last) return;
    const acc = last && kind !== "new" ? this.app.list.account(last.id) : this.app.accountId;
    const mine = this.identitiesOf.get(acc) ?? [];
    const to = new Set([...(last?.to ?? []), ...(last?.cc ?? [])].map((a) => a.email.toLowerCase()));
    const me = (kind !== "new" ? mine.find((i) => to.has(i.email.toLowerCase())) : undefined) ?? mine[0];
    if (!me) {
      this.needIdentity = acc;
      this.pendingStart = () => this.start(kind);
      this.app.emit();
      return;
    }
    this.needIdentity = null;
    this.pendingStart = null;
    const draft =
      kind === "new" || !last
        ? emptyDraft(me.id)
        : kind === "forward"
          ? forwardDraft(this.source(last), me)
          : replyDraft(this.source(last), me, kind === "replyAll");
    this.draft = withSignature(draft, me);
    this.status = "";
    this.app.emit();
  }

  /** Makes the first identity of an account (Identity/set, RFC 8621 6.3), then opens the
   * composer as it was asked for. */
  async createIdentity(accountId: Id, name: string, email: string): Promise<string> {
    try {
      const r = await this.app.jmap.call("Identity/set", { accountId, create: { i: { name, email } } });
      const err = r.notCreated?.i;
      if (err) return err.type === "forbiddenFrom" ? "The server does not allow sending from this address." : `The identity could not be made: ${err.description ?? err.type}`;
      await this.loadIdentities(accountId);
    } catch (e) {
      return `The identity could not be made: ${e instanceof Error ? e.message : String(e)}`;
    }
    const again = this.pendingStart;
    this.needIdentity = null;
    this.pendingStart = null;
    again?.();
    this.app.emit();
    return "";
  }

  cancelIdentity(): void {
    this.needIdentity = null;
    this.pendingStart = null;
    this.app.emit();
  }

  async loadIdentities(accountId: Id): Promise<void> {
    const r = await this.app.jmap.call("Identity/get", { accountId });
    this.identitiesOf.set(accountId, r.list);
    this.app.emit();
  }

  /** Opens a saved draft in the composer (to, cc, bcc, subject, body, attachments): it
   * is saved from then on as the same draft (each save replaces it). */
  async openDraft(emailId: Id): Promise<void> {
    if (!this.app.can("draft") || this.draft?.emailId === emailId) return;
    // What is being written now is kept first (saved as a draft, as Close does).
    if (this.draft) await this.close();
    const acc = this.app.list.account(emailId);
    let e: FullEmail | undefined;
    try {
      const r = await this.app.jmap.call("Email/get", {
        accountId: acc,
        ids: [emailId],
        properties: [
          "id", "threadId", "mailboxIds", "keywords", "from", "to", "cc", "bcc", "replyTo", "subject", "preview", "receivedAt",
          "sentAt", "hasAttachment", "size", "messageId", "inReplyTo", "references", "textBody", "htmlBody", "attachments", "bodyValues", "blobId",
        ],
        fetchTextBodyValues: true,
        maxBodyValueBytes: 1_000_000,
      });
      e = r.list.find(isFullEmail);
    } catch (err) {
      this.app.report(err);
      return;
    }
    if (!e) {
      this.app.toasts.error("The draft is gone (sent or deleted elsewhere).");
      return;
    }
    const mine = this.identitiesOf.get(acc) ?? [];
    const from = e.from?.[0]?.email.toLowerCase();
    const me = mine.find((i) => i.email.toLowerCase() === from) ?? mine[0];
    if (!me) {
      this.needIdentity = acc;
      this.pendingStart = () => void this.openDraft(emailId);
      this.app.emit();
      return;
    }
    const addrs = (l: typeof e.to) => (l ?? []).map(formatAddress).join(", ");
    const text = e.textBody
      .filter((p) => p.partId && p.type.startsWith("text/"))
      .map((p) => e.bodyValues[p.partId ?? ""]?.value ?? "")
      .join("\n\n");
    // Inline parts referenced by cid: stay with the HTML; what the user attached is
    // listed, and goes with every save by its blob.
    const attachments = e.attachments
      .filter((a) => a.blobId && !(a.cid && a.disposition === "inline"))
      .map((a) => ({ blobId: a.blobId as string, name: a.name ?? "attachment", type: a.type, size: a.size }));
    this.draft = {
      emailId: e.id,
      identityId: me.id,
      to: addrs(e.to),
      cc: addrs(e.cc),
      bcc: addrs(e.bcc),
      subject: e.subject ?? "",
      body: text,
      rich: e.htmlBody.some((p) => p.type === "text/html"),
      inReplyTo: e.inReplyTo,
      references: e.references,
      attachments,
    };
    this.status = "";
    this.app.emit();
  }

  /** Edits the draft; it is saved on the server 3 s after the last change. */
  edit(patch: Partial<Draft>): void {
    if (!this.draft) return;
    const was = this.account();
    this.draft = { ...this.draft, ...patch };
    const now = this.account();
    if (now !== was && this.draft.emailId) {
      // A From of another account: the draft moves there (saved anew), and the copy
      // saved in the old account goes, so that no stale draft is left behind.
      void this.app.jmap.call("Email/set", { accountId: was, destroy: [this.draft.emailId] }).catch(() => undefined);
      this.draft = { ...this.draft, emailId: null };
    }
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.save(), 3000);
    this.app.emit();
  }

  /** Saves the draft: a new draft Email replaces the previous one (Emails are immutable). */
  async save(): Promise<void> {
    if (this.saving) await this.saving;
    const d = this.draft;
    const me = this.identity();
    const acc = this.account();
    const drafts = this.app.folders.byRole("drafts", acc);
    if (!d || !me || !drafts || !this.app.can("draft")) return;
    this.saving = (async () => {
      this.status = "Saving…";
      this.app.emit();
      try {
        // The new draft first, read back for its attachments' blob ids; the previous
        // one goes only once the new one exists (an Email/set destroys even when its
        // create fails, which would leave the user's words in the browser alone).
        const r = await this.app.jmap.request([
          ["Email/set", { accountId: acc, create: { draft: draftEmail(d, me, { drafts: drafts.id }) } }, "e"],
          ["Email/get", { accountId: acc, ids: ["#draft"], properties: ["attachments"] }, "a"],
        ]);
        const set = r.get("e", "Email/set");
        const id = set && !(set instanceof MethodError) ? set.created?.draft?.id : undefined;
        const err = set instanceof MethodError ? { type: set.type, description: set.description } : set?.notCreated?.draft;
        if (id) {
          this.adopt(id, d, r.get("a", "Email/get"));
          if (d.emailId) await this.destroyOld(acc, d.emailId);
        }
        this.status = id ? `Draft saved at ${new Date().toLocaleTimeString()}` : `The draft could not be saved: ${err?.description ?? err?.type ?? "unknown error"}`;
      } catch (e) {
        this.status = `The draft could not be saved: ${e instanceof Error ? e.message : String(e)}`;
      }
      this.app.emit();
    })();
    await this.saving;
    this.saving = null;
  }

  /** The draft just stored is the composer's from now on. Its attachments are named by
   * the new Email's parts: a part's blob id lives as long as its Email (RFC 8621 4.1.4),
   * and the Email they came from is the one replaced. */
  private adopt(id: Id, saved: Draft, got: GetResponse<Email | FullEmail> | MethodError | undefined): void {
    if (!this.draft) return;
    const e = got && !(got instanceof MethodError) ? got.list[0] : undefined;
    const fresh = e && "attachments" in e && Array.isArray(e.attachments) ? e.attachments : undefined;
    let attachments = this.draft.attachments;
    // Only when the attachments did not change meanwhile, one for one in order.
    if (fresh && this.draft.attachments === saved.attachments && fresh.length === saved.attachments.length)
      attachments = saved.attachments.map((a, i) => ({ ...a, blobId: fresh[i]?.blobId ?? a.blobId }));
    this.draft = { ...this.draft, emailId: id, attachments };
  }

  private async destroyOld(accountId: Id, emailId: Id): Promise<void> {
    await this.app.jmap.call("Email/set", { accountId, destroy: [emailId] }).catch(() => undefined);
  }

  async attach(files: File[]): Promise<void> {
    if (!this.draft) return;
    for (const f of files) {
      const u = { name: f.name, progress: 0 };
      this.uploads = [...this.uploads, u];
      this.app.emit();
      try {
        const r = await this.app.jmap.upload(this.account(), f, (p) => {
          u.progress = p;
          this.app.emit();
        });
        if (this.draft)
          this.edit({ attachments: [...this.draft.attachments, { blobId: r.blobId, name: f.name, type: r.type || f.type || "application/octet-stream", size: r.size }] });
      } catch (e) {
        this.app.toasts.error(`${f.name} could not be uploaded: ${e instanceof Error ? e.message : String(e)}`);
      }
      this.uploads = this.uploads.filter((x) => x !== u);
      this.app.emit();
    }
  }

  /** Sends: the draft is created and submitted in one request. The server destroys the
   * draft (onSuccessDestroyEmail) only once the message was sent and its copy is in Sent;
   * a refusal, a failure or an Undo leaves it in Drafts. What happens is followed through
   * the EmailSubmission (`outgoing`). */
  async send(): Promise<boolean> {
    const d = this.draft;
    const me = this.identity();
    const acc = this.account();
    const drafts = this.app.folders.byRole("drafts", acc);
    if (!d || !me || !drafts || !this.app.can("send")) return false;
    if (this.timer) clearTimeout(this.timer);
    if (this.saving) await this.saving;
    this.status = "Sending…";
    this.app.emit();
    // Tidings files the sent copy in Sent itself (an APPEND) when the Email is not there;
    // the draft is destroyed after that, so Sent holds one copy and nothing is lost.
    try {
      const r = await this.app.jmap.request([
        ["Email/set", { accountId: acc, create: { draft: draftEmail(d, me, { drafts: drafts.id }) } }, "e"],
        ["EmailSubmission/set", { accountId: acc, create: { sub: { identityId: me.id, emailId: "#draft" } }, onSuccessDestroyEmail: ["#sub"] }, "s"],
      ]);
      const e = r.get("e", "Email/set");
      const s = r.get("s", "EmailSubmission/set");
      const err =
        e instanceof MethodError ? e.message
        : s instanceof MethodError ? s.message
        : (() => {
            const x = e?.notCreated?.draft ?? s?.notCreated?.sub;
            return x ? x.description ?? x.type : "";
          })();
      // The draft just made is the compose's draft now (saved again, it replaces it);
      // the one it was made from goes once it exists (see `save`).
      const made = (e instanceof MethodError ? undefined : e?.created?.draft?.id) ?? null;
      if (made && d.emailId) await this.destroyOld(acc, d.emailId);
      if (err) {
        if (made && this.draft) this.draft = { ...this.draft, emailId: made };
        this.status = `Not sent: ${err}. The message is kept in Drafts.`;
        this.app.emit();
        return false;
      }
      if (!s || s instanceof MethodError) throw new MethodError("serverFail", "no EmailSubmission/set");
      const sub = s.created?.sub;
      this.draft = null;
      // Not "sent" yet: queued in the server's undo window. What happens next comes from
      // the EmailSubmission itself (push), in the server's words.
      this.app.sending.account = acc;
      this.app.sending.started(sendState({ undoStatus: "pending", deliveryStatus: null, ...sub, id: sub?.id ?? "" }, d.subject));
      return true;
    } catch (e) {
      this.status = `Not sent: ${e instanceof Error ? e.message : String(e)}`;
      this.app.emit();
      return false;
    }
  }

  async discard(): Promise<void> {
    const d = this.draft;
    const acc = this.account();
    if (this.timer) clearTimeout(this.timer);
    if (this.saving) await this.saving;
    this.draft = null;
    this.app.emit();
    const id = d?.emailId;
    if (id) await this.app.jmap.call("Email/set", { accountId: acc, destroy: [id] }).catch(() => undefined);
  }

  /** Closes the composer, keeping the draft on the server. */
  async close(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    if (this.draft && (this.draft.body.trim() || this.draft.subject.trim() || this.draft.to.trim())) await this.save();
    this.draft = null;
    this.app.emit();
  }
}
