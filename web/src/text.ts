// Pure text helpers for rendering mail safely (no HTML parsing of mail content).

export interface Piece {
  text: string;
  href?: string;
}

const LINK = /\b(?:https?:\/\/|mailto:|www\.)[^\s<>"'()[\]{}]+[^\s<>"'()[\]{}.,;:!?]/gi;

/** Splits text into plain pieces and links (http, https, mailto, www.). Nothing else
 * becomes a link, so `javascript:` in a message stays text. */
export function splitLinks(text: string): Piece[] {
  const out: Piece[] = [];
  let last = 0;
  for (const m of text.matchAll(LINK)) {
    const at = m.index ?? 0;
    if (at > last) out.push({ text: text.slice(last, at) });
    const raw = m[0];
    const href = raw.toLowerCase().startsWith("www.") ? `https://${raw}` : raw;
    out.push({ text: raw, href });
    last = at + raw.length;
  }
  if (last < text.length) out.push({ text: text.slice(last) });
  return out;
}

const ENTITIES: Record<string, string> = { amp: "&", lt: "<", gt: ">", quot: '"', "#39": "'", apos: "'" };

function unescape(s: string): string {
  return s.replace(/&(amp|lt|gt|quot|#39|apos|#(\d+)|#x([0-9a-f]+));/gi, (all, name: string, dec?: string, hex?: string) => {
    if (dec) return String.fromCodePoint(Number(dec));
    if (hex) return String.fromCodePoint(parseInt(hex, 16));
    return ENTITIES[name.toLowerCase()] ?? all;
  });
}

/** Splits a SearchSnippet (escaped HTML whose only tags are <mark>) into text pieces. */
export function splitMarks(html: string): { text: string; mark: boolean }[] {
  const out: { text: string; mark: boolean }[] = [];
  const re = /<mark>([\s\S]*?)<\/mark>/g;
  let last = 0;
  for (const m of html.matchAll(re)) {
    const at = m.index ?? 0;
    if (at > last) out.push({ text: unescape(html.slice(last, at).replace(/<[^>]*>/g, "")), mark: false });
    out.push({ text: unescape((m[1] ?? "").replace(/<[^>]*>/g, "")), mark: true });
    last = at + m[0].length;
  }
  if (last < html.length) out.push({ text: unescape(html.slice(last).replace(/<[^>]*>/g, "")), mark: false });
  return out;
}

export function formatSize(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(n < 10 * 1024 ? 1 : 0)} KB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}
