// MailApp's optimistic actions against a scripted transport: what the user sees at once,
// and what is put back when the server refuses.
import { describe, expect, it } from "vitest";
import { Jmap, type Session } from "./jmap";
import { MailApp } from "./state";
import { type Email, setWindow, emptyList } from "./model";

const email = (id: string, mailbox: string): Email => ({
  id, threadId: `t${id}`, mailboxIds: { [mailbox]: true }, keywords: {}, from: null, to: null,
  subject: id, preview: "", receivedAt: "2026-01-01T00:00:00Z", hasAttachment: false, size: 1,
});

/** A MailApp whose server answers each request with `answer(methodCalls)`. */
function app(answer: (calls: [string, Record<string, unknown>, string][]) => unknown[]) {
  const sent: unknown[] = [];
  const fetchFn = (async (_url: RequestInfo | URL, init?: RequestInit) => {
    const body = JSON.parse(String(init?.body)) as { methodCalls: [string, Record<string, unknown>, string][] };
    sent.push(body.methodCalls);
    return new Response(JSON.stringify({ methodResponses: answer(body.methodCalls), sessionState: "s" }), { status: 200 });
  }) as typeof fetch;
  const jmap = new Jmap(fetchFn);
  jmap.session = { apiUrl: "/jmap/api" } as Session;
  jmap.methods.add("Email/set");
  const a = new MailApp(jmap);
  a.accountId = "a1";
  a.view = { mailboxId: "m1", search: "", collapseThreads: false };
  for (const e of [email("e1", "m1"), email("e2", "m1")]) a.cache.set(e.id, e);
  a.list = setWindow(emptyList(), 0, ["e1", "e2"], 2, "q1");
  a.mailboxes = [
    { id: "m1", name: "INBOX", role: "inbox", parentId: null, sortOrder: 0, totalEmails: 2, unreadEmails: 2, totalThreads: 2, unreadThreads: 2 },
    { id: "m2", name: "Archive", role: "archive", parentId: null, sortOrder: 0, totalEmails: 0, unreadEmails: 0, totalThreads: 0, unreadThreads: 0 },
  ];
  return { a, sent };
}

describe("optimistic actions", () => {
  it("shows a flag at once and keeps it when the server agrees", async () => {
    const { a, sent } = app((calls) => calls.map(([n, , id]) => [n, { updated: { e1: null } }, id]));
    let seenDuring = false;
    a.subscribe(() => {
      if (a.cache.get("e1")?.keywords.$flagged) seenDuring = true;
    });
    await a.setKeyword(["e1"], "$flagged", true);
    expect(seenDuring).toBe(true);
    expect(a.cache.get("e1")?.keywords.$flagged).toBe(true);
    expect(sent[0]).toEqual([["Email/set", { accountId: "a1", update: { e1: { "keywords/$flagged": true } } }, "0"]]);
    expect(a.toast?.undo).toBeDefined();
  });

  it("puts back what the server refuses and says so", async () => {
    const { a } = app((calls) => calls.map(([n, , id]) => [n, { updated: null, notUpdated: { e1: { type: "forbidden", description: "read-only" } } }, id]));
    await a.archive(["e1"]);
    expect(a.cache.get("e1")?.mailboxIds).toEqual({ m1: true });
    expect(a.list.ids).toEqual(["e1", "e2"]);
    expect(a.toast?.error).toBe(true);
    expect(a.toast?.text).toContain("read-only");
  });

  it("rolls back on a network failure too, and undo reverses a move", async () => {
    let fail = true;
    const { a, sent } = app((calls) => {
      if (fail) throw new Error("offline");
      return calls.map(([n, , id]) => [n, { updated: { e2: null } }, id]);
    });
    await a.move(["e2"], "m2").catch(() => undefined);
    expect(a.list.ids).toEqual(["e1", "e2"]);
    fail = false;
    await a.move(["e2"], "m2");
    expect(a.list.ids).toEqual(["e1"]);
    expect(a.cache.get("e2")?.mailboxIds).toEqual({ m2: true });
    a.refresh = async () => undefined; // no server to refresh from here
    await a.undo();
    expect(a.cache.get("e2")?.mailboxIds).toEqual({ m1: true });
    expect(sent.at(-1)).toEqual([["Email/set", { accountId: "a1", update: { e2: { mailboxIds: { m1: true } } } }, "0"]]);
  });
});
