// A unified view across accounts: the merge of each account's loaded start, the rows
// whose place is certain, and which account to read further.
import { describe, expect, it } from "vitest";
import { type Email, listedAttachments, mergeNewest } from "./model";

function mail(id: string, at: string, sentAt: string | null = null): Email {
  return { id, threadId: `t${id}`, mailboxIds: {}, keywords: {}, from: null, to: null, subject: id, preview: "", receivedAt: at, sentAt, hasAttachment: false, size: 1 };
}
const day = (d: number) => `2026-12-${String(d).padStart(2, "0")}T10:00:00Z`;

describe("mergeNewest", () => {
  it("interleaves the accounts newest first, and knows each row's account", () => {
    const m = mergeNewest(
      [
        { accountId: "a1", emails: [mail("e5", day(9)), mail("e3", day(5))], total: 2 },
        { accountId: "a2", emails: [mail("e9", day(7)), mail("e8", day(1))], total: 2 },
      ],
      false,
    );
    expect(m.rows).toEqual([
      { id: "e5", accountId: "a1" },
      { id: "e9", accountId: "a2" },
      { id: "e3", accountId: "a1" },
      { id: "e8", accountId: "a2" },
    ]);
    expect(m.total).toBe(4);
    expect(m.more).toEqual([]);
  });

  it("places nothing older than the last loaded row of an account with more to read", () => {
    const m = mergeNewest(
      [
        // a1 has 300 messages, 2 loaded: its third could be anything older than day 6.
        { accountId: "a1", emails: [mail("e5", day(9)), mail("e3", day(6))], total: 300 },
        { accountId: "a2", emails: [mail("e9", day(7)), mail("e8", day(1))], total: 2 },
      ],
      false,
    );
    expect(m.rows.map((r) => r.id)).toEqual(["e5", "e9", "e3"]);
    expect(m.total).toBe(302);
    expect(m.more).toEqual(["a1"]);
  });

  it("asks for the account whose loaded rows end newest when several have more", () => {
    const m = mergeNewest(
      [
        { accountId: "a1", emails: [mail("e1", day(3))], total: 10 },
        { accountId: "a2", emails: [mail("e2", day(8))], total: 10 },
        { accountId: "a3", emails: [], total: 0 },
      ],
      false,
    );
    expect(m.rows.map((r) => r.id)).toEqual(["e2"]);
    expect(m.more).toEqual(["a2"]);
  });

  it("an account with rows but none loaded yet holds everything back", () => {
    const m = mergeNewest([{ accountId: "a1", emails: [], total: 5 }, { accountId: "a2", emails: [mail("e2", day(8))], total: 1 }], false);
    expect(m.rows).toEqual([]);
    expect(m.more).toEqual(["a1"]);
  });

  it("sorts Drafts and Sent by sentAt, and a time offset is compared as a time", () => {
    const m = mergeNewest(
      [
        { accountId: "a1", emails: [mail("d1", day(20), "2026-12-01T12:00:00+02:00")], total: 1 },
        { accountId: "a2", emails: [mail("d2", day(2), "2026-12-01T11:00:00Z")], total: 1 },
      ],
      true,
    );
    // 12:00+02:00 is 10:00Z: d2 is the newer by sentAt, though received earlier.
    expect(m.rows.map((r) => r.id)).toEqual(["d2", "d1"]);
  });
});

describe("attachments listed under a message", () => {
  const part = (cid: string | null, disposition: string | null, type = "image/png") => ({ partId: "2", blobId: "b", size: 1, name: "x.png", type, charset: null, disposition, cid });
  it("leaves out an inline image its HTML shows by cid:, keeps real attachments", () => {
    const inline = part("logo@x", "inline");
    const attached = part(null, "attachment");
    const pdf = part("doc@x", "attachment", "application/pdf");
    const email = { htmlBody: [{ type: "text/html" }], attachments: [inline, attached, pdf] };
    expect(listedAttachments(email)).toEqual([attached, pdf]);
    // Without HTML to show it in, the image is listed.
    expect(listedAttachments({ htmlBody: [{ type: "text/plain" }], attachments: [inline] })).toEqual([inline]);
  });
});
