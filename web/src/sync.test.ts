// The account's sync status in the sidebar: the progress bar's fraction and the words.
import { describe, expect, it } from "vitest";
import { syncText } from "./ui/Sidebar";

describe("sync progress", () => {
  it("counts headers and bodies as the two halves of the bar", () => {
    const s = syncText({ status: "syncing", progress: { total: 200, headers: 200, bodies: 50 } });
    expect(s.fraction).toBeCloseTo(0.625);
    expect(s.text).toBe("Syncing: 200 of 200 messages");
    expect(s.error).toBe(false);
  });

  it("has no bar without a total, and never more than full", () => {
    expect(syncText({ status: "new", progress: { total: 0, headers: 0, bodies: 0 } }).fraction).toBeNull();
    expect(syncText({ status: "syncing" }).text).toBe("Syncing…");
    expect(syncText({ status: "syncing", progress: { total: 10, headers: 15, bodies: 15 } }).fraction).toBe(1);
  });

  it("says what went wrong in plain words, without a bar", () => {
    const r = syncText({ status: "retrying", error: "connection refused" });
    expect(r.error).toBe(true);
    expect(r.fraction).toBeNull();
    expect(r.text).toContain("cannot be reached");
    expect(r.text).toContain("connection refused");
    const a = syncText({ status: "auth_failed" });
    expect(a.error).toBe(true);
    expect(a.text).toContain("refused the password");
  });

  it("shows nothing once the account is in sync", () => {
    expect(syncText({ status: "ok" })).toEqual({ text: "", error: false, fraction: null });
    expect(syncText(undefined).text).toBe("");
  });
});

describe("following a sync to its end", () => {
  it("reads the status until the account is synced, so a full bar does not stay", async () => {
    const { Jmap } = await import("./jmap");
    const { MailApp } = await import("./state");
    const sync = (status: string, done: number) => ({
      accounts: {
        a1: {
          name: "mail",
          isPersonal: true,
          isReadOnly: false,
          accountCapabilities: { "urn:tidings:params:sync": { status, progress: { total: 10, headers: done, bodies: done } } },
        },
      },
    });
    // The server: syncing, then complete but still syncing, then ok (and no push ever).
    const answers = [sync("syncing", 5), sync("syncing", 10), sync("ok", 10)];
    let reads = 0;
    const fetchFn = (async () => {
      const s = answers[Math.min(reads, answers.length - 1)];
      reads++;
      return new Response(JSON.stringify(s), { status: 200 });
    }) as unknown as typeof fetch;
    const a = new MailApp(new Jmap(fetchFn));
    a.boot.syncPollMs = 1;
    await a.boot.reloadSession();
    expect(reads).toBe(3);
    expect(a.boot.sync.a1?.status).toBe("ok");
    expect(syncText(a.boot.sync.a1).fraction).toBeNull();
  });
});

describe("a finished sync is not drawn as a full bar", () => {
  it("keeps following through a failed read of the Session, to the end of the sync", async () => {
    const { Jmap } = await import("./jmap");
    const { MailApp } = await import("./state");
    const status = (s: string) => ({
      accounts: { a1: { name: "mail", isPersonal: true, isReadOnly: false, accountCapabilities: { "urn:tidings:params:sync": { status: s, progress: { total: 2503, headers: 2503, bodies: 2503 } } } } },
    });
    // Syncing and complete, then the server restarts (one 502), then the account is ok.
    let reads = 0;
    const fetchFn = (async () => {
      reads++;
      if (reads === 2) return new Response("bad gateway", { status: 502 });
      return new Response(JSON.stringify(status(reads < 3 ? "syncing" : "ok")), { status: 200 });
    }) as unknown as typeof fetch;
    const a = new MailApp(new Jmap(fetchFn));
    a.boot.syncPollMs = 1;
    await a.boot.reloadSession();
    expect(a.boot.sync.a1?.status).toBe("ok");
    expect(syncText(a.boot.sync.a1)).toEqual({ text: "", error: false, fraction: null });
  });
});
