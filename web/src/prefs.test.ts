// The saved appearance: what is read back, whatever is stored.
import { describe, expect, it } from "vitest";
import { parseAppearance } from "./app/prefs";

describe("appearance preferences", () => {
  it("reads back what was saved", () => {
    const a = { theme: "dark", density: "compact", pane: "bottom", listWidth: 640 };
    expect(parseAppearance(JSON.stringify(a))).toEqual(a);
  });

  it("falls back to the defaults for nothing, broken JSON or unknown values", () => {
    const d = { theme: "system", density: "comfortable", pane: "right", listWidth: 0 };
    expect(parseAppearance(null)).toEqual(d);
    expect(parseAppearance("{not json")).toEqual(d);
    expect(parseAppearance("[1,2]")).toEqual(d);
    expect(parseAppearance(JSON.stringify({ theme: "neon", density: 3, pane: null, listWidth: -5 }))).toEqual(d);
  });

  it("keeps each valid field beside invalid ones", () => {
    const a = parseAppearance(JSON.stringify({ theme: "light", density: "huge", listWidth: "512.4" }));
    expect(a).toEqual({ theme: "light", density: "comfortable", pane: "right", listWidth: 512 });
  });
});
