// Several accounts in one MailApp, against a scripted transport: every call names the
// account of what it is about, and a push about another account reaches its folders.
import "fake-indexeddb/auto";
import { beforeAll, describe, expect, it, vi } from "vitest";
import { Jmap, type Session } from "./jmap";
import { enableOffline, resolve } from "./offline";
import { MailApp } from "./state";
import { messageRoute } from "./app/notifications";
import type { Email, Mailbox } from "./model";

type Call = [string, Record<string, unknown>, string];
const box = (id: string, role: string | null, name = role ?? id): Mailbox => ({
  id, name, role, parentId: null, sortOrder: 0, totalEmails: 1, unreadEmails: 1, totalThreads: 1, unreadThreads: 1,
});
const mail = (id: string, mailbox: string, at: string): Email => ({
  id, threadId: `t${id}`, mailboxIds: { [mailbox]: true }, keywords: {}, from: null, to: null,
  subject: id, preview: "", receivedAt: at, hasAttachment: false, size: 1,
});
const account = (name: string) => ({ name, isPersonal: true, isReadOnly: false, accountCapabilities: {} });

/** A MailApp with accounts a1 (mailboxes m1, m2) and a2 (m5, m6); `answer` scripts the
 * JMAP answers, `session()` the Session (read again when asked). */
function twoAccounts(answer: (c: Call) => unknown, session = () => ({ a1: account("Work"), a2: account("Home") }), net = { up: true }) {
  const sent: Call[][] = [];
  let sessions = 0;
  const fetchFn = (async (url: RequestInfo | URL, init?: RequestInit) => {
    // What fetch does without a network.
    if (!net.up) throw new TypeError("Failed to fetch");
    if (String(url).endsWith("/jmap/session")) {
      sessions++;
      return new Response(JSON.stringify({ accounts: session(), primaryAccounts: { "urn:ietf:params:jmap:mail": "a1" }, apiUrl: "/jmap/api" }), { status: 200 });
    }
    const body = JSON.parse(String(init?.body)) as { methodCalls: Call[] };
    sent.push(body.methodCalls);
    const empty = (name: string) => (name === "Email/query" ? { ids: [], total: 0, queryState: "q0", position: 0 } : { list: [], state: "s1" });
    const out = body.methodCalls.map((c) => [c[0], answer(c) ?? empty(c[0]), c[2]]);
    return new Response(JSON.stringify({ methodResponses: out, sessionState: "s" }), { status: 200 });
  }) as typeof fetch;
  const jmap = new Jmap(fetchFn);
  jmap.session = { apiUrl: "/jmap/api" } as Session;
  jmap.methods.add("Email/set");
  const a = new MailApp(jmap);
  a.session = {
    capabilities: {}, accounts: session(), primaryAccounts: { "urn:ietf:params:jmap:mail": "a1" }, username: "alice",
    apiUrl: "/jmap/api", downloadUrl: "", uploadUrl: "", eventSourceUrl: "", state: "s",
  };
  a.accountId = "a1";
  a.phase = "ready";
  a.folders.put("a1", [box("m1", "inbox"), box("m2", "trash")], "ms1");
  a.folders.put("a2", [box("m5", "inbox"), box("m6", "trash")], "ms5");
  return { a, sent, sessions: () => sessions };
}

const settle = () => new Promise((r) => setTimeout(r, 0));

/** The address bar, without a browser. */
function addressBar(): void {
  const loc = { hash: "" };
  vi.stubGlobal("location", loc);
  vi.stubGlobal("history", { replaceState: (_s: unknown, _t: string, h: string) => void (loc.hash = h) });
}
beforeAll(addressBar);

