// Writing mail: the draft being edited, replies and forwards built from a message, and the
// JMAP objects that create a draft and submit it (RFC 8621 4.6, 7.5).

import type { EmailAddress, Id, Identity } from "./jmap-types";

export type { Identity } from "./jmap-types";

export interface DraftAttachment {
  blobId: Id;
  name: string;
  type: string;
  size: number;
}

export interface Draft {
  /** The stored draft Email, once saved. */
  emailId: Id | null;
  identityId: Id;
  to: string;
  cc: string;
  bcc: string;
  subject: string;
  body: string;
  /** Simple rich text: `body` is marked up (**bold**, *italic*, [links](url), "- " lists)
   * and sent as text/plain (the marked-up text, readable as is) plus text/html. */
  rich: boolean;
  inReplyTo: string[] | null;
  references: string[] | null;
  attachments: DraftAttachment[];
}

export interface Source {
  from: EmailAddress[] | null;
  to: EmailAddress[] | null;
  cc: EmailAddress[] | null;
  replyTo: EmailAddress[] | null;
  subject: string | null;
  sentAt: string | null;
  receivedAt: string;
  messageId: string[] | null;
  references: string[] | null;
  text: string;
  attachments: DraftAttachment[];
}

export function emptyDraft(identityId: Id): Draft {
  return { emailId: null, identityId, to: "", cc: "", bcc: "", subject: "", body: "", rich: false, inReplyTo: null, references: null, attachments: [] };
}

