// The settings screen (`#/settings`), loaded on demand: one section per concern, each its
// own component. Sections of other parts of the client live in ui/settings/ and are listed
// in SECTIONS below, in the order shown.

import type { ComponentType } from "preact";
import { useEffect, useState } from "preact/hooks";
import type { MailApp } from "../state";
import type { EmailAddress, Id, Identity } from "../jmap-types";
import { formatAddress, parseAddresses } from "../compose";
import { Appearance } from "./settings/Appearance";
import { OfflineSettings } from "./settings/Offline";

export interface SettingsSection {
  id: string;
  title: string;
  component: ComponentType<{ app: MailApp }>;
}

/** The sections, in order. "Appearance" (theme, density, reading pane) and "Notifications
 * and offline" are components of ui/settings/. */
export const SECTIONS: SettingsSection[] = [
  { id: "identities", title: "Identities", component: Identities },
  { id: "accounts", title: "Accounts", component: AccountsLink },
  { id: "appearance", title: "Appearance", component: Appearance },
  { id: "offline", title: "Notifications and offline", component: OfflineSettings },
];

export function Settings({ app, onClose }: { app: MailApp; onClose: () => void }) {
  // A modal dialog closes on Escape (WAI-ARIA dialog pattern), but not from a text field:
  // an identity being edited would be lost with it.
  useEffect(() => {
    const k = (e: KeyboardEvent) => {
      const t = e.target as HTMLElement | null;
      const typing = !!t && (t.tagName === "TEXTAREA" || t.isContentEditable || (t instanceof HTMLInputElement && !["checkbox", "radio"].includes(t.type)));
      if (e.key === "Escape" && !typing) onClose();
    };
    document.addEventListener("keydown", k);
    return () => document.removeEventListener("keydown", k);
  }, [onClose]);
  return (
    <div class="accounts-overlay settings" role="dialog" aria-modal="true" aria-labelledby="settings-title">
      <div class="accounts-panel">
        <header>
          <h1 id="settings-title">Settings</h1>
          <button type="button" class="ghost" onClick={onClose} aria-label="Close settings">
            ×
          </button>
        </header>
        {SECTIONS.map((s) => (
          <section key={s.id} class="settings-section" data-section={s.id} aria-labelledby={`settings-${s.id}`}>
            <h2 id={`settings-${s.id}`}>{s.title}</h2>
            <s.component app={app} />
          </section>
        ))}
      </div>
    </div>
  );
}

function AccountsLink({ app }: { app: MailApp }) {
  return (
    <p>
      {app.accountIds().length} account{app.accountIds().length === 1 ? "" : "s"}: {app.accountIds().map((a) => app.accountName(a)).join(", ")}.{" "}
      <button
        type="button"
        onClick={() => {
          app.openSettings(false);
          app.openAccounts(true);
        }}
      >
        Add or manage accounts
      </button>
    </p>
  );
}

/** The identities of every account (RFC 8621 6): who messages come from, with reply-to,
 * bcc and the signatures inserted into new messages. */
function Identities({ app }: { app: MailApp }) {
  const [editing, setEditing] = useState<{ accountId: Id; identity: Identity | null } | null>(null);
  useEffect(() => {
    // Fresh from the server: another client may have changed them.
    for (const a of app.accountIds()) void app.composer.loadIdentities(a).catch((e: unknown) => app.report(e));
  }, []);
  return (
    <div class="identities">
      {app.accountIds().map((acc) => (
        <div key={acc} class="identity-account" data-account-id={acc}>
          <h3>{app.accountName(acc)}</h3>
          <ul>
            {(app.composer.identitiesOf.get(acc) ?? []).map((i) => (
              <li key={i.id} data-identity={i.email}>
                {i.name ? `${i.name} <${i.email}>` : i.email}{" "}
                <button type="button" class="ghost" onClick={() => setEditing({ accountId: acc, identity: i })}>
                  Edit
                </button>
                {i.mayDelete !== false && (
                  <button
                    type="button"
                    class="ghost"
                    onClick={() => {
                      if (confirm(`Remove the identity ${i.email}?`)) void saveIdentity(app, acc, i.id, null).then((err) => err && app.toasts.error(err));
                    }}
                  >
                    Remove
                  </button>
                )}
              </li>
            ))}
          </ul>
          {editing?.accountId === acc ? (
            <IdentityForm key={editing.identity?.id ?? "new"} app={app} accountId={acc} identity={editing.identity} onDone={() => setEditing(null)} />
          ) : (
            <button type="button" onClick={() => setEditing({ accountId: acc, identity: null })}>
              Add an identity
            </button>
          )}
        </div>
      ))}
    </div>
  );
}

