// MailApp's optimistic actions against a scripted transport: what the user sees at once,
// and what is put back when the server refuses.
import { describe, expect, it, vi } from "vitest";
import { Jmap, type Session } from "./jmap";
import type { TypeStates } from "./jmap-types";
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
  a.list.view = { mailboxId: "m1", search: "", collapseThreads: false };
  for (const e of [email("e1", "m1"), email("e2", "m1")]) a.list.cache.set(e.id, e);
  a.list.model = setWindow(emptyList(), 0, ["e1", "e2"], 2, "q1");
  a.folders.mailboxes = [
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
      if (a.list.cache.get("e1")?.keywords.$flagged) seenDuring = true;
    });
    await a.actions.setKeyword(["e1"], "$flagged", true);
    expect(seenDuring).toBe(true);
    expect(a.list.cache.get("e1")?.keywords.$flagged).toBe(true);
    expect(sent[0]).toEqual([["Email/set", { accountId: "a1", update: { e1: { "keywords/$flagged": true } } }, "0"]]);
    expect(a.toasts.current?.undo).toBeDefined();
  });

  it("puts back what the server refuses and says so", async () => {
    const { a } = app((calls) => calls.map(([n, , id]) => [n, { updated: null, notUpdated: { e1: { type: "forbidden", description: "read-only" } } }, id]));
    await a.actions.archive(["e1"]);
    expect(a.list.cache.get("e1")?.mailboxIds).toEqual({ m1: true });
    expect(a.list.model.ids).toEqual(["e1", "e2"]);
    expect(a.toasts.current?.error).toBe(true);
    expect(a.toasts.current?.text).toContain("read-only");
  });

  it("rolls back on a network failure too, and undo reverses a move", async () => {
    let fail = true;
    const { a, sent } = app((calls) => {
      if (fail) throw new Error("offline");
      return calls.map(([n, , id]) => [n, { updated: { e2: null } }, id]);
    });
    await a.actions.move(["e2"], "m2").catch(() => undefined);
    expect(a.list.model.ids).toEqual(["e1", "e2"]);
    fail = false;
    await a.actions.move(["e2"], "m2");
    expect(a.list.model.ids).toEqual(["e1"]);
    expect(a.list.cache.get("e2")?.mailboxIds).toEqual({ m2: true });
    a.live.refresh = async () => undefined; // no server to refresh from here
    await a.actions.undo();
    expect(a.list.cache.get("e2")?.mailboxIds).toEqual({ m1: true });
    expect(sent.at(-1)).toEqual([["Email/set", { accountId: "a1", update: { e2: { mailboxIds: { m1: true } } } }, "0"]]);
  });
});

// --- live updates and reading: which requests are made -----------------------------------

type Call = [string, Record<string, unknown>, string];

/** A scripted server for the reading and refresh paths: threads of one Email each. */
function server(extra: (c: Call) => unknown = () => undefined) {
  const full = (id: string, keywords: Record<string, boolean> = {}) => ({
    ...email(id, "m1"), keywords, cc: null, bcc: null, replyTo: null, sentAt: null, messageId: null, inReplyTo: null,
    references: null, textBody: [], htmlBody: [], attachments: [], bodyValues: {}, blobId: `b${id}`,
  });
  let asked: string[] = [];
  return (calls: Call[]) =>
    calls.map((c) => {
      const [name, args, id] = c;
      const own = extra(c);
      if (own !== undefined) return [name, own, id];
      if (name === "Email/get" && id === "e") {
        asked = args.ids as string[];
        return [name, { list: asked.map((x) => ({ id: x, threadId: `t${x}` })), state: "s1" }, id];
      }
      if (name === "Thread/get") return [name, { list: asked.map((x) => ({ id: `t${x}`, emailIds: [x] })), state: "s1" }, id];
      if (name === "Email/get" && id === "b") return [name, { list: asked.map((x) => full(x)), state: "s1" }, id];
      if (name === "Email/set") return [name, { updated: Object.fromEntries(Object.keys(args.update as object).map((k) => [k, null])), oldState: "s1", newState: "s2" }, id];
      return [name, { list: [], state: "s1" }, id];
    });
}

const settle = () => new Promise((r) => setTimeout(r, 0));
const names = (sent: unknown[]) => (sent as Call[][]).map((req) => req.map((c) => c[0]));
const onPush = (a: MailApp, c: TypeStates | null) => a.live.onPush(c);

