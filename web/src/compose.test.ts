import { describe, expect, it } from "vitest";
import { type Source, draftEmail, emptyDraft, forwardDraft, knownAddresses, parseAddresses, replyDraft, richHtml, wrapSelection } from "./compose";

const me = { id: "i1", name: "Alice", email: "alice@example.org" };
const src: Source = {
  from: [{ name: "Bob", email: "bob@example.org" }],
  to: [{ name: "Alice", email: "alice@example.org" }, { name: null, email: "carol@example.org" }],
  cc: [{ name: "Doe, Jane", email: "jane@example.org" }, { name: null, email: "BOB@example.org" }],
  replyTo: null,
  subject: "Plans",
  sentAt: "2026-12-01T10:00:00Z",
  receivedAt: "2026-12-01T10:00:01Z",
  messageId: ["m2@example.org"],
  references: ["m1@example.org"],
  text: "line one\nline two",
  attachments: [{ blobId: "b1", name: "a.pdf", type: "application/pdf", size: 3 }],
};

describe("compose", () => {
  it("parses address lists, quoted names included", () => {
    const r = parseAddresses('Ann <ann@x.org>, bob@y.org; "Doe, J" <j@z.org>, nonsense');
    expect(r.list).toEqual([
      { name: "Ann", email: "ann@x.org" },
      { name: null, email: "bob@y.org" },
      { name: "Doe, J", email: "j@z.org" },
    ]);
    expect(r.bad).toEqual(["nonsense"]);
  });
  it("replies to the sender, threaded and quoted", () => {
    const d = replyDraft(src, me, false);
    expect(d.to).toBe("Bob <bob@example.org>");
    expect(d.cc).toBe("");
    expect(d.subject).toBe("Re: Plans");
    expect(d.inReplyTo).toEqual(["m2@example.org"]);
    expect(d.references).toEqual(["m1@example.org", "m2@example.org"]);
    expect(d.body).toContain("> line two");
    expect(replyDraft({ ...src, subject: "RE: Plans" }, me, false).subject).toBe("RE: Plans");
  });
  it("replies to all but me, without duplicates", () => {
    const d = replyDraft(src, me, true);
    expect(parseAddresses(d.cc).list.map((a) => a.email)).toEqual(["carol@example.org", "jane@example.org"]);
  });
  it("forwards with the attachments", () => {
    const d = forwardDraft(src, me);
    expect(d.subject).toBe("Fwd: Plans");
    expect(d.to).toBe("");
    expect(d.attachments).toHaveLength(1);
    expect(d.body).toContain("Forwarded message");
  });
  it("builds the Email/set create object of a draft", () => {
    const e = draftEmail({ ...replyDraft(src, me, false), attachments: src.attachments }, me, { drafts: "m9" });
    expect(e.mailboxIds).toEqual({ m9: true });
    expect(e.keywords).toEqual({ $draft: true, $seen: true });
    expect(e.to).toEqual([{ name: "Bob", email: "bob@example.org" }]);
    expect(e.cc).toBeNull();
    expect(e.textBody).toEqual([{ partId: "body", type: "text/plain" }]);
    expect(e.attachments).toEqual([{ blobId: "b1", type: "application/pdf", name: "a.pdf", disposition: "attachment" }]);
  });
  it("offers the addresses seen most", () => {
    expect(knownAddresses([src, { from: src.from, to: null }])[0]).toBe("Bob <bob@example.org>");
  });
});