/** Creates (id null), updates or (patch null) destroys an identity; the error in words, or "". */
async function saveIdentity(app: MailApp, accountId: Id, id: Id | null, patch: Record<string, unknown> | null): Promise<string> {
  const args = patch === null ? { destroy: [id] } : id ? { update: { [id]: patch } } : { create: { n: patch } };
  try {
    const r = await app.jmap.call("Identity/set", { accountId, ...args });
    const err = r.notCreated?.n ?? (id ? r.notUpdated?.[id] ?? r.notDestroyed?.[id] : undefined);
    await app.composer.loadIdentities(accountId);
    if (!err) return "";
    if (err.type === "forbiddenFrom") return "The server does not allow sending from this address.";
    return `Not saved: ${err.description ?? err.type}`;
  } catch (e) {
    return `Not saved: ${e instanceof Error ? e.message : String(e)}`;
  }
}

function IdentityForm({ app, accountId, identity, onDone }: { app: MailApp; accountId: Id; identity: Identity | null; onDone: () => void }) {
  const list = (a: EmailAddress[] | null | undefined) => (a ?? []).map(formatAddress).join(", ");
  const [f, setF] = useState({
    name: identity?.name ?? "",
    email: identity?.email ?? "",
    replyTo: list(identity?.replyTo),
    bcc: list(identity?.bcc),
    textSignature: identity?.textSignature ?? "",
    htmlSignature: identity?.htmlSignature ?? "",
  });
  const [error, setError] = useState("");
  const bad = [f.replyTo, f.bcc].flatMap((s) => parseAddresses(s).bad);
  const field = (key: keyof typeof f) => ({
    name: key,
    value: f[key],
    onInput: (e: Event) => setF({ ...f, [key]: (e.currentTarget as HTMLInputElement).value }),
  });
  const submit = async (e: Event) => {
    e.preventDefault();
    const addrs = (s: string) => {
      const l = parseAddresses(s).list;
      return l.length ? l : null;
    };
    const patch: Record<string, unknown> = {
      name: f.name,
      replyTo: addrs(f.replyTo),
      bcc: addrs(f.bcc),
      textSignature: f.textSignature,
      htmlSignature: f.htmlSignature,
    };
    // RFC 8621 6: the address is immutable once the identity exists.
    if (!identity) patch.email = f.email.trim();
    const err = await saveIdentity(app, accountId, identity?.id ?? null, patch);
    setError(err);
    if (!err) onDone();
  };
  // Laid out here (the stylesheet is the layout's): one field a line, full width.
  const block = { display: "flex", flexDirection: "column", gap: "0.2rem", marginBlock: "0.4rem" } as const;
  return (
    <form class="identity-form" style={{ maxWidth: "36rem" }} onSubmit={(e) => void submit(e)} aria-label={identity ? `Edit ${identity.email}` : `New identity for ${app.accountName(accountId)}`}>
      <label style={block}>
        Name
        <input {...field("name")} autocomplete="name" />
      </label>
      <label style={block}>
        Address
        <input {...field("email")} type="email" required readOnly={!!identity} />
      </label>
      <label style={block}>
        Reply-To
        <input {...field("replyTo")} placeholder="optional" />
      </label>
      <label style={block}>
        Bcc
        <input {...field("bcc")} placeholder="optional: a copy of every message to" />
      </label>
      <label style={block}>
        Signature (text)
        <textarea {...field("textSignature")} rows={3} />
      </label>
      <label style={block}>
        Signature (HTML, used when writing rich text)
        <textarea {...field("htmlSignature")} rows={3} />
      </label>
      {bad.length > 0 && (
        <p class="error" role="alert">
          Not an address: {bad.join(", ")}
        </p>
      )}
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      <button type="submit" class="primary" disabled={bad.length > 0}>
        Save identity
      </button>
      <button type="button" class="ghost" onClick={onDone}>
        Cancel
      </button>
    </form>
  );
}
