import { useEffect, useReducer, useRef, useState } from "preact/hooks";
import type { MailApp } from "../state";
import { signIn } from "../jmap";
import { Sidebar } from "./Sidebar";
import { MessageList } from "./MessageList";
import { Reader } from "./Reader";
import { Help, useBackStack, useDrawer, useShortcuts } from "./keys";
import { Compose } from "./Compose";
import { Accounts } from "./Accounts";
import { Icon } from "./icons";
import { applyAppearance, followSystemTheme, readAppearance, setAppearance } from "../app/prefs";


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
  useEffect(() => {
    applyAppearance();
    followSystemTheme();
  }, []);
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
  const [searching, setSearching] = useState(false);
  const search = useRef<HTMLInputElement>(null);
  const drawer = useDrawer(app);
  useShortcuts(app, { search, toggleHelp: () => setHelp((h) => !h), openSearch: () => setSearching(true) });
  useBackStack(app, drawer);
  // The box shows the current search (cleared when a mailbox is opened).
  useEffect(() => {
    if (search.current && document.activeElement !== search.current) search.current.value = app.list.view.search;
  }, [app.list.view]);
  useEffect(() => {
    if (searching) search.current?.focus();
  }, [searching]);
  const conn = (app.connection !== "live" && app.jmap.offline?.note()) || CONNECTION_TEXT[app.connection];
  const status = (
    <span class={`conn conn-${app.connection}`} role="status" aria-live="polite" data-connection={app.connection}>
      {app.connection === "live" ? "● Live" : app.connection === "polling" ? "● Polling" : conn}
    </span>
  );
  return (
    <div class={`layout ${app.reader.open ? "reading" : ""}`}>
      <header class={`topbar ${searching ? "searching" : ""}`}>
        <button
          ref={drawer.button}
          type="button"
          class="ghost menu-button"
          aria-label="Folders and account"
          aria-controls="drawer"
          aria-expanded={drawer.open}
          onClick={() => drawer.set(true)}
        >
          <Icon name="menu" />
        </button>
        <span class="brand">Tidings</span>
        <button type="button" class="ghost search-toggle" aria-label="Search" onClick={() => setSearching(true)}>
          <Icon name="search" />
        </button>
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
                setSearching(false);
              }
            }}
            onBlur={(e) => {
              if (!(e.currentTarget as HTMLInputElement).value) setSearching(false);
            }}
          />
        </form>
        {status}
        {app.can("draft") && (
          <button type="button" class="primary compose-button" onClick={() => app.composer.start("new")} title="Compose (c)" aria-label="Compose">
            <Icon name="drafts" />
            <span class="label">Compose</span>
          </button>
        )}
        <SessionButtons app={app} onHelp={() => setHelp(true)} onSettings={() => app.openSettings(true)} />
      </header>
      {drawer.open && <div class="backdrop" onClick={() => drawer.set(false)} />}
      <div
        id="drawer"
        ref={drawer.panel}
        class={`drawer ${drawer.open ? "open" : ""}`}
        role={drawer.open ? "dialog" : undefined}
        aria-modal={drawer.open ? "true" : undefined}
        aria-label={drawer.open ? "Folders and account" : undefined}
        onKeyDown={drawer.onKeyDown}
      >
        <Sidebar app={app} />
        <div class="drawer-only">
          {status}
          <SessionButtons
            app={app}
            onHelp={() => {
              drawer.set(false, false);
              setHelp(true);
            }}
            onSettings={() => {
              drawer.set(false, false);
              app.openSettings(true);
            }}
          />
        </div>
      </div>
      <MessageList app={app} />
      <Splitter />
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

/** Notifications, settings, help and sign-out: in the top bar on a desk, in the drawer on a phone. */
function SessionButtons({ app, onHelp, onSettings }: { app: MailApp; onHelp: () => void; onSettings: () => void }) {
  return (
    <span class="session">
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
      <button type="button" class="ghost" data-action="settings" onClick={onSettings}>
        Settings
      </button>
      <button type="button" class="ghost" onClick={onHelp} aria-label="Keyboard shortcuts">
        ?
      </button>
      <button type="button" class="ghost" onClick={() => void app.boot.signOut()}>
        Sign out
      </button>
    </span>
  );
}

const STEP = 16;

/** The widths the list may take: at least 20rem, leaving the reader its 24rem (style.css). */
function listBounds(): [number, number] {
  const rem = parseFloat(getComputedStyle(document.documentElement).fontSize) || 15;
  const list = document.querySelector<HTMLElement>(".layout > .list");
  const reader = document.querySelector<HTMLElement>(".layout > .reader");
  const room = (list?.getBoundingClientRect().width ?? 0) + (reader?.getBoundingClientRect().width ?? 0);
  const min = Math.round(20 * rem);
  return [min, Math.max(min, Math.round(room - 24 * rem))];
}

/** The border between list and reading pane (the ARIA window splitter pattern): dragged,
 * or moved with the arrow keys; the width is kept with the appearance preferences. */
function Splitter() {
  const [width, setWidth] = useState(() => readAppearance().listWidth);
  // Measured after layout and when the window changes, not in render: the app re-renders
  // on every window of the list arriving, and a measure there would force a layout each time.
  const [[min, max, measured], setBounds] = useState<[number, number, number]>([0, 0, 0]);
  const current = () => document.querySelector<HTMLElement>(".layout > .list")?.getBoundingClientRect().width ?? width;
  useEffect(() => {
    const f = () => setBounds([...listBounds(), Math.round(current())]);
    f();
    addEventListener("resize", f);
    return () => removeEventListener("resize", f);
  }, []);
  const resize = (w: number) => {
    const [lo, hi] = listBounds();
    const v = Math.round(Math.max(lo, Math.min(hi, w)));
    setWidth(v);
    setBounds([lo, hi, v]);
    setAppearance({ listWidth: v });
  };
  return (
    <div
      class="split"
      role="separator"
      aria-orientation="vertical"
      aria-label="Resize the message list"
      aria-valuemin={min}
      aria-valuemax={max}
      aria-valuenow={width || measured}
      tabIndex={0}
      onKeyDown={(e) => {
        const d = e.key === "ArrowRight" ? STEP : e.key === "ArrowLeft" ? -STEP : 0;
        if (d) {
          e.preventDefault();
          resize(current() + d);
        }
      }}
      onPointerDown={(e) => {
        const el = e.currentTarget as HTMLElement;
        const left = document.querySelector<HTMLElement>(".layout > .list")?.getBoundingClientRect().left ?? 0;
        el.setPointerCapture(e.pointerId);
        const move = (m: PointerEvent) => resize(m.clientX - left);
        const up = () => {
          el.removeEventListener("pointermove", move);
          el.removeEventListener("pointerup", up);
        };
        el.addEventListener("pointermove", move);
        el.addEventListener("pointerup", up);
      }}
    />
  );
}
