// The answers of a JMAP request, read by method (RFC 8620 3.4, 3.6.2): a response of the
// method asked is returned as it is, an `error` becomes a MethodError, and an answer of
// another method is not read as the one asked.
import { describe, expect, it } from "vitest";
import { Jmap, MethodError, type OfflineSeam, type Session } from "./jmap";
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

describe("the offline seam", () => {
  /** A seam that records what it is told and answers every replay with `kept`. */
  function seam(kept: [string, unknown, string][] | null) {
    const told: string[] = [];
    const s: OfflineSeam = {
      sessionLoaded: () => told.push("session"),
      answered: (calls) => told.push(`answered ${calls.map((c) => c[0]).join(",")}`),
      session: async () => null,
      replay: async (calls) => {
        told.push(`replay ${calls.map((c) => c[0]).join(",")}`);
        return kept;
      },
      note: () => "",
    };
    return { s, told };
  }

  it("is told every answer, and asked only when the network is gone (not on an HTTP error)", async () => {
    const online = jmap([["Mailbox/get", { accountId: "a1", state: "s1", list: [] }, "m"]]);
    const a = seam(null);
    online.offline = a.s;
    await online.request([["Mailbox/get", { accountId: "a1", ids: null }, "m"]]);
    expect(a.told).toEqual(["answered Mailbox/get"]);

    const kept: [string, unknown, string][] = [["Mailbox/get", { accountId: "a1", state: "s0", list: [] }, "m"]];
    const gone = new Jmap((async () => {
      throw new TypeError("Failed to fetch");
    }) as typeof fetch);
    gone.session = { apiUrl: "/jmap/api" } as Session;
    const b = seam(kept);
    gone.offline = b.s;
    const r = await gone.request([["Mailbox/get", { accountId: "a1", ids: null }, "m"]]);
    const m = r.get("m", "Mailbox/get");
    expect(m instanceof MethodError ? m : m?.state).toBe("s0");
    expect(b.told).toEqual(["replay Mailbox/get"]);

    // An HTTP error is the server's answer, not an absence: nothing is replayed.
    const refused = new Jmap((async () => new Response("no", { status: 401 })) as typeof fetch);
    refused.session = { apiUrl: "/jmap/api" } as Session;
    const c = seam([]);
    refused.offline = c.s;
    await expect(refused.request([["Mailbox/get", { accountId: "a1", ids: null }, "m"]])).rejects.toMatchObject({ status: 401 });
    expect(c.told).toEqual([]);
  });
});