describe("reading", () => {
  it("opens a neighbour fetched ahead without a request, and marks read without waiting", async () => {
    const { a, sent } = app(server());
    a.phase = "ready";
    await a.reader.openThread("e1");
    expect(a.reader.open?.emailId).toBe("e1");
    await settle();
    // 1: the thread of e1; then, not waited for: mark read, and e2 fetched ahead.
    expect(names(sent)).toEqual([
      ["Email/get", "Thread/get", "Email/get"],
      ["Email/set"],
      ["Email/get", "Thread/get", "Email/get"],
    ]);
    expect((sent[2] as Call[])[0]?.[1].ids).toEqual(["e2"]);
    const before = sent.length;
    await a.reader.openThread("e2");
    expect(a.reader.open?.emailId).toBe("e2");
    expect(a.reader.open?.emails.map((e) => e.id)).toEqual(["e2"]);
    // Only the mark-read of e2 went out.
    expect(names(sent.slice(before))).toEqual([["Email/set"]]);
  });

  it("patches a keyword change of the open message in, without fetching it again", async () => {
    const flagged = { ...email("e1", "m1"), keywords: { $seen: true, $flagged: true } };
    const { a, sent } = app(
      server(([name, , id]) => {
        if (name === "Email/changes") return { created: [], updated: ["e1"], destroyed: [], newState: "s3", hasMoreChanges: false };
        if (name === "Email/get" && id === "gu") return { list: [flagged], state: "s3" };
        if (name === "Email/queryChanges") return { oldQueryState: "q1", newQueryState: "q3", removed: ["e1"], added: [{ id: "e1", index: 0 }], total: 2 };
        return undefined;
      }),
    );
    a.phase = "ready";
    await a.reader.openThread("e1", false);
    a.live.emailState = "s1";
    const before = sent.length;
    await onPush(a, { a1: { Email: "s3" } });
    expect(names(sent.slice(before))).toEqual([["Email/changes", "Email/get", "Email/get", "Email/queryChanges", "Email/get"]]);
    expect(a.reader.open?.emails[0]?.keywords.$flagged).toBe(true);
    expect(a.list.model.ids).toEqual(["e1", "e2"]);
  });
});

describe("live updates", () => {
  it("a push naming only mailboxes reads only the mailboxes that changed", async () => {
    const { a, sent } = app(
      server(([name, , id]) => {
        if (name === "Mailbox/changes") return { created: [], updated: ["m1"], destroyed: [], newState: "s2", hasMoreChanges: false, oldState: "s1" };
        if (name === "Mailbox/get" && id === "mgu") return { list: [{ ...a.folders.mailboxes[0], unreadEmails: 1 }], state: "s2" };
        return undefined;
      }),
    );
    a.phase = "ready";
    a.live.emailState = "s2";
    a.folders.mailboxState = "s1";
    vi.useFakeTimers();
    try {
      await onPush(a, { a1: { Mailbox: "s2", Email: "s2" } });
      // Counts alone wait for the pushes to pause (reading is not queued behind them).
      expect(sent.length).toBe(0);
      await vi.advanceTimersByTimeAsync(450);
    } finally {
      vi.useRealTimers();
    }
    await settle();
    expect(names(sent)).toEqual([["Mailbox/changes", "Mailbox/get", "Mailbox/get"]]);
    expect(a.folders.mailbox("m1")?.unreadEmails).toBe(1);
    expect(a.folders.mailbox("m2")).toBeDefined();
    expect(a.folders.mailboxState).toBe("s2");
    // A push of a state we hold already asks nothing.
    await onPush(a, { a1: { Mailbox: "s2", Email: "s2" } });
    expect(sent.length).toBe(1);
  });

  it("our own keyword change, made on the state we hold, needs no Email/changes round", async () => {
    const { a, sent } = app(server(([name]) => (name === "Mailbox/changes" ? { created: [], updated: [], destroyed: [], newState: "s2", hasMoreChanges: false } : undefined)));
    a.phase = "ready";
    a.live.emailState = "s1";
    a.folders.mailboxState = "s1";
    await a.actions.setKeyword(["e1"], "$seen", true);
    expect(a.live.emailState).toBe("s2");
    // The unread count moved at once.
    expect(a.folders.mailbox("m1")?.unreadEmails).toBe(1);
    const before = sent.length;
    vi.useFakeTimers();
    try {
      await onPush(a, { a1: { Email: "s2", Mailbox: "s2" } });
      await vi.advanceTimersByTimeAsync(450);
    } finally {
      vi.useRealTimers();
    }
    await settle();
    expect(names(sent.slice(before))).toEqual([["Mailbox/changes", "Mailbox/get", "Mailbox/get"]]);
  });

  it("a change made elsewhere in between is not skipped", async () => {
    const { a } = app(server(([name]) => (name === "Email/set" ? { updated: { e1: null }, oldState: "s5", newState: "s6" } : undefined)));
    a.phase = "ready";
    a.live.emailState = "s1";
    await a.actions.setKeyword(["e1"], "$flagged", true);
    expect(a.live.emailState).toBe("s1");
  });
});

