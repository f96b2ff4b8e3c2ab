// The day's download budget in the sidebar: said only once it holds bodies back.
import { describe, expect, it } from "vitest";
import { syncText } from "./ui/Sidebar";

describe("download budget", () => {
  const download = { usedMb: 2251, limitMb: 2500, resumesAt: 0 };
  it("says when the background bodies stopped at the budget", () => {
    const note = "download budget reached: 2,251 of 2,500 MB today; bodies resume at 00:00 UTC";
    const s = syncText({ status: "ok", download: { ...download, reached: true, note } });
    expect(s).toEqual({ text: note, error: false, fraction: null });
  });

  it("says nothing while under it", () => {
    const s = syncText({ status: "ok", download: { ...download, reached: false, note: "" } });
    expect(s.text).toBe("");
  });
});
