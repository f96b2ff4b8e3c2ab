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
