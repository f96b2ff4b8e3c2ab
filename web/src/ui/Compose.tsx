import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import type { MailApp } from "../state";
import { knownAddresses, parseAddresses, wrapSelection } from "../compose";
import { formatSize } from "../text";
import { setupApi } from "../accounts";

/** The composer: identities, recipients with autocomplete, subject, plain or simple rich
 * text (marked up in the text area, sent with a text/html alternative), attachments by
 * picker or drag and drop with upload progress; drafts saved as you type. */
export function Compose({ app }: { app: MailApp }) {
  const d = app.composer.draft;
  const first = useRef<HTMLInputElement>(null);
  const body = useRef<HTMLTextAreaElement>(null);
  const [over, setOver] = useState(false);
  const known = useMemo(() => knownAddresses(app.list.cache.values()), [app.composer.draft === null]);
  useEffect(() => {
    if (!d) return;
    if (d.to) {
      body.current?.focus();
      body.current?.setSelectionRange(0, 0);
    } else first.current?.focus();
  }, [d === null]);
  if (!d) return app.composer.needIdentity ? <NewIdentity app={app} accountId={app.composer.needIdentity} /> : null;
  const everyone = app.composer.allIdentities();
  const bad = [d.to, d.cc, d.bcc].flatMap((s) => parseAddresses(s).bad);
  // Rich text: wraps the selection in a mark (or inserts the pair) and keeps it selected.
  const mark = (open: string, close = open) => {
    const el = body.current;
    if (!el) return;
    const r = wrapSelection(d.body, el.selectionStart, el.selectionEnd, open);
    const text = close === open ? r.text : r.text.slice(0, r.end) + close + r.text.slice(r.end + open.length);
    app.composer.edit({ body: text });
    requestAnimationFrame(() => {
      el.focus();
      el.setSelectionRange(r.start, r.end);
    });
  };
  const canSend = app.can("send") && parseAddresses(d.to).list.length + parseAddresses(d.cc).list.length + parseAddresses(d.bcc).list.length > 0 && bad.length === 0 && app.composer.uploads.length === 0;
  const field = (label: string, key: "to" | "cc" | "bcc", ref?: typeof first) => (
    <label class="cfield">
      <span>{label}</span>
      <input
        ref={ref}
        name={key}
        list="known-addresses"
        autocomplete="off"
        value={d[key]}
        onInput={(e) => app.composer.edit({ [key]: (e.currentTarget as HTMLInputElement).value })}
      />
    </label>
  );
  return (
    <div
      class={`compose ${over ? "drop" : ""}`}
      role="dialog"
      aria-label="New message"
      onKeyDown={(e) => {
        if (e.key === "Escape") void app.composer.close();
        if (e.key === "Enter" && (e.ctrlKey || e.metaKey) && canSend) void app.composer.send();
      }}
      onDragOver={(e) => {
        e.preventDefault();
        setOver(true);
      }}
      onDragLeave={() => setOver(false)}
      onDrop={(e) => {
        e.preventDefault();
        setOver(false);
        const files = [...(e.dataTransfer?.files ?? [])];
        if (files.length) void app.composer.attach(files);
      }}
    >
      <datalist id="known-addresses">
        {known.map((a) => (
          <option key={a} value={a} />
        ))}
      </datalist>
      <div class="compose-head">
        <button type="button" class="ghost compose-back" aria-label="Back (the draft is kept)" onClick={() => void app.composer.close()}>
          ←
        </button>
        <strong>{d.subject || "New message"}</strong>
        <button type="button" class="ghost" aria-label="Close (the draft is kept)" onClick={() => void app.composer.close()}>
          ×
        </button>
      </div>
      {everyone.length > 1 && (
        <label class="cfield">
          <span>From</span>
          <select name="from" value={d.identityId} onChange={(e) => app.composer.edit({ identityId: (e.currentTarget as HTMLSelectElement).value })}>
            {everyone.map(({ accountId, identity: i }) => (
              <option key={i.id} value={i.id}>
                {(i.name ? `${i.name} <${i.email}>` : i.email) + (app.accountIds().length > 1 ? ` (${app.accountName(accountId)})` : "")}
              </option>
            ))}
          </select>
        </label>
      )}
      {field("To", "to", first)}
      {field("Cc", "cc")}
      {field("Bcc", "bcc")}
      <label class="cfield">
        <span>Subject</span>
        <input name="subject" value={d.subject} onInput={(e) => app.composer.edit({ subject: (e.currentTarget as HTMLInputElement).value })} />
      </label>
      <div class="c-format" role="toolbar" aria-label="Formatting">
        <label>
          <input type="checkbox" name="rich" checked={d.rich} onChange={(e) => app.composer.edit({ rich: (e.currentTarget as HTMLInputElement).checked })} />
          Rich text
        </label>
        {d.rich && (
          <>
            <button type="button" class="ghost" aria-label="Bold" title="Bold (Ctrl+B)" onClick={() => mark("**")}>
              <strong>B</strong>
            </button>
            <button type="button" class="ghost" aria-label="Italic" title="Italic (Ctrl+I)" onClick={() => mark("*")}>
              <em>I</em>
            </button>
            <button type="button" class="ghost" aria-label="Link" title="Link" onClick={() => mark("[", "](https://)")}>
              Link
            </button>
            <span class="c-hint">**bold**, *italic*, [link](https://…), "- " for a list</span>
          </>
        )}
      </div>
      <textarea
        ref={body}
        name="body"
        aria-label="Message"
        value={d.body}
        onInput={(e) => app.composer.edit({ body: (e.currentTarget as HTMLTextAreaElement).value })}
        onKeyDown={(e) => {
          if (!d.rich || !(e.ctrlKey || e.metaKey) || e.altKey) return;
          const k = e.key.toLowerCase();
          if (k === "b" || k === "i") {
            e.preventDefault();
            mark(k === "b" ? "**" : "*");
          }
        }}
      />
      {(d.attachments.length > 0 || app.composer.uploads.length > 0) && (
        <ul class="c-attachments" aria-label="Attachments">
          {d.attachments.map((a, i) => (
            <li key={a.blobId + i}>
              {a.name} <span class="att-meta">{formatSize(a.size)}</span>
              <button type="button" class="ghost" aria-label={`Remove ${a.name}`} onClick={() => app.composer.edit({ attachments: d.attachments.filter((_, j) => j !== i) })}>
                ×
              </button>
            </li>
          ))}
          {app.composer.uploads.map((u) => (
            <li key={u.name}>
              {u.name} <progress max={1} value={u.progress} aria-label={`Uploading ${u.name}`} />
            </li>
          ))}
        </ul>
      )}
      {bad.length > 0 && (
        <p class="error" role="alert">
          Not an address: {bad.join(", ")}
        </p>
      )}
      <div class="compose-actions">
        {app.can("send") && (
          <button type="button" class="primary" disabled={!canSend} onClick={() => void app.composer.send()} title="Send (Ctrl+Enter)">
            Send
          </button>
        )}
        <label class="attach">
          Attach…
          <input
            type="file"
            multiple
            onChange={(e) => {
              const el = e.currentTarget as HTMLInputElement;
              const files = [...(el.files ?? [])];
              el.value = "";
              if (files.length) void app.composer.attach(files);
            }}
          />
        </label>
        <button type="button" onClick={() => void app.composer.save()}>
          Save draft
        </button>
        <button type="button" class="ghost" onClick={() => void app.composer.discard()}>
          Discard
        </button>
        <span class="compose-status" role="status" aria-live="polite">
          {app.composer.status}
        </span>
      </div>
    </div>
  );
}

/** An account without a sending identity: make one here (RFC 8621 6.3, Identity/set), the
 * address prefilled when the account's login is one, then go on writing. */
function NewIdentity({ app, accountId }: { app: MailApp; accountId: string }) {
  const [email, setEmail] = useState("");
  const [name, setName] = useState("");
  const [error, setError] = useState("");
  const [busy, setBusy] = useState(false);
  useEffect(() => {
    let live = true;
    setupApi
      .list()
      .then((r) => {
        const login = r.accounts.find((a) => a.id === accountId)?.settings.username ?? "";
        if (live && login.includes("@")) setEmail((cur) => cur || login);
      })
      .catch(() => undefined);
    return () => {
      live = false;
    };
  }, [accountId]);
  return (
    <form
      class="compose new-identity"
      role="dialog"
      aria-label="Sending identity"
      onSubmit={(e) => {
        e.preventDefault();
        setBusy(true);
        void app.composer.createIdentity(accountId, name.trim(), email.trim()).then((err) => {
          setError(err);
          setBusy(false);
        });
      }}
    >
      <div class="compose-head">
        <strong>Send from {app.accountName(accountId)}</strong>
        <button type="button" class="ghost" aria-label="Close" onClick={() => app.composer.cancelIdentity()}>
          ×
        </button>
      </div>
      <p>This account has no sending identity yet. Which address should your messages come from?</p>
      <label class="cfield">
        <span>Name</span>
        <input name="identity-name" value={name} autocomplete="name" onInput={(e) => setName(e.currentTarget.value)} />
      </label>
      <label class="cfield">
        <span>Address</span>
        <input name="identity-email" type="email" required value={email} autocomplete="email" onInput={(e) => setEmail(e.currentTarget.value)} />
      </label>
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      <div class="compose-actions">
        <button type="submit" class="primary" disabled={busy || !email.includes("@")}>
          Create and write
        </button>
      </div>
    </form>
  );
}
