import { describe, expect, it } from "vitest";
import { parseSearch, tokenize } from "./search";
import type { Mailbox } from "./model";

const mb = (id: string, name: string, role: string | null): Mailbox => ({
  id, name, role, parentId: null, sortOrder: 0, totalEmails: 0, unreadEmails: 0, totalThreads: 0, unreadThreads: 0,
});
const boxes = [mb("m1", "INBOX", "inbox"), mb("m2", "Sent", "sent"), mb("m3", "Projects", null)];

describe("search", () => {
  it("keeps quoted phrases together", () => {
    expect(tokenize('subject:"lunch plans" "exact words" x')).toEqual(["subject:lunch plans", "exact words", "x"]);
  });
  it("maps every operator to a JMAP condition", () => {
    const p = parseSearch("from:ann to:bob subject:\"q3 report\" has:attachment before:2024-05-01 after:2024-01-01 in:sent is:unread budget", boxes);
    expect(p.filter).toEqual({
      from: "ann", to: "bob", subject: "q3 report", hasAttachment: true,
      before: "2024-05-01T00:00:00Z", after: "2024-01-02T00:00:00Z",
      inMailbox: "m2", notKeyword: "$seen", text: "budget",
    });
    expect(p.text).toBe("budget");
    expect(p.unknown).toEqual([]);
  });
  it("ANDs repeated keys and resolves folders by name", () => {
    const p = parseSearch("from:ann from:bob in:projects", boxes);
    expect(p.filter).toEqual({ operator: "AND", conditions: [{ from: "ann" }, { from: "bob" }, { inMailbox: "m3" }] });
  });
  it("reports what it cannot understand", () => {
    const p = parseSearch("in:nowhere before:yesterday has:wings", boxes);
    expect(p.filter).toBeNull();
    expect(p.unknown).toEqual(["in:nowhere", "before:yesterday", "has:wings"]);
  });
});
