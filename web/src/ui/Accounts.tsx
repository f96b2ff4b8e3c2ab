// The accounts screen: add a mail account (address, then password and the settings found
// for it, tried by the server before anything is saved; or "Sign in with …" for the
// configured OAuth2 providers), and edit or remove the user's accounts.

import { useEffect, useRef, useState } from "preact/hooks";
import type { MailApp } from "../state";
import {
  type AccountInfo,
  type Found,
  type Security,
  type Server,
  type Settings,
  SetupError,
  defaultPort,
  formErrors,
  foundNotes,
  settingsOf,
  setupApi,
  validEmail,
} from "../accounts";

function ServerFields({
  label,
  which,
  server,
  onChange,
}: {
  label: string;
  which: "incoming" | "smtp";
  server: Server;
  onChange: (s: Server) => void;
}) {
  const kind = which === "smtp" ? "smtp" : "imap";
  return (
    <fieldset class="server" data-server={which}>
      <legend>{label}</legend>
      <label>
        Server
        <input name={`${which}-host`} value={server.host} onInput={(e) => onChange({ ...server, host: e.currentTarget.value.trim() })} />
      </label>
      <label>
        Port
        <input
          name={`${which}-port`}
          inputMode="numeric"
          value={String(server.port)}
          onInput={(e) => onChange({ ...server, port: Number(e.currentTarget.value) })}
        />
      </label>
      <label>
        Security
        <select
          name={`${which}-security`}
          value={server.security}
          onChange={(e) => {
            const security = e.currentTarget.value as Security;
            onChange({ ...server, security, port: defaultPort(kind, security) });
          }}
        >
          <option value="tls">TLS</option>
          <option value="starttls">STARTTLS</option>
          <option value="none">None (unencrypted)</option>
        </select>
      </label>
    </fieldset>
  );
}

