// The search box: `from:ann subject:"lunch plans" has:attachment before:2024-05-01
// after:2024-01-01 in:sent is:unread is:flagged words` to a JMAP Email/query filter
// (RFC 8621 4.4.1). Terms with the same key are ANDed with a FilterOperator.

import type { Mailbox } from "./model";

export type Condition = Record<string, unknown>;
export type Filter = Condition | { operator: "AND" | "OR" | "NOT"; conditions: Filter[] };

/** Splits on spaces, keeping "quoted phrases" (and key:"quoted values") together. */
export function tokenize(q: string): string[] {
  const out: string[] = [];
  const re = /(\S+?:)?"([^"]*)"?|\S+/g;
  for (let m = re.exec(q); m; m = re.exec(q)) {
    if (m[2] !== undefined) out.push((m[1] ?? "") + m[2]);
    else out.push(m[0]);
  }
  return out.filter((t) => t.length > 0);
}

function date(v: string, endOfDay: boolean): string | null {
  const m = /^(\d{4})-(\d{1,2})-(\d{1,2})$/.exec(v);
  if (!m) return null;
  const d = new Date(Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3]) + (endOfDay ? 1 : 0)));
  if (Number.isNaN(d.getTime())) return null;
  return d.toISOString().replace(/\.\d{3}Z$/, "Z");
}

export interface Parsed {
  filter: Filter | null;
  /** Free words, for SearchSnippet highlighting. */
  text: string;
  /** Terms that could not be understood (shown to the user). */
  unknown: string[];
}

/** Builds the filter; `mailboxes` resolves `in:` by role or name (case-insensitive). */
export function parseSearch(q: string, mailboxes: Mailbox[]): Parsed {
  const conds: Condition[] = [];
  const words: string[] = [];
  const unknown: string[] = [];
  for (const t of tokenize(q)) {
    const i = t.indexOf(":");
    const key = i > 0 ? t.slice(0, i).toLowerCase() : "";
    const val = i > 0 ? t.slice(i + 1) : t;
    switch (key) {
      case "from":
      case "to":
      case "cc":
      case "bcc":
      case "subject":
      case "body":
        if (val) conds.push({ [key]: val });
        break;
      case "has":
        if (val.toLowerCase() === "attachment") conds.push({ hasAttachment: true });
        else unknown.push(t);
        break;
      case "is":
        switch (val.toLowerCase()) {
          case "unread":
            conds.push({ notKeyword: "$seen" });
            break;
          case "read":
            conds.push({ hasKeyword: "$seen" });
            break;
          case "flagged":
          case "starred":
            conds.push({ hasKeyword: "$flagged" });
            break;
          default:
            unknown.push(t);
        }
        break;
      case "before":
      case "after": {
        const d = date(val, key === "after");
        if (d) conds.push({ [key]: d });
        else unknown.push(t);
        break;
      }
      case "in": {
        const v = val.toLowerCase();
        const m =
          mailboxes.find((b) => b.role === v) ??
          mailboxes.find((b) => b.name.toLowerCase() === v) ??
          (v === "sent" || v === "trash" || v === "junk" || v === "spam"
            ? mailboxes.find((b) => b.role === (v === "spam" ? "junk" : v))
            : undefined);
        if (m) conds.push({ inMailbox: m.id });
        else unknown.push(t);
        break;
      }
      default:
        words.push(t);
    }
  }
  const text = words.join(" ");
  if (text) conds.push({ text });
  // One condition object when no key repeats (its properties are ANDed, RFC 8621 4.4.1).
  let filter: Filter | null = null;
  if (conds.length === 1) filter = conds[0] ?? null;
  else if (conds.length > 1) {
    const merged: Condition = {};
    let clash = false;
    for (const c of conds)
      for (const [k, v] of Object.entries(c)) {
        if (k in merged) clash = true;
        merged[k] = v;
      }
    filter = clash ? { operator: "AND", conditions: conds } : merged;
  }
  return { filter, text, unknown };
}