describe("sending", () => {
  /** An app ready to send, whose server answers with `answer`. */
  function sender(answer: (calls: [string, Record<string, unknown>, string][]) => unknown[]) {
    const r = app(answer);
    r.a.jmap.methods.add("EmailSubmission/set");
    r.a.folders.mailboxes.push({ id: "m3", name: "Drafts", role: "drafts", parentId: null, sortOrder: 0, totalEmails: 0, unreadEmails: 0, totalThreads: 0, unreadThreads: 0 });
    r.a.composer.identities = [{ id: "i1", name: "Alice", email: "alice@example.org" }];
    r.a.composer.draft = { emailId: null, identityId: "i1", to: "bob@example.org", cc: "", bcc: "", subject: "Plans", body: "Hi", rich: false, inReplyTo: null, references: null, attachments: [] };
    return r;
  }

  it("keeps the composer and the draft when the server refuses to send", async () => {
    const { a } = sender((calls) => [
      ["Email/set", { created: { draft: { id: "e9" } } }, calls[0]?.[2]],
      ["EmailSubmission/set", { notCreated: { sub: { type: "forbiddenToSend", description: "this account has no outgoing mail server (SMTP) configured" } } }, calls[1]?.[2]],
    ]);
    expect(await a.composer.send()).toBe(false);
    expect(a.composer.draft?.emailId).toBe("e9");
    expect(a.composer.status).toContain("Not sent: this account has no outgoing mail server (SMTP) configured");
    expect(a.composer.status).toContain("Drafts");
    expect(a.toasts.current?.text ?? "").not.toContain("sent.");
  });

  it("says queued with Undo, then follows the submission to the server's refusal", async () => {
    let status: Record<string, unknown> = { id: "s1", undoStatus: "pending", sendAt: new Date(Date.now() + 5000).toISOString(), deliveryStatus: { "bob@example.org": { smtpReply: "", delivered: "queued" } } };
    const { a, sent } = sender((calls) =>
      calls.map(([n, args, id]) => {
        if (n === "Email/set") return [n, { created: { draft: { id: "e9" } } }, id];
        if (n === "EmailSubmission/set" && args.create) return [n, { created: { sub: { id: "s1", undoStatus: "pending", sendAt: status.sendAt } } }, id];
        if (n === "EmailSubmission/set") return [n, { updated: { s1: null } }, id];
        return [n, { list: [status] }, id];
      }),
    );
    expect(await a.composer.send()).toBe(true);
    expect(a.composer.draft).toBeNull();
    expect(a.sending.outgoing?.phase).toBe("queued");
    expect(a.toasts.current?.text).toMatch(/^Sending “Plans” in \d s…$/);
    expect(a.toasts.current?.undo).toBeDefined();
    status = { ...status, undoStatus: "final", deliveryStatus: { "bob@example.org": { smtpReply: "550 5.1.1 no such user", delivered: "no" } } };
    await a.sending.check();
    expect(a.sending.outgoing?.phase).toBe("failed");
    expect(a.toasts.current?.error).toBe(true);
    expect(a.toasts.current?.undo).toBeUndefined();
    expect(a.toasts.current?.text).toBe("Not sent: 550 5.1.1 no such user. “Plans” is in Drafts.");
    // Undo is offered only in the window: nothing is sent for a settled message.
    const before = sent.length;
    await a.sending.cancel();
    expect(sent.length).toBe(before);
  });

  it("Undo cancels the submission and says the message is back in Drafts", async () => {
    let status: Record<string, unknown> = { id: "s1", undoStatus: "pending", sendAt: new Date(Date.now() + 5000).toISOString(), deliveryStatus: {} };
    const { a, sent } = sender((calls) =>
      calls.map(([n, args, id]) => {
        if (n === "Email/set") return [n, { created: { draft: { id: "e9" } } }, id];
        if (n === "EmailSubmission/set" && args.create) return [n, { created: { sub: { id: "s1", undoStatus: "pending", sendAt: status.sendAt } } }, id];
        if (n === "EmailSubmission/set") {
          status = { ...status, undoStatus: "canceled" };
          return [n, { updated: { s1: null } }, id];
        }
        return [n, { list: [status] }, id];
      }),
    );
    await a.composer.send();
    a.toasts.current?.undo?.();
    await vi.waitFor(() => expect(a.sending.outgoing?.phase).toBe("canceled"));
    expect(JSON.stringify(sent)).toContain('"update":{"s1":{"undoStatus":"canceled"}}');
    expect(a.toasts.current?.text).toBe("Canceled: “Plans” is back in Drafts.");
  });
});
