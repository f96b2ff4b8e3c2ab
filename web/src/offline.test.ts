// Offline replay resolves back-references (RFC 8620 3.7) the way the server does, so that a
// request answered from what was kept gets the same ids the server would have used.
import { describe, expect, it } from "vitest";
import { pointer, resolve } from "./offline";

describe("back-references", () => {
  const threads = { list: [{ id: "t1", emailIds: ["e1", "e2"] }, { id: "t2", emailIds: ["e3"] }] };

  it("follows a plain path, and maps and flattens over `*`", () => {
    expect(pointer({ ids: ["a", "b"] }, "/ids")).toEqual(["a", "b"]);
    expect(pointer({ list: [{ threadId: "t1" }, { threadId: "t2" }] }, "/list/*/threadId")).toEqual(["t1", "t2"]);
    // RFC 8620 3.7: an array reached through `*` is flattened into the result.
    expect(pointer(threads, "/list/*/emailIds")).toEqual(["e1", "e2", "e3"]);
    expect(pointer({ "a/b": { "c~d": 1 } }, "/a~1b/c~0d")).toBe(1);
  });

  it("replaces each #argument by its value, and refuses a reference to a call not answered", () => {
    const answered = new Map<string, [string, unknown]>([["t", ["Thread/get", threads]]]);
    const args = { accountId: "a1", "#ids": { resultOf: "t", name: "Thread/get", path: "/list/*/emailIds" }, properties: ["subject"] };
    expect(resolve(args, answered)).toEqual({ accountId: "a1", ids: ["e1", "e2", "e3"], properties: ["subject"] });
    expect(resolve({ "#ids": { resultOf: "x", name: "Thread/get", path: "/ids" } }, answered)).toBeNull();
    // Answered by another method than the one named: not followed (RFC 8620 3.7).
    expect(resolve({ "#ids": { resultOf: "t", name: "Email/get", path: "/list/*/id" } }, answered)).toBeNull();
  });
});