/** The Add-account form. `onAdded` runs once the server has stored the account. */
export function AddAccount({ oauthProviders, onAdded }: { oauthProviders: string[]; onAdded: () => void }) {
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const [name, setName] = useState("");
  const [found, setFound] = useState<Found | null>(null);
  const [settings, setSettings] = useState<Settings | null>(null);
  const [trusted, setTrusted] = useState(false);
  const [busy, setBusy] = useState("");
  const [error, setError] = useState("");
  const emailRef = useRef<HTMLInputElement>(null);
  useEffect(() => emailRef.current?.focus(), []);

  const find = async (e: Event) => {
    e.preventDefault();
    if (!validEmail(email)) {
      setError("Enter an email address (name@example.org).");
      return;
    }
    setError("");
    setBusy("Looking up the settings…");
    try {
      const f = await setupApi.discover(email.trim());
      setFound(f);
      setSettings(settingsOf(f));
      setTrusted(false);
    } catch (err) {
      setError(err instanceof Error ? err.message : "The settings could not be found.");
    }
    setBusy("");
  };

  const add = async (e: Event) => {
    e.preventDefault();
    if (!settings || !found) return;
    const errs = formErrors(email, password, settings);
    const first = Object.values(errs)[0];
    if (first) {
      setError(first);
      return;
    }
    if (found.foreign && !trusted) {
      setError("Confirm that you trust the servers the configuration document names.");
      return;
    }
    setError("");
    setBusy("Trying the settings…");
    try {
      await setupApi.add(email.trim(), password, settings, name.trim() || undefined);
      setBusy("");
      onAdded();
    } catch (err) {
      setBusy("");
      setError(err instanceof SetupError ? err.message : "The account could not be added.");
    }
  };

  const oauthButtons = oauthProviders.length > 0 && (
    <div class="oauth-buttons">
      {oauthProviders.map((p) => (
        <a
          key={p}
          class={`button ${found?.oauth === p ? "primary" : ""}`}
          data-oauth-provider={p}
          href={`/web/oauth/start?provider=${encodeURIComponent(p)}${validEmail(email) ? `&login_hint=${encodeURIComponent(email.trim())}` : ""}`}
        >
          Sign in with {p.charAt(0).toUpperCase() + p.slice(1)}
        </a>
      ))}
    </div>
  );

  return (
    <section class="add-account" aria-labelledby="add-account-title">
      <h2 id="add-account-title">Add an account</h2>
      {!found ? (
        <form onSubmit={find}>
          <label>
            Email address
            <input ref={emailRef} name="email" type="email" autocomplete="email" value={email} onInput={(e) => setEmail(e.currentTarget.value)} required />
          </label>
          <button type="submit" class="primary" disabled={!!busy}>
            Continue
          </button>
          {oauthButtons}
        </form>
      ) : (
        <form onSubmit={add}>
          <p class="setup-email">
            {email}{" "}
            <button type="button" class="ghost" onClick={() => (setFound(null), setSettings(null), setError(""))}>
              Change
            </button>
          </p>
          <ul class="setup-notes">
            {foundNotes(found).map((n) => (
              <li key={n.text} class={n.warn ? "warn" : ""}>
                {n.text}
              </li>
            ))}
          </ul>
          {found.oauth && oauthButtons}
          <label>
            Password
            <input name="password" type="password" autocomplete="current-password" value={password} onInput={(e) => setPassword(e.currentTarget.value)} />
          </label>
          <label>
            Name (optional)
            <input name="account-name" value={name} placeholder={email} onInput={(e) => setName(e.currentTarget.value)} />
          </label>
          {found.foreign && (
            <label class="trust">
              <input type="checkbox" name="trust" checked={trusted} onChange={(e) => setTrusted(e.currentTarget.checked)} /> I trust{" "}
              {settings?.incoming.host} with this password
            </label>
          )}
          {settings && (
            <details class="advanced" open={found.source === "guess"}>
              <summary>Server settings</summary>
              <label>
                User name
                <input name="username" value={settings.username} onInput={(e) => setSettings({ ...settings, username: e.currentTarget.value })} />
              </label>
              <ServerFields label="Incoming (IMAP)" which="incoming" server={settings.incoming} onChange={(s) => setSettings({ ...settings, incoming: s })} />
              {settings.smtp && (
                <ServerFields label="Outgoing (SMTP)" which="smtp" server={settings.smtp} onChange={(s) => setSettings({ ...settings, smtp: s })} />
              )}
              <label>
                <input
                  type="checkbox"
                  name="no-smtp"
                  checked={!settings.smtp}
                  onChange={(e) =>
                    setSettings({
                      ...settings,
                      smtp: e.currentTarget.checked ? null : (found.smtp ?? { host: `smtp.${email.split("@")[1] ?? ""}`, port: 465, security: "tls" }),
                    })
                  }
                />{" "}
                Receive only (no outgoing server)
              </label>
            </details>
          )}
          <button type="submit" class="primary" disabled={!!busy} data-action="add-account">
            Add account
          </button>
        </form>
      )}
      {busy && (
        <p class="setup-busy" role="status">
          {busy}
        </p>
      )}
      {error && (
        <p class="error setup-error" role="alert">
          {error}
        </p>
      )}
    </section>
  );
}

function EditAccount({ account, onDone }: { account: AccountInfo; onDone: () => void }) {
  const [name, setName] = useState(account.name);
  const [password, setPassword] = useState("");
  const [settings, setSettings] = useState<Settings>(account.settings);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState("");
  const save = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError("");
    try {
      const changed = JSON.stringify(settings) !== JSON.stringify(account.settings);
      await setupApi.edit(account.id, {
        name: name.trim() || undefined,
        password: password || undefined,
        settings: changed ? settings : undefined,
      });
      onDone();
    } catch (err) {
      setError(err instanceof Error ? err.message : "The account could not be saved.");
    }
    setBusy(false);
  };
  return (
    <form class="edit-account" onSubmit={save}>
      <label>
        Name
        <input name="edit-name" value={name} onInput={(e) => setName(e.currentTarget.value)} />
      </label>
      {account.auth === "password" && (
        <>
          <label>
            New password (leave empty to keep it)
            <input name="edit-password" type="password" autocomplete="new-password" value={password} onInput={(e) => setPassword(e.currentTarget.value)} />
          </label>
          <details class="advanced">
            <summary>Server settings</summary>
            <ServerFields label="Incoming" which="incoming" server={settings.incoming} onChange={(s) => setSettings({ ...settings, incoming: s })} />
            {settings.smtp && <ServerFields label="Outgoing (SMTP)" which="smtp" server={settings.smtp} onChange={(s) => setSettings({ ...settings, smtp: s })} />}
          </details>
        </>
      )}
      <button type="submit" class="primary" disabled={busy}>
        {busy ? "Trying…" : "Save"}
      </button>
      <button type="button" class="ghost" onClick={onDone}>
        Cancel
      </button>
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
    </form>
  );
}