describe("several accounts", () => {
  it("opening another account's folder queries that account", async () => {
    const { a, sent } = twoAccounts(() => undefined);
    await a.list.selectMailbox("m5");
    expect(a.accountId).toBe("a2");
    const q = sent.flat().find((c) => c[0] === "Email/query");
    expect(q?.[1].accountId).toBe("a2");
    expect(q?.[1].filter).toEqual({ inMailbox: "m5" });
  });

  it("the unified Inbox is one request with a query per account, merged newest first", async () => {
    const emails: Record<string, Email[]> = {
      a1: [mail("e1", "m1", "2026-12-05T10:00:00Z"), mail("e2", "m1", "2026-12-01T10:00:00Z")],
      a2: [mail("e7", "m5", "2026-12-03T10:00:00Z")],
    };
    const { a, sent } = twoAccounts(([name, args]) => {
      const acc = String(args.accountId);
      if (name === "Email/query") return { ids: emails[acc]?.map((e) => e.id), total: emails[acc]?.length, queryState: "q", position: 0 };
      if (name === "Email/get") return { list: emails[acc], state: `s-${acc}` };
      return undefined;
    });
    await a.list.selectUnified("inbox");
    expect(sent.length).toBe(1);
    expect(sent[0]?.filter((c) => c[0] === "Email/query").map((c) => [c[1].accountId, c[1].filter])).toEqual([
      ["a1", { inMailbox: "m1" }],
      ["a2", { inMailbox: "m5" }],
    ]);
    expect(a.list.model.ids).toEqual(["e1", "e7", "e2"]);
    expect(a.list.account("e7")).toBe("a2");
  });

  it("acts on each Email in its own account, in one request", async () => {
    const { a, sent } = twoAccounts(([name, args]) =>
      name === "Email/set" ? { updated: Object.fromEntries(Object.keys(args.update as object).map((k) => [k, null])) } : undefined,
    );
    a.list.keep("a1", [mail("e1", "m1", "2026-12-05T10:00:00Z")]);
    a.list.keep("a2", [mail("e7", "m5", "2026-12-03T10:00:00Z")]);
    await a.actions.setKeyword(["e1", "e7"], "$flagged", true);
    const sets = sent.flat().filter((c) => c[0] === "Email/set");
    expect(sets.map((c) => [c[1].accountId, Object.keys(c[1].update as object)])).toEqual([
      ["a1", ["e1"]],
      ["a2", ["e7"]],
    ]);
    expect(a.list.cache.get("e7")?.keywords.$flagged).toBe(true);
  });

  it("a push about another account's mailboxes reads them; an account not seen yet reads the Session", async () => {
    let accounts = { a1: account("Work"), a2: account("Home") };
    const { a, sent, sessions } = twoAccounts(
      ([name, args]) => (name === "Mailbox/get" && args.accountId === "a2" ? { list: [box("m5", "inbox"), box("m6", "trash"), box("m9", null, "Family")], state: "ms6" } : undefined),
      () => accounts,
    );
    await a.live.onPush({ a2: { Mailbox: "ms6" } });
    await settle();
    expect(sent.flat().some((c) => c[0] === "Mailbox/get" && c[1].accountId === "a2")).toBe(true);
    expect(a.folders.of("a2").map((m) => m.name)).toContain("Family");
    accounts = { ...accounts, a3: account("Extra") } as typeof accounts;
    await a.live.onPush({ a3: { Mailbox: "x1" } });
    for (let i = 0; i < 5; i++) await settle();
    expect(sessions()).toBeGreaterThan(0);
    expect(a.accountIds()).toContain("a3");
    expect(sent.flat().some((c) => c[0] === "Mailbox/get" && c[1].accountId === "a3")).toBe(true);
  });

  it("compose for an account without identity offers to make one, then goes on", async () => {
    const { a, sent } = twoAccounts(([name, args]) => {
      if (name === "Identity/set") return { created: { i: { id: "i9" } } };
      if (name === "Identity/get" && args.accountId === "a2") return { list: [{ id: "i9", name: "Dave", email: "dave@example.org" }], state: "s" };
      return undefined;
    });
    a.jmap.methods.add("Email/set");
    a.composer.identitiesOf.set("a1", [{ id: "i1", name: "Alice", email: "alice@example.org" }]);
    a.switchAccount("a2");
    a.composer.start("new");
    expect(a.composer.draft).toBeNull();
    expect(a.composer.needIdentity).toBe("a2");
    expect(a.toasts.current).toBeNull();
    expect(await a.composer.createIdentity("a2", "Dave", "dave@example.org")).toBe("");
    expect(sent.flat().find((c) => c[0] === "Identity/set")?.[1]).toEqual({ accountId: "a2", create: { i: { name: "Dave", email: "dave@example.org" } } });
    expect(a.composer.draft?.identityId).toBe("i9");
    expect(a.composer.account()).toBe("a2");
  });

  it("a save the server refuses leaves the previous draft in place", async () => {
    const { a, sent } = twoAccounts(([name, args]) =>
      name === "Email/set" && args.create ? { notCreated: { draft: { type: "invalidProperties", description: "no such blob" } } } : undefined,
    );
    a.composer.identitiesOf.set("a1", [{ id: "i1", name: "Alice", email: "alice@example.org" }]);
    a.folders.put("a1", [box("m1", "inbox"), box("m3", "drafts")], "ms1");
    a.composer.draft = { emailId: "e40", identityId: "i1", to: "bob@example.org", cc: "", bcc: "", subject: "Plans", body: "Hi", rich: false, inReplyTo: null, references: null, attachments: [] };
    await a.composer.save();
    const sets = sent.flat().filter((c) => c[0] === "Email/set");
    expect(sets.some((c) => c[1].destroy !== undefined)).toBe(false);
    expect(a.composer.draft?.emailId).toBe("e40");
    expect(a.composer.status).toContain("could not be saved: no such blob");
  });
});

