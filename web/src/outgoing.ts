// What the user is told about a message being sent, derived from its EmailSubmission
// (RFC 8621 7) as the server reports it: never "sent" before the server said so, and a
// failure in the server's own words. Pure functions, so the states are unit-tested.

import type { EmailSubmission } from "./jmap-types";

/** The parts of an EmailSubmission the client reads. */
export type Submission = EmailSubmission;

export type SendPhase = "queued" | "sending" | "retrying" | "sent" | "partly" | "failed" | "unknown" | "canceled";

export interface SendState {
  submissionId: string;
  subject: string;
  phase: SendPhase;
  /** The server's words (SMTP replies), for a failure or a retry. */
  detail: string;
  /** Undo (undoStatus: canceled) is still possible. */
  canUndo: boolean;
  /** When it leaves, while queued (ms since the epoch). */
  sendAt: number | null;
}

/** Whether nothing more will change (the client stops following it). */
export function settled(s: SendState): boolean {
  return !["queued", "sending", "retrying"].includes(s.phase);
}

const ok = (reply: string) => /^2/.test(reply.trim());

/** The state of a submission. A recipient counts as sent once the SMTP server accepted
 * it (delivered "queued" with a 2xx reply, or "yes"); "no" is refused for good; "queued"
 * without a 2xx reply is not sent yet (a retry when a reply is there). */
export function sendState(sub: Submission, subject: string): SendState {
  const sendAt = sub.sendAt ? Date.parse(sub.sendAt) : NaN;
  const base = { submissionId: sub.id, subject, detail: "", canUndo: false, sendAt: Number.isNaN(sendAt) ? null : sendAt };
  if (sub.undoStatus === "canceled") return { ...base, phase: "canceled" };
  if (sub.undoStatus === "pending") return { ...base, phase: "queued", canUndo: true };
  const rcpts = Object.entries(sub.deliveryStatus ?? {});
  const refused = rcpts.filter(([, d]) => d.delivered === "no");
  const accepted = rcpts.filter(([, d]) => d.delivered === "yes" || (d.delivered === "queued" && ok(d.smtpReply)));
  const unknown = rcpts.filter(([, d]) => d.delivered === "unknown");
  const waiting = rcpts.filter(([, d]) => d.delivered === "queued" && !ok(d.smtpReply));
  const words = (list: [string, { smtpReply: string }][]) =>
    [...new Set(list.map(([, d]) => d.smtpReply.trim()).filter(Boolean))].join("; ");
  // Nothing reported yet: not "sent" before the server says so.
  if (!rcpts.length) return { ...base, phase: "sending" };
  if (waiting.length) {
    const tried = waiting.filter(([, d]) => d.smtpReply.trim());
    return tried.length ? { ...base, phase: "retrying", detail: words(tried) } : { ...base, phase: "sending" };
  }
  if (refused.length === rcpts.length) return { ...base, phase: "failed", detail: words(refused) };
  if (refused.length) {
    return { ...base, phase: "partly", detail: refused.map(([r, d]) => `${r}: ${d.smtpReply.trim()}`).join("; ") };
  }
  if (unknown.length && !accepted.length) return { ...base, phase: "unknown", detail: words(unknown) };
  return { ...base, phase: "sent" };
}

/** The sentence shown for a state (`now` for the countdown of the undo window). */
export function describe(s: SendState, now: number): string {
  const what = s.subject ? `“${s.subject}”` : "The message";
  switch (s.phase) {
    case "queued": {
      const secs = s.sendAt === null ? 0 : Math.ceil((s.sendAt - now) / 1000);
      return secs > 0 ? `Sending ${what} in ${secs} s…` : `Sending ${what}…`;
    }
    case "sending":
      return `Sending ${what}…`;
    case "retrying":
      return `${what} is not sent yet; the server said: ${s.detail}. Trying again.`;
    case "sent":
      return "Message sent.";
    case "partly":
      return `Message sent, but not to everyone: ${s.detail}.`;
    case "failed":
      return `Not sent: ${s.detail || "the server refused it"}. ${what} is in Drafts.`;
    case "unknown":
      return `${what} may or may not have been sent (the connection broke). Check Sent before sending again.`;
    case "canceled":
      return `Canceled: ${what} is back in Drafts.`;
  }
}

/** Whether a state is shown as an error. */
export function isError(s: SendState): boolean {
  return s.phase === "failed" || s.phase === "partly" || s.phase === "unknown";
}
