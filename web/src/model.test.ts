import { describe, expect, it } from "vitest";
import {
  type Email, Optimistic, applyEmailChanges, applyQueryChanges, contiguousEnd, emptyList, mailboxTree, trimCache,
  missingWindows, patchEmail, setWindow,
} from "./model";

const email = (id: string, at: string, mailbox = "m1", thread = "t" + id): Email => ({
  id, threadId: thread, mailboxIds: { [mailbox]: true }, keywords: {}, from: null, to: null,
  subject: id, preview: "", receivedAt: at, hasAttachment: false, size: 1,
});

describe("list windows", () => {
  it("places windows sparsely and finds what is missing", () => {
    let l = setWindow(emptyList(), 0, ["a", "b"], 100_000, "s1");
    l = setWindow(l, 500, ["x"], 100_000, "s1");
    expect(l.ids[1]).toBe("b");
    expect(l.ids[500]).toBe("x");
    expect(l.ids[2]).toBeUndefined();
    expect(missingWindows(l, 0, 120, 50)).toEqual([0, 50, 100]);
    expect(missingWindows(setWindow(emptyList(), 0, Array.from({ length: 50 }, (_, i) => `e${i}`), 60, "s"), 0, 60, 50)).toEqual([50]);
  });
  it("drops what was loaded when the query state moved", () => {
    let l = setWindow(emptyList(), 0, ["a", "b"], 10, "s1");
    l = setWindow(l, 5, ["f"], 9, "s2");
    expect(l.ids[0]).toBeUndefined();
    expect(l.ids[5]).toBe("f");
    expect(l.total).toBe(9);
  });
});

describe("Email/queryChanges", () => {
  it("removes, then inserts at ascending indexes (RFC 8620 5.6)", () => {
    const l = setWindow(emptyList(), 0, ["a", "b", "c", "d"], 4, "s1");
    const n = applyQueryChanges(l, {
      oldQueryState: "s1", newQueryState: "s2", total: 5,
      removed: ["b"], added: [{ id: "y", index: 3 }, { id: "x", index: 0 }, { id: "z", index: 1 }],
    });
    expect(n.ids).toEqual(["x", "z", "a", "y", "c"]);
    expect(n.total).toBe(5);
    expect(n.queryState).toBe("s2");
  });
});

describe("Email/queryChanges with upToId", () => {
  it("is asked only for a list loaded without holes from the top", () => {
    expect(contiguousEnd(setWindow(emptyList(), 0, ["a", "b", "c"], 1000, "s1"))).toBe("c");
    expect(contiguousEnd(setWindow(setWindow(emptyList(), 0, ["a"], 1000, "s1"), 500, ["x"], 1000, "s1"))).toBeNull();
    expect(contiguousEnd(emptyList())).toBeNull();
  });
  it("keeps nothing past upToId, where the server reported nothing", () => {
    const l = setWindow(emptyList(), 0, ["a", "b", "c", "d"], 1000, "s1");
    // "b" changed and now sorts past "d" (beyond upToId): removed, not re-added.
    const n = applyQueryChanges(l, {
      oldQueryState: "s1", newQueryState: "s2", total: 1001,
      removed: ["b", "n"], added: [{ id: "n", index: 0 }],
    }, "d");
    expect(n.ids).toEqual(["n", "a", "c", "d"]);
    expect(n.total).toBe(1001);
  });
});