/** Each account's mailboxes with their Emails, as a server answers them: the list, the
 * threads (one message each) and the bodies. */
function mailServer(mail_: Record<string, Record<string, Email[]>>, more: (c: Call) => unknown = () => undefined) {
  const all = (acc: string) => Object.values(mail_[acc] ?? {}).flat();
  // The answers so far, for back-references (RFC 8620 3.7) to earlier calls.
  const answered = new Map<string, [string, unknown]>();
  const answer = ([name, raw]: Call): unknown => {
    const args = resolve(raw, answered) ?? raw;
    const acc = String(args.accountId);
    if (name === "Mailbox/get") return { list: Object.keys(mail_[acc] ?? {}).map((id) => box(id, id === "m1" || id === "m5" ? "inbox" : null)), state: `ms-${acc}` };
    if (name === "Email/query") {
      const ids = (mail_[acc]?.[String((args.filter as { inMailbox?: string }).inMailbox)] ?? []).map((e) => e.id);
      return { ids, total: ids.length, queryState: "q", position: 0 };
    }
    if (name === "Thread/get") return { list: (args.ids as string[]).map((t) => ({ id: t, emailIds: [t.slice(1)] })), state: "t" };
    if (name === "Email/get") {
      const list = all(acc).filter((e) => (args.ids as string[]).includes(e.id));
      const full = Array.isArray(args.properties) && args.properties.includes("bodyValues");
      return { list: full ? list.map((e) => ({ ...e, textBody: [{ partId: "1", type: "text/plain" }], htmlBody: [], attachments: [], bodyValues: { 1: { value: `body of ${e.id}` } } })) : list, state: `s-${acc}` };
    }
    return undefined;
  };
  return (c: Call): unknown => {
    const a = more(c) ?? answer(c);
    answered.set(c[2], [c[0], a]);
    return a;
  };
}

describe("offline reading of every account", () => {
  it("fetches ahead each account's mailboxes, threads and the unified Inbox, which then open without a network", async () => {
    const nav = { onLine: true };
    vi.stubGlobal("window", { addEventListener: () => undefined });
    vi.stubGlobal("navigator", nav);
    const net = { up: true };
    const { a, sent } = twoAccounts(
      mailServer({
        a1: { m1: [mail("e1", "m1", "2026-12-05T10:00:00Z")], m2: [] },
        a2: { m5: [mail("e7", "m5", "2026-12-03T10:00:00Z"), mail("e8", "m5", "2026-12-01T10:00:00Z")], m6: [] },
      }),
      undefined,
      net,
    );
    const o = await enableOffline(a);
    await o.fetchAhead();
    expect(sent.flat().some((c) => c[0] === "Email/query" && c[1].accountId === "a2")).toBe(true);
    // Every answer is written to IndexedDB as it goes by: let the writes land (bounded).
    for (let i = 0; i < 50; i++) await settle();

    net.up = false;
    nav.onLine = false;
    await a.list.selectMailbox("m5");
    expect(a.accountId).toBe("a2");
    expect(a.list.model.ids).toEqual(["e7", "e8"]);
    await a.reader.openThread("e8");
    expect(a.reader.open?.emails.map((e) => e.id)).toEqual(["e8"]);
    expect(a.reader.open?.accountId).toBe("a2");
    await a.list.selectUnified("inbox");
    expect(a.list.model.ids).toEqual(["e1", "e7", "e8"]);
    expect(o.fromCache).toBe(true);
    await o.destroy(a.jmap);
    vi.unstubAllGlobals();
  });
});

