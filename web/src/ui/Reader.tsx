import { Component } from "preact";
import { useEffect, useRef, useState } from "preact/hooks";
import type { MailApp } from "../state";
import type { BodyPart, EmailAddress, FullEmail } from "../jmap-types";
import { formatSize } from "../text";
import { listedAttachments } from "../model";
import { Linkified } from "./text";

function addr(a: EmailAddress[] | null | undefined): string {
  return (a ?? []).map((x) => (x.name ? `${x.name} <${x.email}>` : x.email)).join(", ");
}

export function Reader({ app }: { app: MailApp }) {
  // An h2: the page's one h1 is the list's title (a mailbox or a search).
  const heading = useRef<HTMLHeadingElement>(null);
  const open = app.reader.open;
  useEffect(() => {
    heading.current?.focus();
  }, [open?.threadId]);
  if (!open)
    return (
      <section class="reader empty" aria-label="Reading pane">
        <p>Select a message to read it.</p>
      </section>
    );
  const last = open.emails[open.emails.length - 1];
  const subject = last?.subject || "(no subject)";
  return (
    <section class="reader" aria-label="Reading pane">
      <div class="reader-head">
        <button type="button" class="ghost back" onClick={() => app.reader.closeThread()} aria-label="Back to the list (u)">
          ←
        </button>
        <h2 ref={heading} tabIndex={-1} class="thread-subject">
          {subject}
        </h2>
        <Toolbar app={app} />
      </div>
      <div class="thread" role="list">
        {open.emails.map((e, i) => (
          <Message
            key={e.id}
            app={app}
            email={e}
            expanded={i === open.emails.length - 1 || !e.keywords.$seen || e.id === open.emailId}
            trusted={app.reader.trustedSenders.has((e.from?.[0]?.email ?? "").toLowerCase())}
          />
        ))}
      </div>
    </section>
  );
}

function Toolbar({ app }: { app: MailApp }) {
  const [moving, setMoving] = useState(false);
  const open = app.reader.open;
  if (!open) return null;
  const ids = open.emails.map((e) => e.id);
  const flagged = open.emails.some((e) => e.keywords.$flagged);
  // The folders of the account the message belongs to (a unified view shows several).
  const acc = open.accountId;
  return (
    <div class="toolbar" role="toolbar" aria-label="Message actions">
      {app.can("draft") && (
        <>
          <button type="button" onClick={() => app.composer.start("reply")} title="Reply (r)">
            Reply
          </button>
          <button type="button" onClick={() => app.composer.start("replyAll")} title="Reply all (a)">
            Reply all
          </button>
          <button type="button" onClick={() => app.composer.start("forward")} title="Forward (f)">
            Forward
          </button>
        </>
      )}
      {app.can("read") && (
        <button type="button" onClick={() => void app.actions.setKeyword(ids, "$seen", false)} title="Mark unread (U)">
          Mark unread
        </button>
      )}
      {app.can("flag") && (
        <button type="button" aria-pressed={flagged} onClick={() => void app.actions.setKeyword(ids, "$flagged", !flagged)} title="Flag (s)">
          {flagged ? "Unflag" : "Flag"}
        </button>
      )}
      {app.can("move") && app.folders.byRole("archive", acc) && (
        <button type="button" onClick={() => void app.actions.archive(ids)} title="Archive (e)">
          Archive
        </button>
      )}
      {app.can("delete") && (
        <button type="button" onClick={() => void app.actions.remove(ids)} title="Delete (#)">
          Delete
        </button>
      )}
      {app.can("move") && (
        <span class="menu">
          <button type="button" aria-haspopup="menu" aria-expanded={moving} onClick={() => setMoving(!moving)}>
            Move to…
          </button>
          {moving && (
            <ul role="menu" class="menu-list">
              {app.folders
                .of(acc)
                .filter((m) => m.id !== app.list.view.mailboxId)
                .map((m) => (
                  <li key={m.id} role="none">
                    <button
                      type="button"
                      role="menuitem"
                      onClick={() => {
                        setMoving(false);
                        void app.actions.move(ids, m.id);
                      }}
                    >
                      {m.name}
                    </button>
                  </li>
                ))}
            </ul>
          )}
        </span>
      )}
    </div>
  );
}

/** One message of the thread. Memoised: the app re-renders on every change (a window of
 * the list arriving while scrolling, a count), and a message only changes with its Email
 * object (replaced, never mutated) or whether its sender's images are trusted. */
type MessageProps = { app: MailApp; email: FullEmail; expanded: boolean; trusted: boolean };

class Message extends Component<MessageProps> {
  override shouldComponentUpdate(n: MessageProps): boolean {
    const p = this.props;
    return n.email !== p.email || n.expanded !== p.expanded || n.trusted !== p.trusted || n.app !== p.app;
  }

  override render() {
    return <MessageView {...this.props} />;
  }
}