export function formatAddress(a: EmailAddress): string {
  if (!a.name) return a.email;
  const needsQuotes = /[,;<>"@]/.test(a.name);
  return needsQuotes ? `"${a.name.replace(/["\\]/g, "")}" <${a.email}>` : `${a.name} <${a.email}>`;
}

/** `Ann <ann@x.org>, bob@y.org; "Doe, J" <j@z.org>` to addresses; what is not an address
 * is returned in `bad`. */
export function parseAddresses(s: string): { list: EmailAddress[]; bad: string[] } {
  const list: EmailAddress[] = [];
  const bad: string[] = [];
  const parts = s.match(/("[^"]*"|[^,;])+/g) ?? [];
  for (const raw of parts) {
    const p = raw.trim();
    if (!p) continue;
    const m = /^(?:"?([^"<]*?)"?\s*)?<([^<>\s]+@[^<>\s]+)>$/.exec(p);
    if (m) list.push({ name: m[1]?.trim() || null, email: m[2] ?? "" });
    else if (/^[^\s@<>]+@[^\s@<>]+$/.test(p)) list.push({ name: null, email: p });
    else bad.push(p);
  }
  return { list, bad };
}

function prefixed(prefix: string, subject: string | null): string {
  const s = (subject ?? "").trim();
  return new RegExp(`^${prefix}:`, "i").test(s) ? s : `${prefix}: ${s}`;
}

function quote(src: Source): string {
  const who = src.from?.[0] ? formatAddress(src.from[0]) : "someone";
  const when = new Date(src.sentAt ?? src.receivedAt).toUTCString();
  return `\n\nOn ${when}, ${who} wrote:\n` + src.text.split("\n").map((l) => `> ${l}`).join("\n");
}

/** A reply (to the sender, or to everyone but me with `all`). */
export function replyDraft(src: Source, me: Identity, all: boolean): Draft {
  const mine = (a: EmailAddress) => a.email.toLowerCase() === me.email.toLowerCase();
  const to = (src.replyTo?.length ? src.replyTo : src.from) ?? [];
  const seen = new Set(to.map((a) => a.email.toLowerCase()));
  const cc = all
    ? [...(src.to ?? []), ...(src.cc ?? [])].filter((a) => {
        const k = a.email.toLowerCase();
        if (mine(a) || seen.has(k)) return false;
        seen.add(k);
        return true;
      })
    : [];
  const refs = [...(src.references ?? []), ...(src.messageId ?? [])];
  return {
    ...emptyDraft(me.id),
    to: to.filter((a) => !mine(a) || to.length === 1).map(formatAddress).join(", "),
    cc: cc.map(formatAddress).join(", "),
    subject: prefixed("Re", src.subject),
    body: quote(src),
    inReplyTo: src.messageId,
    references: refs.length ? refs : null,
  };
}

export function forwardDraft(src: Source, me: Identity): Draft {
  const head = [
    "---------- Forwarded message ----------",
    `From: ${(src.from ?? []).map(formatAddress).join(", ")}`,
    `Date: ${new Date(src.sentAt ?? src.receivedAt).toUTCString()}`,
    `Subject: ${src.subject ?? ""}`,
    `To: ${(src.to ?? []).map(formatAddress).join(", ")}`,
  ].join("\n");
  return { ...emptyDraft(me.id), subject: prefixed("Fwd", src.subject), body: `\n\n${head}\n\n${src.text}`, attachments: src.attachments };
}

/** RFC 3676 4.3: a signature follows a line of "-- " (dash, dash, space). */
const SIG_SEP = "\n-- \n";

/** Puts the identity's text signature in a new draft's body: after what the user will
 * write and before a quoted or forwarded message. */
export function withSignature(d: Draft, me: Identity): Draft {
  const sig = signatureText(me);
  if (!sig) return d;
  return { ...d, body: `\n${SIG_SEP}${sig}${d.body}` };
}

/** The text signature, or the words of the HTML one when there is no text one. */
function signatureText(me: Identity): string {
  const text = me.textSignature?.trim();
  if (text) return text;
  const html = me.htmlSignature?.trim() ?? "";
  return html
    .replace(/<br\s*\/?>|<\/(p|div)>/gi, "\n")
    .replace(/<[^>]*>/g, "")
    .replace(/&nbsp;/g, " ")
    .replace(/&lt;/g, "<")
    .replace(/&gt;/g, ">")
    .replace(/&amp;/g, "&")
    .trim();
}

/** The text/html of a rich draft, with the identity's HTML signature in place of its text
 * one when it has one. */
function draftHtml(d: Draft, me: Identity): string {
  const sig = me.htmlSignature?.trim();
  const text = signatureText(me);
  const at = sig && text ? d.body.indexOf(`${SIG_SEP}${text}`) : -1;
  if (!sig || at < 0) return richHtml(d.body);
  const before = richHtml(d.body.slice(0, at));
  const after = richHtml(d.body.slice(at + SIG_SEP.length + (text?.length ?? 0)));
  const body = (h: string) => /<body>([\s\S]*)<\/body>/.exec(h)?.[1] ?? "";
  // The signature is the user's own HTML, sent as they wrote it (the reader sanitises
  // what it shows).
  return before.replace("</body>", `<div class="signature">-- <br>${sig}</div>${body(after)}</body>`);
}

/** The Email/set `create` object of a draft (RFC 8621 4.6), with the identity's Reply-To
 * and Bcc (RFC 8621 6: what a client sets when creating an Email from it). */
export function draftEmail(d: Draft, me: Identity, mailboxes: { drafts: Id }): Record<string, unknown> {
  const addr = (s: string) => {
    const l = parseAddresses(s).list;
    return l.length ? l : null;
  };
  const e: Record<string, unknown> = {
    mailboxIds: { [mailboxes.drafts]: true },
    keywords: { $draft: true, $seen: true },
    from: [{ name: me.name || null, email: me.email }],
    to: addr(d.to),
    cc: addr(d.cc),
    bcc: addr(d.bcc),
    subject: d.subject,
    bodyValues: d.rich ? { body: { value: d.body }, html: { value: draftHtml(d, me) } } : { body: { value: d.body } },
    textBody: [{ partId: "body", type: "text/plain" }],
  };
  // Both: the server builds multipart/alternative (RFC 8621 4.6).
  if (d.rich) e.htmlBody = [{ partId: "html", type: "text/html" }];
  if (me.replyTo?.length) e.replyTo = me.replyTo;
  if (me.bcc?.length) {
    const have = new Set((addr(d.bcc) ?? []).map((a) => a.email.toLowerCase()));
    const extra = me.bcc.filter((a) => !have.has(a.email.toLowerCase()));
    if (extra.length) e.bcc = [...(addr(d.bcc) ?? []), ...extra];
  }
  if (d.inReplyTo) e.inReplyTo = d.inReplyTo;
  if (d.references) e.references = d.references;
  if (d.attachments.length)
    e.attachments = d.attachments.map((a) => ({ blobId: a.blobId, type: a.type, name: a.name, disposition: "attachment" }));
  return e;
}

/** Addresses seen in the loaded mail, for autocomplete: most frequent first. */
export function knownAddresses(emails: Iterable<{ from: EmailAddress[] | null; to: EmailAddress[] | null }>, limit = 500): string[] {
  const n = new Map<string, { a: EmailAddress; c: number }>();
  for (const e of emails)
    for (const a of [...(e.from ?? []), ...(e.to ?? [])]) {
      const k = a.email.toLowerCase();
      const cur = n.get(k);
      if (cur) cur.c++;
      else n.set(k, { a, c: 1 });
    }
  return [...n.values()].sort((x, y) => y.c - x.c).slice(0, limit).map((x) => formatAddress(x.a));
}

const escapeHtml = (t: string) =>
  t.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;").replace(/'/g, "&#39;");

/** One line of marked-up text as HTML: escaped first, so nothing the user typed becomes
 * markup except **bold**, *italic* / _italic_, [label](http(s)/mailto URL) and bare URLs. */
function inline(line: string): string {
  const links: string[] = [];
  // Links first, kept aside so the emphasis rules do not run inside URLs.
  let t = line.replace(/\[([^\]]+)\]\(((?:https?:\/\/|mailto:)[^\s)]+)\)|((?:https?:\/\/)[^\s<]+[^\s<.,;:!?)])/g, (_m, label, url, bare) => {
    const href = url ?? bare;
    links.push(`<a href="${escapeHtml(href)}">${escapeHtml(label ?? bare)}</a>`);
    return `\u0000${links.length - 1}\u0000`;
  });
  t = escapeHtml(t)
    .replace(/\*\*([^*]+)\*\*/g, "<strong>$1</strong>")
    .replace(/(^|[^*\w])\*([^*\s][^*]*)\*(?![*\w])/g, "$1<em>$2</em>")
    .replace(/(^|[^\w])_([^_\s][^_]*)_(?!\w)/g, "$1<em>$2</em>");
  return t.replace(/\u0000(\d+)\u0000/g, (_m, i) => links[Number(i)] ?? "");
}

