// The answers of a JMAP request, read by method (RFC 8620 3.4, 3.6.2): a response of the
// method asked is returned as it is, an `error` becomes a MethodError, and an answer of
// another method is not read as the one asked.
import { describe, expect, it } from "vitest";
import { Jmap, MethodError, type Session } from "./jmap";
import { isFullEmail } from "./jmap-types";

/** A Jmap whose server answers every request with `responses`. */
function jmap(responses: unknown[]) {
  const fetchFn = (async () => new Response(JSON.stringify({ methodResponses: responses, sessionState: "s" }), { status: 200 })) as typeof fetch;
  const j = new Jmap(fetchFn);
  j.session = { apiUrl: "/jmap/api" } as Session;
  return j;
}

describe("answers", () => {
  it("reads each answer as the method asked: its response, its error, never another method's", async () => {
    const r = await jmap([
      ["Email/query", { accountId: "a1", queryState: "q1", canCalculateChanges: true, position: 0, ids: ["e1", "e2"], total: 2 }, "q"],
      ["error", { type: "cannotCalculateChanges", description: "too old" }, "ec"],
      ["Mailbox/get", { accountId: "a1", state: "s1", list: [] }, "t"],
    ]).request([]);
    const q = r.get("q", "Email/query");
    if (!q || q instanceof MethodError) throw new Error("no query answer");
    expect(q.ids).toEqual(["e1", "e2"]);
    expect(q.total).toBe(2);
    const ec = r.get("ec", "Email/changes");
    expect(ec instanceof MethodError && [ec.type, ec.description]).toEqual(["cannotCalculateChanges", "too old"]);
    // Asked for a Thread/get, answered with a Mailbox/get: not read as threads.
    const t = r.get("t", "Thread/get");
    expect(t instanceof MethodError && t.type).toBe("serverFail");
    expect(r.get("x", "Email/query")).toBeUndefined();
  });

  it("call throws a method error, and an answer of another method, and returns the response otherwise", async () => {
    await expect(jmap([["error", { type: "unknownMethod" }, "0"]]).call("Mailbox/set", { accountId: "a1" })).rejects.toMatchObject({ type: "unknownMethod" });
    await expect(jmap([["Mailbox/get", { accountId: "a1", state: "s1", list: [] }, "0"]]).call("Email/set", {})).rejects.toMatchObject({ type: "serverFail" });
    const set = await jmap([["Email/set", { accountId: "a1", newState: "s2", notUpdated: { e1: { type: "forbidden" } } }, "0"]]).call("Email/set", {});
    expect(set.notUpdated?.e1?.type).toBe("forbidden");
  });

  it("an Email without the body properties asked for is not taken for a full one", () => {
    const row = {
      id: "e1", threadId: "t1", mailboxIds: {}, keywords: {}, from: null, to: null, subject: null, preview: "",
      receivedAt: "2026-01-01T00:00:00Z", hasAttachment: false, size: 1,
    };
    expect(isFullEmail(row)).toBe(false);
    const body = { cc: null, bcc: null, replyTo: null, sentAt: null, messageId: null, inReplyTo: null, references: null, blobId: "b1" };
    expect(isFullEmail({ ...row, ...body, textBody: [], htmlBody: [], attachments: [], bodyValues: {} })).toBe(true);
  });
});
