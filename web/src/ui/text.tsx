// Mail text on screen without ever handing mail content to the HTML parser: plain text
// with its links made clickable, and search snippets with their <mark> highlights.

import { splitLinks, splitMarks } from "../text";

export function Linkified({ text }: { text: string }) {
  return (
    <>
      {splitLinks(text).map((p, i) =>
        p.href ? (
          <a key={i} href={p.href} target="_blank" rel="noopener noreferrer nofollow">
            {p.text}
          </a>
        ) : (
          p.text
        ),
      )}
    </>
  );
}

/** A SearchSnippet string: escaped text with `<mark>` around matches. */
export function Highlighted({ html }: { html: string }) {
  return <>{splitMarks(html).map((p, i) => (p.mark ? <mark key={i}>{p.text}</mark> : p.text))}</>;
}
