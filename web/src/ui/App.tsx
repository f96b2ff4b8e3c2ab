import { useEffect, useReducer, useRef, useState } from "preact/hooks";
import type { MailApp } from "../state";
import { signIn } from "../jmap";
import { Sidebar } from "./Sidebar";
import { MessageList } from "./MessageList";
import { Reader } from "./Reader";
import { Help, useShortcuts } from "./keys";
import { Compose } from "./Compose";
import { Accounts } from "./Accounts";

/** Re-renders the caller whenever the application object emits. */
export function useApp(app: MailApp): void {
  const [, tick] = useReducer((n: number, _: undefined) => n + 1, 0);
  useEffect(() => {
    const off = app.subscribe(() => tick(undefined));
    tick(undefined); // what changed before we subscribed
    return off;
  }, [app]);
}

export function App({ app }: { app: MailApp }) {
  useApp(app);
  if (app.phase === "signin") return <SignIn app={app} />;
  if (app.phase === "setup") return <Accounts app={app} first onClose={() => undefined} />;
  if (app.phase === "loading")
    return (
      <div class="center" role="status">
        Loading…
      </div>
    );
  if (app.phase === "error")
    return (
      <div class="center" role="alert">
        {app.fatal}
      </div>
    );
  return <Main app={app} />;
}

function SignIn({ app }: { app: MailApp }) {
  const [error, setError] = useState("");
  const [busy, setBusy] = useState(false);
  const user = useRef<HTMLInputElement>(null);
  useEffect(() => user.current?.focus(), []);
  const submit = async (e: Event) => {
    e.preventDefault();
    const f = new FormData(e.currentTarget as HTMLFormElement);
    setBusy(true);
    setError("");
    try {
      await signIn(String(f.get("username") ?? ""), String(f.get("password") ?? ""));
      await app.boot.signedIn();
    } catch (err) {
      setError(err instanceof Error ? err.message : "Sign-in failed.");
      setBusy(false);
    }
  };
  return (
    <main class="signin">
      <form onSubmit={submit} aria-labelledby="signin-title">
        <h1 id="signin-title">Tidings</h1>
        <label>
          User name
          <input ref={user} name="username" autocomplete="username" required />
        </label>
        <label>
          Password
          <input name="password" type="password" autocomplete="current-password" required />
        </label>
        {error && (
          <p class="error" role="alert">
            {error}
          </p>
        )}
        <button type="submit" disabled={busy}>
          {busy ? "Signing in…" : "Sign in"}
        </button>
      </form>
    </main>
  );
}

/** The settings screen, loaded on first use (it is not on the first screen). */
function LazySettings({ app }: { app: MailApp }) {
  const [mod, setMod] = useState<typeof import("./Settings") | null>(null);
  useEffect(() => {
    void import("./Settings").then(setMod, (e: unknown) => app.report(e));
  }, []);
  if (!mod) return null;
  return <mod.Settings app={app} onClose={() => app.openSettings(false)} />;
}

const CONNECTION_TEXT = {
  connecting: "Reconnecting…",
  offline: "Offline: changes will show when the connection is back.",
  live: "",
  polling: "",
} as const;

function Main({ app }: { app: MailApp }) {
  const [help, setHelp] = useState(false);
  const search = useRef<HTMLInputElement>(null);
  useShortcuts(app, { search, toggleHelp: () => setHelp((h) => !h) });
  // The box shows the current search (cleared when a mailbox is opened).
  useEffect(() => {
    if (search.current && document.activeElement !== search.current) search.current.value = app.list.view.search;
  }, [app.list.view]);
  const conn = CONNECTION_TEXT[app.connection];
  return (
    <div class={`layout ${app.reader.open ? "reading" : ""}`}>
      <header class="topbar">
        <span class="brand">Tidings</span>
        <form
          class="search"
          role="search"
          onSubmit={(e) => {
            e.preventDefault();
            void app.list.setSearch(search.current?.value ?? "");
          }}
        >
          <input
            ref={search}
            type="search"
            name="q"
            aria-label="Search mail (from: to: subject: has:attachment before: after: in: is:unread)"
            placeholder="Search: from: to: subject: has:attachment before: after: in:"
            onKeyDown={(e) => {
              if (e.key === "Escape") {
                (e.currentTarget as HTMLInputElement).blur();
              }
            }}
          />
        </form>
        <span class={`conn conn-${app.connection}`} role="status" aria-live="polite" data-connection={app.connection}>
          {app.connection === "live" ? "● Live" : app.connection === "polling" ? "● Polling" : conn}
        </span>
        {app.can("draft") && (
          <button type="button" class="primary" onClick={() => app.composer.start("new")} title="Compose (c)">
            Compose
          </button>
        )}
        {typeof Notification !== "undefined" && (
          <button
            type="button"
            class="ghost"
            aria-pressed={app.notifications.on}
            title="Desktop notifications for new mail in Inbox"
            onClick={() => void app.notifications.set(!app.notifications.on)}
          >
            {app.notifications.on ? "Notifications on" : "Notify me"}
          </button>
        )}
        <button type="button" class="ghost" data-action="settings" onClick={() => app.openSettings(true)}>
          Settings
        </button>
        <button type="button" class="ghost" onClick={() => setHelp(true)} aria-label="Keyboard shortcuts">
          ?
        </button>
        <button type="button" class="ghost" onClick={() => void app.boot.signOut()}>
          Sign out
        </button>
      </header>
      <Sidebar app={app} />
      <MessageList app={app} />
      <Reader app={app} />
      {app.toasts.current && (
        <div class={`toast ${app.toasts.current.error ? "toast-error" : ""}`} role={app.toasts.current.error ? "alert" : "status"}>
          <span>{app.toasts.current.text}</span>
          {app.toasts.current.undo && (
            <button type="button" onClick={app.toasts.current.undo}>
              Undo
            </button>
          )}
          <button
            type="button"
            class="ghost"
            aria-label="Dismiss"
            onClick={() => {
              app.toasts.current = null;
              app.emit();
            }}
          >
            ×
          </button>
        </div>
      )}
      {help && <Help app={app} onClose={() => setHelp(false)} />}
      {app.accountsOpen && <Accounts app={app} onClose={() => app.openAccounts(false)} />}
      {app.settingsOpen && <LazySettings app={app} />}
      <Compose app={app} />
    </div>
  );
}