describe("Email/changes without queryChanges", () => {
  const view = { matches: (e: Email) => !!e.mailboxIds.m1, collapseThreads: false };
  it("puts a new message at the top and drops moved and destroyed ones", () => {
    const cache = new Map<string, Email>();
    for (const e of [email("a", "2024-01-03T00:00:00Z"), email("b", "2024-01-02T00:00:00Z"), email("c", "2024-01-01T00:00:00Z")]) cache.set(e.id, e);
    const l = setWindow(emptyList(), 0, ["a", "b", "c"], 3, "s1");
    const fresh = email("n", "2024-02-01T00:00:00Z");
    const moved = { ...email("b", "2024-01-02T00:00:00Z", "m2") };
    cache.set("n", fresh);
    cache.set("b", moved);
    const n = applyEmailChanges(l, view, cache, ["c"], [fresh, moved]);
    expect(n.ids).toEqual(["n", "a"]);
    expect(n.total).toBe(2);
  });
  it("grows the total but does not guess positions past the loaded start", () => {
    const cache = new Map<string, Email>([["a", email("a", "2024-01-03T00:00:00Z")]]);
    const l = setWindow(emptyList(), 0, ["a"], 1000, "s1");
    const old = email("o", "2020-01-01T00:00:00Z");
    cache.set("o", old);
    const n = applyEmailChanges(l, view, cache, [], [old]);
    expect(n.ids.filter(Boolean)).toEqual(["a"]);
    expect(n.total).toBe(1001);
  });
  it("moves a thread's row to its newest message in threads mode", () => {
    const tv = { ...view, collapseThreads: true };
    const cache = new Map<string, Email>();
    const a = email("a", "2024-01-03T00:00:00Z", "m1", "t1");
    const b = email("b", "2024-01-02T00:00:00Z", "m1", "t2");
    cache.set("a", a).set("b", b);
    const l = setWindow(emptyList(), 0, ["a", "b"], 2, "s1");
    const reply = email("r", "2024-02-01T00:00:00Z", "m1", "t2");
    cache.set("r", reply);
    const n = applyEmailChanges(l, tv, cache, [], [reply]);
    expect(n.ids).toEqual(["r", "a"]);
    expect(n.total).toBe(2);
  });
});

describe("optimistic updates", () => {
  it("applies JMAP patches locally", () => {
    const e = patchEmail(email("a", "x"), { "keywords/$seen": true, "mailboxIds/m1": null, "mailboxIds/m9": true });
    expect(e.keywords).toEqual({ $seen: true });
    expect(e.mailboxIds).toEqual({ m9: true });
  });
  it("rolls back what the server refused and keeps what it accepted", () => {
    const cache = new Map<string, Email>([["a", email("a", "x")], ["b", email("b", "y")]]);
    const list = setWindow(emptyList(), 0, ["a", "b"], 2, "s");
    const o = new Optimistic();
    const seq = o.apply(cache, list, new Map([["a", { "keywords/$flagged": true }], ["b", { "keywords/$flagged": true }]]));
    expect(cache.get("a")?.keywords.$flagged).toBe(true);
    const restored = o.rollback(cache, seq, ["b"]);
    expect(restored).toBe(list);
    expect(cache.get("a")?.keywords.$flagged).toBe(true);
    expect(cache.get("b")?.keywords.$flagged).toBeUndefined();
    expect(o.pending.size).toBe(0);
    const seq2 = o.apply(cache, list, new Map([["a", { "keywords/$seen": true }]]));
    o.commit(seq2);
    expect(o.rollback(cache, seq2)).toBeNull();
    expect(cache.get("a")?.keywords.$seen).toBe(true);
  });
});

describe("mailbox tree", () => {
  it("puts roles first and children under parents", () => {
    const m = (id: string, name: string, role: string | null, parentId: string | null = null) => ({
      id, name, role, parentId, sortOrder: 0, totalEmails: 0, unreadEmails: 0, totalThreads: 0, unreadThreads: 0,
    });
    const t = mailboxTree([m("3", "Zeta", null), m("2", "Trash", "trash"), m("1", "INBOX", "inbox"), m("4", "Child", null, "3")]);
    expect(t.map((x) => `${x.depth}${x.mailbox.name}`)).toEqual(["0INBOX", "0Trash", "0Zeta", "1Child"]);
  });
});

describe("a bounded cache on a long list", () => {
  it("drops rows far from the screen, keeping what is pinned, and they are fetched again", () => {
    const ids = Array.from({ length: 1000 }, (_, i) => `e${i}`);
    const l = setWindow(emptyList(), 0, ids, 100_000, "s1");
    const cache = new Map<string, Email>(ids.map((id) => [id, email(id, "2024-01-01T00:00:00Z")]));
    expect(trimCache(l, cache, 900, 950, new Set(), 2000, 100)).toBe(0);
    const dropped = trimCache(l, cache, 900, 950, new Set(["e3"]), 500, 100);
    expect(dropped).toBe(1000 - 200 - 1); // rows 800-999 and e3 stay
    expect(cache.has("e3") && cache.has("e800") && cache.has("e999")).toBe(true);
    expect(cache.has("e10")).toBe(false);
    expect(l.ids[3]).toBe("e3");
    expect(l.ids[10]).toBeUndefined();
    expect(l.ids[800]).toBe("e800");
    expect(missingWindows(l, 0, 100, 100)).toEqual([0]);
  });
});