/** The text/html of a rich draft: paragraphs at blank lines, line breaks kept, "- " or
 * "* " lines as a list, "> " lines as a quote; everything else escaped. */
export function richHtml(text: string): string {
  const out: string[] = [];
  const blocks = text.replace(/\r\n?/g, "\n").split(/\n{2,}/);
  for (const block of blocks) {
    const lines = block.split("\n");
    if (!block.trim()) continue;
    if (lines.every((l) => /^\s*[-*] /.test(l))) {
      out.push(`<ul>${lines.map((l) => `<li>${inline(l.replace(/^\s*[-*] /, ""))}</li>`).join("")}</ul>`);
    } else if (lines.every((l) => l.startsWith(">"))) {
      out.push(`<blockquote>${lines.map((l) => inline(l.replace(/^> ?/, ""))).join("<br>")}</blockquote>`);
    } else {
      out.push(`<p>${lines.map(inline).join("<br>")}</p>`);
    }
  }
  return `<!DOCTYPE html><html><head><meta charset="utf-8"></head><body>${out.join("\n")}</body></html>`;
}

/** Wraps the selection [start, end) of `text` in `mark` (e.g. "**"), or inserts the pair
 * with the cursor between; returns the new text and selection. For the toolbar and
 * Ctrl+B / Ctrl+I. */
export function wrapSelection(text: string, start: number, end: number, mark: string): { text: string; start: number; end: number } {
  const inner = text.slice(start, end);
  return {
    text: text.slice(0, start) + mark + inner + mark + text.slice(end),
    start: start + mark.length,
    end: end + mark.length,
  };
}
