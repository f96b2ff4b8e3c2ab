import { describe as group, expect, it } from "vitest";
import { type Submission, describe, isError, sendState, settled } from "./outgoing";

const sub = (s: Partial<Submission>): Submission => ({ id: "s1", undoStatus: "final", sendAt: "2026-12-07T10:00:05Z", deliveryStatus: {}, ...s });
const now = Date.parse("2026-12-07T10:00:00Z");

group("sending state", () => {
  it("is queued with undo during the undo window, with a countdown", () => {
    const s = sendState(sub({ undoStatus: "pending", deliveryStatus: { "b@x.org": { smtpReply: "", delivered: "queued" } } }), "Hi");
    expect(s.phase).toBe("queued");
    expect(s.canUndo).toBe(true);
    expect(settled(s)).toBe(false);
    expect(describe(s, now)).toBe("Sending “Hi” in 5 s…");
    expect(describe(s, now + 6000)).toBe("Sending “Hi”…");
  });
  it("is sending once final with no reply yet, and never says sent before a 2xx", () => {
    const s = sendState(sub({ deliveryStatus: { "b@x.org": { smtpReply: "", delivered: "queued" } } }), "Hi");
    expect(s.phase).toBe("sending");
    expect(s.canUndo).toBe(false);
    expect(describe(s, now)).not.toContain("sent.");
  });
  it("is sent when the server accepted every recipient", () => {
    const s = sendState(sub({ deliveryStatus: { "b@x.org": { smtpReply: "250 2.0.0 Ok: queued", delivered: "queued" }, "c@x.org": { smtpReply: "250 ok", delivered: "yes" } } }), "Hi");
    expect(s.phase).toBe("sent");
    expect(settled(s)).toBe(true);
    expect(isError(s)).toBe(false);
    expect(describe(s, now)).toBe("Message sent.");
  });
  it("fails in the server's words, and says where the message is", () => {
    const s = sendState(sub({ deliveryStatus: { "b@x.org": { smtpReply: "550 5.1.1 <b@x.org>: Recipient address rejected", delivered: "no" } } }), "Hi");
    expect(s.phase).toBe("failed");
    expect(isError(s)).toBe(true);
    expect(describe(s, now)).toBe("Not sent: 550 5.1.1 <b@x.org>: Recipient address rejected. “Hi” is in Drafts.");
  });
  it("tells a refusal without SMTP settings as the server worded it", () => {
    const s = sendState(sub({ deliveryStatus: { "b@x.org": { smtpReply: "the account has no SMTP settings", delivered: "no" } } }), "");
    expect(describe(s, now)).toBe("Not sent: the account has no SMTP settings. The message is in Drafts.");
  });
  it("names the recipients that were refused when others were not", () => {
    const s = sendState(sub({ deliveryStatus: { "b@x.org": { smtpReply: "250 ok", delivered: "queued" }, "c@x.org": { smtpReply: "550 no such user", delivered: "no" } } }), "Hi");
    expect(s.phase).toBe("partly");
    expect(s.detail).toBe("c@x.org: 550 no such user");
    expect(isError(s)).toBe(true);
  });
  it("is retrying while a temporary failure is retried, and unknown after a cut", () => {
    const r = sendState(sub({ deliveryStatus: { "b@x.org": { smtpReply: "451 4.3.0 try later", delivered: "queued" } } }), "Hi");
    expect(r.phase).toBe("retrying");
    expect(settled(r)).toBe(false);
    expect(describe(r, now)).toContain("451 4.3.0 try later");
    const u = sendState(sub({ deliveryStatus: { "b@x.org": { smtpReply: "no reply recorded (interrupted)", delivered: "unknown" } } }), "Hi");
    expect(u.phase).toBe("unknown");
    expect(isError(u)).toBe(true);
  });
  it("is canceled after an undo, back in Drafts", () => {
    const s = sendState(sub({ undoStatus: "canceled" }), "Hi");
    expect(s.phase).toBe("canceled");
    expect(settled(s)).toBe(true);
    expect(describe(s, now)).toBe("Canceled: “Hi” is back in Drafts.");
  });
  it("does not trust a hostile or odd status", () => {
    const s = sendState(sub({ sendAt: "not a date", deliveryStatus: null }), "Hi");
    expect(s.sendAt).toBeNull();
    expect(s.phase).toBe("sending");
    const odd = sendState(sub({ deliveryStatus: { "b@x.org": { smtpReply: " 250 ok", delivered: "queued" } } }), "<b>x</b>");
    expect(odd.phase).toBe("sent");
  });
});
