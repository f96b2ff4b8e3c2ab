// Writing mail: the composer's draft (new, reply, reply-all, forward), saved on the
// server as a draft Email 3 s after the last change (Email/set), its attachments
// (uploaded blobs), and sending it (Email/set and EmailSubmission/set in one request;
// `Sending` follows it from there). Nothing written is lost: a draft that cannot be
// sent stays in Drafts, with the reason.

import { MethodError } from "../jmap";
import type { FullEmail, Identity } from "../jmap-types";
import { type Draft, type Source, draftEmail, emptyDraft, forwardDraft, replyDraft } from "../compose";
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
  identities: Identity[] = [];

  constructor(private app: MailApp) {}

  identity(): Identity | undefined {
    return this.identities.find((i) => i.id === this.draft?.identityId) ?? this.identities[0];
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
  start(kind: "new" | "reply" | "replyAll" | "forward"): void {
    if (!this.app.can("draft")) return;
    const me = this.identities[0];
    if (!me) {
      this.app.toasts.error("This account has no sending identity.");
      return;
    }
    const last = this.app.reader.open?.emails[this.app.reader.open.emails.length - 1];
    if (kind !== "new" && !last) return;
    this.draft =
      kind === "new" || !last
        ? emptyDraft(me.id)
        : kind === "forward"
          ? forwardDraft(this.source(last), me)
          : replyDraft(this.source(last), me, kind === "replyAll");
    this.status = "";
    this.app.emit();
  }

  /** Edits the draft; it is saved on the server 3 s after the last change. */
  edit(patch: Partial<Draft>): void {
    if (!this.draft) return;
    this.draft = { ...this.draft, ...patch };
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.save(), 3000);
    this.app.emit();
  }

  /** Saves the draft: a new draft Email replaces the previous one (Emails are immutable). */
  async save(): Promise<void> {
    if (this.saving) await this.saving;
    const d = this.draft;
    const me = this.identity();
    const drafts = this.app.folders.byRole("drafts");
    if (!d || !me || !drafts || !this.app.can("draft")) return;
    this.saving = (async () => {
      this.status = "Saving…";
      this.app.emit();
      try {
        const r = await this.app.jmap.call(
          "Email/set",
          { accountId: this.app.accountId, create: { draft: draftEmail(d, me, { drafts: drafts.id }) }, ...(d.emailId ? { destroy: [d.emailId] } : {}) },
        );
        const id = r.created?.draft?.id;
        const err = r.notCreated?.draft;
        if (id && this.draft) this.draft = { ...this.draft, emailId: id };
        this.status = id ? `Draft saved at ${new Date().toLocaleTimeString()}` : `The draft could not be saved: ${err?.description ?? err?.type ?? "unknown error"}`;
      } catch (e) {
        this.status = `The draft could not be saved: ${e instanceof Error ? e.message : String(e)}`;
      }
      this.app.emit();
    })();
    await this.saving;
    this.saving = null;
  }

  async attach(files: File[]): Promise<void> {
    if (!this.draft) return;
    for (const f of files) {
      const u = { name: f.name, progress: 0 };
      this.uploads = [...this.uploads, u];
      this.app.emit();
      try {
        const r = await this.app.jmap.upload(this.app.accountId, f, (p) => {
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
    const drafts = this.app.folders.byRole("drafts");
    if (!d || !me || !drafts || !this.app.can("send")) return false;
    if (this.timer) clearTimeout(this.timer);
    if (this.saving) await this.saving;
    this.status = "Sending…";
    this.app.emit();
    // Tidings files the sent copy in Sent itself (an APPEND) when the Email is not there;
    // the draft is destroyed after that, so Sent holds one copy and nothing is lost.
    try {
      const r = await this.app.jmap.request([
        ["Email/set", { accountId: this.app.accountId, create: { draft: draftEmail(d, me, { drafts: drafts.id }) }, ...(d.emailId ? { destroy: [d.emailId] } : {}) }, "e"],
        ["EmailSubmission/set", { accountId: this.app.accountId, create: { sub: { identityId: me.id, emailId: "#draft" } }, onSuccessDestroyEmail: ["#sub"] }, "s"],
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
      // The draft just made is the compose's draft now (saved again, it replaces it).
      const made = (e instanceof MethodError ? undefined : e?.created?.draft?.id) ?? null;
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
    if (this.timer) clearTimeout(this.timer);
    if (this.saving) await this.saving;
    this.draft = null;
    this.app.emit();
    const id = d?.emailId;
    if (id) await this.app.jmap.call("Email/set", { accountId: this.app.accountId, destroy: [id] }).catch(() => undefined);
  }

  /** Closes the composer, keeping the draft on the server. */
  async close(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    if (this.draft && (this.draft.body.trim() || this.draft.subject.trim() || this.draft.to.trim())) await this.save();
    this.draft = null;
    this.app.emit();
  }
}