/** The whole screen: the user's accounts, and the Add-account form. */
export function Accounts({ app, onClose, first = false }: { app: MailApp; onClose: () => void; first?: boolean }) {
  const [list, setList] = useState<AccountInfo[]>([]);
  const [providers, setProviders] = useState<string[]>([]);
  const [editing, setEditing] = useState<string | null>(null);
  const [error, setError] = useState("");
  const load = async () => {
    try {
      const r = await setupApi.list();
      setList(r.accounts);
      setProviders(r.oauthProviders ?? []);
    } catch (err) {
      setError(err instanceof Error ? err.message : "The accounts could not be listed.");
    }
  };
  useEffect(() => void load(), []);
  // Back from a provider's sign-in: `#/accounts?added=NAME` or `?error=TEXT`.
  useEffect(() => {
    const q = new URLSearchParams(location.hash.split("?")[1] ?? "");
    const e = q.get("error");
    if (e) setError(e);
  }, []);
  const changed = async () => {
    setEditing(null);
    await load();
    await app.boot.reloadSession();
  };
  return (
    <div class="accounts-overlay" role="dialog" aria-modal="true" aria-labelledby="accounts-title">
      <div class="accounts-panel">
        <header>
          <h1 id="accounts-title">{first ? "Welcome: add your first mail account" : "Accounts"}</h1>
          {first ? (
            <button type="button" class="ghost" onClick={() => void app.boot.signOut()}>
              Sign out
            </button>
          ) : (
            <button type="button" class="ghost" aria-label="Close" onClick={onClose}>
              ×
            </button>
          )}
        </header>
        {error && (
          <p class="error" role="alert">
            {error}
          </p>
        )}
        {list.length > 0 && (
          <ul class="account-list">
            {list.map((a) => (
              <li key={a.id} data-account-row={a.name}>
                <span class="account-row-name">{a.name}</span>{" "}
                <span class="account-row-host">
                  {a.settings.username} · {a.settings.incoming.host}
                </span>
                {editing === a.id ? (
                  <EditAccount account={a} onDone={() => void changed()} />
                ) : (
                  <>
                    <button type="button" class="ghost" data-action="edit" onClick={() => setEditing(a.id)}>
                      Edit
                    </button>
                    <button
                      type="button"
                      class="ghost danger"
                      data-action="remove"
                      onClick={async () => {
                        if (!confirm(`Remove ${a.name}? Its mail stays on the server; the copy here is deleted.`)) return;
                        try {
                          await setupApi.remove(a.id);
                          if (a.id === app.accountId) {
                            // The account on screen is gone: start again from the Session.
                            onClose();
                            await app.boot.signedIn();
                            return;
                          }
                          await changed();
                        } catch (err) {
                          setError(err instanceof Error ? err.message : "The account could not be removed.");
                        }
                      }}
                    >
                      Remove
                    </button>
                  </>
                )}
              </li>
            ))}
          </ul>
        )}
        <AddAccount
          oauthProviders={providers}
          onAdded={() => {
            if (first) void app.boot.signedIn().then(() => app.boot.reloadSession());
            else {
              void changed();
              onClose();
            }
          }}
        />
      </div>
    </div>
  );
}