describe("simple rich text", () => {
  const body = (h: string) => h.replace(/^.*<body>|<\/body>.*$/g, "");
  it("marks up bold, italic, links and lists, and escapes everything else", () => {
    expect(body(richHtml("Hello **you** and *all*,\nsee [the plan](https://x.org/p?a=1&b=2).\n\n- one\n- _two_"))).toBe(
      '<p>Hello <strong>you</strong> and <em>all</em>,<br>see <a href="https://x.org/p?a=1&amp;b=2">the plan</a>.</p>\n<ul><li>one</li><li><em>two</em></li></ul>',
    );
    const evil = body(richHtml('<script>alert(1)</script> <img src=x onerror="y"> [x](javascript:alert(1))'));
    expect(evil).not.toContain("<script");
    expect(evil).not.toContain("<img");
    expect(evil).not.toContain('href="javascript');
    expect(evil).toContain("&lt;script&gt;");
    expect(body(richHtml("a_b_c and 2*3*4 stay"))).toBe("<p>a_b_c and 2*3*4 stay</p>");
    expect(body(richHtml("go to https://x.org/a_b_c."))).toBe('<p>go to <a href="https://x.org/a_b_c">https://x.org/a_b_c</a>.</p>');
  });
  it("sends text/plain and text/html together when rich", () => {
    const d = { ...emptyDraft("i1"), to: "bob@example.org", body: "**hi**", rich: true };
    const e = draftEmail(d, me, { drafts: "m9" }) as Record<string, any>;
    expect(e.textBody).toEqual([{ partId: "body", type: "text/plain" }]);
    expect(e.htmlBody).toEqual([{ partId: "html", type: "text/html" }]);
    expect(e.bodyValues.body.value).toBe("**hi**");
    expect(e.bodyValues.html.value).toContain("<strong>hi</strong>");
    expect((draftEmail({ ...d, rich: false }, me, { drafts: "m9" }) as Record<string, any>).htmlBody).toBeUndefined();
  });
  it("wraps the selection for the toolbar", () => {
    expect(wrapSelection("say hi now", 4, 6, "**")).toEqual({ text: "say **hi** now", start: 6, end: 8 });
    expect(wrapSelection("x", 1, 1, "*")).toEqual({ text: "x**", start: 2, end: 2 });
  });
});

describe("signatures", () => {
  const me = { id: "i1", name: "Alice", email: "alice@example.org", textSignature: "Alice\nexample.org", htmlSignature: "<b>Alice</b>" };
  it("goes below what the user writes and above the quote, after the RFC 3676 separator", async () => {
    const { emptyDraft, replyDraft, withSignature } = await import("./compose");
    expect(withSignature(emptyDraft("i1"), me).body).toBe("\n\n-- \nAlice\nexample.org");
    const src = { from: [{ name: "Bob", email: "bob@example.org" }], to: null, cc: null, replyTo: null, subject: "Hi", sentAt: null, receivedAt: "2026-12-01T10:00:00Z", messageId: ["m1@x"], references: null, text: "hello", attachments: [] };
    const r = withSignature(replyDraft(src, me, false), me).body;
    expect(r.indexOf("-- \nAlice")).toBeLessThan(r.indexOf("> hello"));
    expect(withSignature(emptyDraft("i1"), { id: "i2", name: "", email: "x@y.z" }).body).toBe("");
  });

  it("uses the HTML signature in the HTML part of a rich message, and the identity's Reply-To and Bcc", async () => {
    const { draftEmail, emptyDraft, withSignature } = await import("./compose");
    const d = { ...withSignature({ ...emptyDraft("i1"), to: "bob@example.org", rich: true }, me), body: "**Hi**\n\n-- \nAlice\nexample.org" };
    const e = draftEmail(d, { ...me, replyTo: [{ name: null, email: "team@example.org" }], bcc: [{ name: null, email: "archive@example.org" }] }, { drafts: "m3" });
    const html = (e.bodyValues as Record<string, { value: string }>).html?.value ?? "";
    expect(html).toContain("<strong>Hi</strong>");
    expect(html).toContain("<b>Alice</b>");
    expect(html).not.toContain("example.org</p>");
    expect(e.replyTo).toEqual([{ name: null, email: "team@example.org" }]);
    expect(e.bcc).toEqual([{ name: null, email: "archive@example.org" }]);
  });

  it("uses the words of an HTML-only signature in the text, and the HTML itself in the HTML", async () => {
    const { draftEmail, emptyDraft, withSignature } = await import("./compose");
    const only = { id: "i3", name: "", email: "c@example.org", htmlSignature: "<p><b>Carol</b> &amp; co</p>" };
    const d = withSignature({ ...emptyDraft("i3"), to: "bob@example.org", rich: true }, only);
    expect(d.body).toBe("\n\n-- \nCarol & co");
    const html = (draftEmail(d, only, { drafts: "m3" }).bodyValues as Record<string, { value: string }>).html?.value ?? "";
    expect(html).toContain("<b>Carol</b> &amp; co");
  });
});
