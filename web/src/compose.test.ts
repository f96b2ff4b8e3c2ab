import { describe, expect, it } from "vitest";
import { type Source, draftEmail, forwardDraft, knownAddresses, parseAddresses, replyDraft } from "./compose";

const me = { id: "i1", name: "Alice", email: "alice@example.org" };
const src: Source = {
  from: [{ name: "Bob", email: "bob@example.org" }],
  to: [{ name: "Alice", email: "alice@example.org" }, { name: null, email: "carol@example.org" }],
  cc: [{ name: "Doe, Jane", email: "jane@example.org" }, { name: null, email: "BOB@example.org" }],
  replyTo: null,
  subject: "Plans",
  sentAt: "2026-12-01T10:00:00Z",
  receivedAt: "2026-12-01T10:00:01Z",
  messageId: ["m2@example.org"],
  references: ["m1@example.org"],
  text: "line one\nline two",
  attachments: [{ blobId: "b1", name: "a.pdf", type: "application/pdf", size: 3 }],
};

describe("compose", () => {
  it("parses address lists, quoted names included", () => {
    const r = parseAddresses('Ann <ann@x.org>, bob@y.org; "Doe, J" <j@z.org>, nonsense');
    expect(r.list).toEqual([
      { name: "Ann", email: "ann@x.org" },
      { name: null, email: "bob@y.org" },
      { name: "Doe, J", email: "j@z.org" },
    ]);
    expect(r.bad).toEqual(["nonsense"]);
  });
  it("replies to the sender, threaded and quoted", () => {
    const d = replyDraft(src, me, false);
    expect(d.to).toBe("Bob <bob@example.org>");
    expect(d.cc).toBe("");
    expect(d.subject).toBe("Re: Plans");
    expect(d.inReplyTo).toEqual(["m2@example.org"]);
    expect(d.references).toEqual(["m1@example.org", "m2@example.org"]);
    expect(d.body).toContain("> line two");
    expect(replyDraft({ ...src, subject: "RE: Plans" }, me, false).subject).toBe("RE: Plans");
  });
  it("replies to all but me, without duplicates", () => {
    const d = replyDraft(src, me, true);
    expect(parseAddresses(d.cc).list.map((a) => a.email)).toEqual(["carol@example.org", "jane@example.org"]);
  });
  it("forwards with the attachments", () => {
    const d = forwardDraft(src, me);
    expect(d.subject).toBe("Fwd: Plans");
    expect(d.to).toBe("");
    expect(d.attachments).toHaveLength(1);
    expect(d.body).toContain("Forwarded message");
  });
  it("builds the Email/set create object of a draft", () => {
    const e = draftEmail({ ...replyDraft(src, me, false), attachments: src.attachments }, me, { drafts: "m9" });
    expect(e.mailboxIds).toEqual({ m9: true });
    expect(e.keywords).toEqual({ $draft: true, $seen: true });
    expect(e.to).toEqual([{ name: "Bob", email: "bob@example.org" }]);
    expect(e.cc).toBeNull();
    expect(e.textBody).toEqual([{ partId: "body", type: "text/plain" }]);
    expect(e.attachments).toEqual([{ blobId: "b1", type: "application/pdf", name: "a.pdf", disposition: "attachment" }]);
  });
  it("offers the addresses seen most", () => {
    expect(knownAddresses([src, { from: src.from, to: null }])[0]).toBe("Bob <bob@example.org>");
  });
});
