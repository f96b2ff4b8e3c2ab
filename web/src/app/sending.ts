// The message sent last, followed through its EmailSubmission (RFC 8621 7) until it
// settles: the undo countdown, what the server says of each recipient, and Undo
// (undoStatus: canceled) while the server's undo window is open. What the user is told
// is derived in outgoing.ts.

import { type SendState, describe, isError, sendState, settled } from "../outgoing";
import type { MailApp } from "../state";

/** Seconds an outgoing message is followed by the timer (push follows it longer). */
const OUTGOING_TICKS = 600;

export class Sending {
  /** The message sent last, as its EmailSubmission says, followed until it settles. */
  outgoing: SendState | null = null;
  /** The account it was sent from. */
  account = "";
  private timer: ReturnType<typeof setInterval> | null = null;

  constructor(private app: MailApp) {}

  /** Follows a message just submitted (`Composer.send`). */
  started(state: SendState): void {
    this.outgoing = state;
    this.show();
    this.follow();
  }

  /** Shows the outgoing message's state (in the toast, with Undo while possible). */
  private show(): void {
    const o = this.outgoing;
    if (!o) return;
    this.app.toasts.current = { text: describe(o, Date.now()), undo: o.canUndo ? () => void this.cancel() : undefined, error: isError(o), send: true };
    this.app.emit();
  }

  /** While the message is not settled: the undo countdown each second, and a look at the
   * submission every few seconds besides push (bounded: it stops once settled, or after
   * OUTGOING_TICKS). */
  private follow(): void {
    if (this.timer) clearInterval(this.timer);
    let ticks = 0;
    this.timer = setInterval(() => {
      ticks++;
      const o = this.outgoing;
      if (!o || settled(o) || ticks > OUTGOING_TICKS) {
        if (this.timer) clearInterval(this.timer);
        this.timer = null;
        return;
      }
      if (this.app.toasts.current?.send) this.show();
      if (ticks % 3 === 0) void this.check();
    }, 1000);
  }

  /** Reads the outgoing message's EmailSubmission again. */
  async check(): Promise<void> {
    const o = this.outgoing;
    if (!o?.submissionId) return;
    try {
      const r = await this.app.jmap.call("EmailSubmission/get", {
        accountId: this.account || this.app.accountId, ids: [o.submissionId], properties: ["undoStatus", "sendAt", "deliveryStatus"],
      });
      const sub = r.list[0];
      if (!sub || this.outgoing?.submissionId !== o.submissionId) return;
      const next = sendState(sub, o.subject);
      if (next.phase === o.phase && next.detail === o.detail && next.canUndo === o.canUndo) return;
      this.outgoing = next;
      // A change is shown again even if the previous toast was dismissed.
      this.show();
    } catch (e) {
      this.app.report(e);
    }
  }

  /** Undo: cancels the submission in its undo window (RFC 8621 7.5); the message stays in
   * (or goes back to) Drafts. */
  async cancel(): Promise<void> {
    const o = this.outgoing;
    if (!o?.canUndo) return;
    try {
      const r = await this.app.jmap.call(
        "EmailSubmission/set",
        { accountId: this.account || this.app.accountId, update: { [o.submissionId]: { undoStatus: "canceled" } } },
      );
      const refused = r.notUpdated?.[o.submissionId];
      if (refused) this.app.toasts.error(refused.type === "cannotUnsend" ? "Too late to undo: the message is being sent." : `Could not undo: ${refused.description ?? refused.type}`);
    } catch (e) {
      this.app.report(e);
    }
    await this.check();
  }
}