function MessageView({ app, email, expanded, trusted }: { app: MailApp; email: FullEmail; expanded: boolean; trusted: boolean }) {
  const [show, setShow] = useState(expanded);
  useEffect(() => setShow(expanded), [expanded]);
  const date = new Date(email.receivedAt);
  return (
    <article class={`message ${show ? "expanded" : "collapsed"}`} role="listitem" aria-label={`From ${email.from?.[0]?.name || email.from?.[0]?.email || "unknown"}`} data-email={email.id}>
      <header class="msg-head" onClick={() => setShow(!show)}>
        <strong class="msg-from">{addr(email.from)}</strong>
        <time dateTime={email.receivedAt}>{Number.isNaN(date.getTime()) ? "" : date.toLocaleString()}</time>
        {show ? (
          <div class="msg-to">
            {email.to?.length ? <>To: {addr(email.to)}</> : null}
            {email.cc?.length ? <> · Cc: {addr(email.cc)}</> : null}
          </div>
        ) : (
          <div class="msg-preview">{email.preview}</div>
        )}
      </header>
      {show && <Body app={app} email={email} trusted={trusted} />}
      {show && listedAttachments(email).length > 0 && <Attachments app={app} email={email} />}
    </article>
  );
}

function Body({ app, email, trusted }: { app: MailApp; email: FullEmail; trusted: boolean }) {
  const html = email.htmlBody.find((p) => p.type === "text/html" && p.blobId);
  if (html?.blobId) return <HtmlBody app={app} email={email} part={html} trusted={trusted} />;
  const text = email.textBody
    .filter((p) => p.type.startsWith("text/") && p.partId)
    .map((p) => email.bodyValues[p.partId ?? ""]?.value ?? "")
    .join("\n\n");
  return (
    <div class="text-body">
      <Linkified text={text || email.preview} />
    </div>
  );
}

/** The HTML part sanitised by the server, in a sandboxed iframe without scripts; remote
 * images come only after the user allows them for this message or this sender. */
function HtmlBody({ app, email, part, trusted }: { app: MailApp; email: FullEmail; part: BodyPart; trusted: boolean }) {
  const sender = (email.from?.[0]?.email ?? "").toLowerCase();
  const [allowed, setAllowed] = useState(false);
  const images = allowed || (sender !== "" && trusted);
  const [blocked, setBlocked] = useState(0);
  const [src, setSrc] = useState<string | null>(null);
  const frame = useRef<HTMLIFrameElement>(null);
  const url = app.reader.htmlUrl(part.blobId ?? "", images);
  useEffect(() => {
    let live = true;
    // Fetched first for the count of blocked images; the iframe then loads it from cache.
    fetch(url, { credentials: "same-origin", headers: { "X-Tidings-Client": "web" } })
      .then((r) => {
        if (!live) return;
        setBlocked(Number(r.headers.get("x-tidings-blocked-images") ?? "0") || 0);
        setSrc(url);
      })
      .catch(() => live && setSrc(url));
    return () => {
      live = false;
    };
  }, [url]);
  const fit = () => {
    const f = frame.current;
    const doc = f?.contentDocument;
    if (f && doc?.documentElement) f.style.height = `${Math.min(20000, doc.documentElement.scrollHeight + 16)}px`;
  };
  return (
    <div class="html-body">
      {blocked > 0 && !images && (
        <div class="images-bar" role="note">
          <span>
            {blocked} remote image{blocked > 1 ? "s" : ""} blocked to protect your privacy.
          </span>
          <button type="button" onClick={() => setAllowed(true)}>
            Show images
          </button>
          {sender && (
            <button type="button" onClick={() => app.reader.trustSender(sender)}>
              Always from {sender}
            </button>
          )}
        </div>
      )}
      {src && (
        <iframe
          ref={frame}
          class="mail-frame"
          title={`Message from ${sender || "unknown sender"}`}
          sandbox="allow-same-origin allow-popups allow-popups-to-escape-sandbox"
          referrerpolicy="no-referrer"
          src={src}
          onLoad={fit}
        />
      )}
    </div>
  );
}

function Attachments({ app, email }: { app: MailApp; email: FullEmail }) {
  return (
    <ul class="attachments" aria-label="Attachments">
      {listedAttachments(email).map((a, i) => {
        if (!a.blobId) return null;
        const url = app.jmap.downloadUrl(app.reader.open?.accountId ?? app.accountId, a.blobId, a.name ?? `attachment-${i + 1}`, a.type);
        const image = /^image\/(png|jpeg|gif|webp|bmp)$/.test(a.type);
        return (
          <li key={a.blobId} class="attachment">
            {image && <img class="preview-img" src={url} alt={a.name ?? "image"} loading="lazy" />}
            <a href={url} download={a.name ?? ""}>
              {a.name ?? "(unnamed)"}
            </a>
            <span class="att-meta">
              {a.type} · {formatSize(a.size)}
            </span>
          </li>
        );
      })}
    </ul>
  );
}