/** The browser's notifications as the page makes them: granted, each one recorded. */
function notificationsShown() {
  class Shown {
    static permission = "granted";
    onclick: (() => void) | null = null;
    tag: string;
    constructor(
      public title: string,
      opts: { body: string; tag: string },
    ) {
      this.tag = opts.tag;
      shown.push(this);
    }
    close(): void {}
  }
  const shown: Shown[] = [];
  addressBar();
  vi.stubGlobal("Notification", Shown);
  vi.stubGlobal("document", { hidden: true });
  vi.stubGlobal("window", { addEventListener: () => undefined, focus: () => undefined });
  return shown;
}

describe("notifications of every account", () => {
  const inboxes = () => ({
    a1: { m1: [mail("e1", "m1", "2026-12-05T10:00:00Z")], m2: [] as Email[] },
    a2: { m5: [mail("e7", "m5", "2026-12-03T10:00:00Z")], m6: [] as Email[] },
  });
  /** A server whose a2 gets `e9` in its Inbox past its first state. */
  const withNewMail = (data: ReturnType<typeof inboxes>) =>
    mailServer(data, ([name, args]) =>
      name === "Email/changes" && args.accountId === "a2"
        ? { oldState: args.sinceState, newState: "s-a2b", created: args.sinceState === "s-a2" ? ["e9"] : [], updated: [], destroyed: [], hasMoreChanges: false }
        : undefined,
    );

  it("new unread mail in another account's Inbox is told, named after it, and a click opens it", async () => {
    const shown = notificationsShown();
    const data = inboxes();
    const { a } = twoAccounts(withNewMail(data));
    a.notifications.on = true;
    a.notifications.push = false;
    await a.list.selectMailbox("m1");
    await a.notifications.prime();
    data.a2.m5.unshift(mail("e9", "m5", "2026-12-06T10:00:00Z"));
    await a.live.onPush({ a2: { Email: "s-a2b" } });
    for (let i = 0; i < 10; i++) await settle();
    expect(shown.map((n) => [n.title, n.tag])).toEqual([["New mail (Home)", "e9"]]);
    // The same state again tells nothing more.
    await a.live.onPush({ a2: { Email: "s-a2b" } });
    for (let i = 0; i < 10; i++) await settle();
    expect(shown.length).toBe(1);
    shown[0]?.onclick?.();
    expect(location.hash).toBe("#/message/a2/e9");
    const r = messageRoute(location.hash);
    if (r) await a.notifications.openRoute(r);
    expect(a.accountId).toBe("a2");
    expect(a.reader.open?.emailId).toBe("e9");
    vi.unstubAllGlobals();
  });

  it("in the unified Inbox each new message is told once, named after its account", async () => {
    const shown = notificationsShown();
    const data = inboxes();
    const { a } = twoAccounts(withNewMail(data));
    a.notifications.on = true;
    a.notifications.push = false;
    await a.list.selectUnified("inbox");
    await a.notifications.prime();
    data.a2.m5.unshift(mail("e9", "m5", "2026-12-06T10:00:00Z"));
    await a.live.onPush({ a2: { Email: "s-a2b" } });
    for (let i = 0; i < 10; i++) await settle();
    expect(a.list.model.ids).toContain("e9");
    expect(shown.map((n) => [n.title, n.tag])).toEqual([["New mail (Home)", "e9"]]);
    vi.unstubAllGlobals();
  });
});
