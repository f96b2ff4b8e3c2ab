import { useEffect, useLayoutEffect, useRef, useState } from "preact/hooks";
import type { RefObject } from "preact";
import type { MailApp } from "../state";

export const SHORTCUTS: [string, string][] = [
  ["j / k", "next / previous message"],
  ["o or Enter", "open the message"],
  ["u or Escape", "back to the list"],
  ["x", "select the message"],
  ["* a", "select all loaded messages"],
  ["s", "flag / unflag"],
  ["U / I", "mark unread / read"],
  ["e", "archive"],
  ["#", "delete (to Trash)"],
  ["z", "undo the last action"],
  ["c", "compose"],
  ["r / a / f", "reply / reply all / forward"],
  ["/", "search"],
  ["g i", "go to Inbox"],
  ["?", "this help"],
];

/** Keyboard shortcuts (ignored while typing in a field). */
export function useShortcuts(app: MailApp, o: { search: RefObject<HTMLInputElement>; toggleHelp: () => void; openSearch: () => void }): void {
  useEffect(() => {
    let prefix = "";
    const onKey = (e: KeyboardEvent) => {
      const t = e.target as HTMLElement | null;
      if (t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || t.isContentEditable)) return;
      if (e.ctrlKey || e.metaKey || e.altKey) return;
      // A modal screen over the mail (Settings, the accounts) takes the keys: a shortcut
      // must not act on mail the user cannot see.
      if (app.settingsOpen || app.accountsOpen) return;
      // The list is one tab stop (a grid with aria-activedescendant): inside it the arrows
      // move the cursor and Space selects, as the ARIA grid pattern expects.
      const inList = !!t?.closest(".scroller[role=grid]");
      const k = inList ? ({ ArrowDown: "j", ArrowUp: "k", " ": "x" } as Record<string, string>)[e.key] ?? e.key : e.key;
      const p = prefix;
      prefix = "";
      const move = (d: number) => {
        const n = Math.max(0, Math.min(app.list.model.total - 1, app.list.cursor + d));
        app.list.cursor = n;
        const id = app.list.model.ids[n];
        if (app.reader.open && id) void app.reader.openThread(id);
        app.emit();
      };
      if (p === "g" && k === "i") {
        const inbox = app.folders.byRole("inbox");
        if (inbox) void app.list.selectMailbox(inbox.id);
        return;
      }
      if (p === "*" && k === "a") {
        for (const id of app.list.model.ids) if (id) app.list.selected.add(id);
        app.emit();
        return;
      }
      switch (k) {
        case "j":
          move(1);
          break;
        case "k":
          move(-1);
          break;
        case "o":
        case "Enter": {
          const id = app.list.model.ids[app.list.cursor];
          if (id) void app.reader.openThread(id);
          break;
        }
        case "u":
        case "Escape":
          if (app.reader.open) app.reader.closeThread();
          else if (app.list.selected.size) {
            app.list.selected.clear();
            app.emit();
          }
          break;
        case "x": {
          const id = app.list.model.ids[app.list.cursor];
          if (id) {
            if (app.list.selected.has(id)) app.list.selected.delete(id);
            else app.list.selected.add(id);
            app.emit();
          }
          break;
        }
        case "s":
          void app.actions.toggle("$flagged");
          break;
        case "U":
          void app.actions.mark("$seen", false);
          break;
        case "I":
          void app.actions.mark("$seen", true);
          break;
        case "e":
          if (app.can("move")) void app.actions.archive();
          break;
        case "#":
          void app.actions.remove();
          break;
        case "z":
          void app.actions.undo();
          break;
        case "c":
          app.composer.start("new");
          break;
        case "r":
          app.composer.start("reply");
          break;
        case "a":
          app.composer.start("replyAll");
          break;
        case "f":
          app.composer.start("forward");
          break;
        case "/":
          o.openSearch();
          o.search.current?.focus();
          break;
        case "?":
          o.toggleHelp();
          break;
        case "g":
        case "*":
          prefix = k;
          return;
        default:
          return;
      }
      e.preventDefault();
    };
    document.addEventListener("keydown", onKey);
    return () => document.removeEventListener("keydown", onKey);
  }, [app]);
}

export function Help({ app, onClose }: { app: MailApp; onClose: () => void }) {
  // Before the dialog is painted: an Escape pressed as soon as it shows must close it.
  useLayoutEffect(() => {
    const k = (e: KeyboardEvent) => e.key === "Escape" && onClose();
    document.addEventListener("keydown", k);
    return () => document.removeEventListener("keydown", k);
  }, []);
  const missing = (["read", "move", "draft", "send", "folders"] as const).filter((a) => !app.can(a));
  return (
    <div class="overlay" onClick={onClose}>
      <div class="dialog" role="dialog" aria-modal="true" aria-labelledby="help-title" onClick={(e) => e.stopPropagation()}>
        <h2 id="help-title">Keyboard shortcuts</h2>
        <dl class="keys">
          {SHORTCUTS.map(([k, d]) => (
            <div key={k}>
              <dt>
                <kbd>{k}</kbd>
              </dt>
              <dd>{d}</dd>
            </div>
          ))}
        </dl>
        {missing.length > 0 && (
          <p class="note">
            This server does not offer yet: {missing.join(", ")}. Those actions are hidden until it does.
          </p>
        )}
        <button type="button" onClick={onClose} autofocus>
          Close
        </button>
      </div>
    </div>
  );
}

const FOCUSABLE = "a[href], button:not([disabled]), input:not([disabled]), select:not([disabled]), textarea, [tabindex]:not([tabindex='-1'])";

export interface Drawer {
  open: boolean;
  /** Opens or closes it; closing gives focus back to the button unless something else takes it. */
  set: (on: boolean, refocus?: boolean) => void;
  button: RefObject<HTMLButtonElement>;
  panel: RefObject<HTMLDivElement>;
  onKeyDown: (e: KeyboardEvent) => void;
}

/** The folder drawer of the phone layout, a modal dialog while open: focus moves in and is
 * kept there (Tab wraps), Escape or a folder choice closes it, and focus goes back to the
 * button that opened it. */
export function useDrawer(app: MailApp): Drawer {
  const [open, setOpen] = useState(false);
  const button = useRef<HTMLButtonElement>(null);
  const panel = useRef<HTMLDivElement>(null);
  const set = (on: boolean, refocus = true) => {
    setOpen(on);
    if (!on && refocus) button.current?.focus();
  };
  useEffect(() => {
    if (open) panel.current?.querySelector<HTMLElement>(FOCUSABLE)?.focus();
  }, [open]);
  // Choosing a folder (or a search) changes the view: the drawer has done its job.
  const view = useRef(app.list.view);
  useEffect(() => {
    if (view.current !== app.list.view && open) set(false);
    view.current = app.list.view;
  }, [app.list.view]);
  // The accounts screen opened from it covers everything: the drawer steps aside.
  useEffect(() => {
    if (app.accountsOpen && open) set(false, false);
  }, [app.accountsOpen]);
  const onKeyDown = (e: KeyboardEvent) => {
    if (!open) return;
    if (e.key === "Escape") {
      e.stopPropagation();
      set(false);
      return;
    }
    if (e.key !== "Tab" || !panel.current) return;
    const all = [...panel.current.querySelectorAll<HTMLElement>(FOCUSABLE)].filter((el) => el.offsetParent !== null);
    const first = all[0];
    const last = all[all.length - 1];
    if (!first || !last) return;
    if (e.shiftKey && document.activeElement === first) {
      e.preventDefault();
      last.focus();
    } else if (!e.shiftKey && document.activeElement === last) {
      e.preventDefault();
      first.focus();
    }
  };
  return { open, set, button, panel, onKeyDown };
}

// Our history entries carry an increasing number (time-based, so also across reloads): an
// entry left behind by a step we could not take back (another entry was pushed over it)
// is older than every layer still open, and going back to it closes them all.
let lastSeq = 0;
const nextSeq = () => (lastSeq = Math.max(Date.now(), lastSeq + 1));
function seqOf(state: unknown): number {
  return state && typeof state === "object" && "tidingsSeq" in state ? Number(state.tidingsSeq) || 0 : 0;
}

/** The browser's Back (a phone's back gesture) closes what covers the list, top first:
 * composer, then the open message, then the drawer. Each layer opened pushes a history
 * entry with the same URL (so a reload still opens the mailbox); a layer closed in the UI
 * takes its entry back. */
export function useBackStack(app: MailApp, drawer: Drawer): void {
  /** The entries of the layers open, oldest first. */
  const stack = useRef<number[]>([]);
  const popping = useRef<string | null>(null);
  // Closing the composer first saves the draft (async): meanwhile it no longer counts.
  const closing = useRef(false);
  if (!app.composer.draft) closing.current = false;
  const composing = !!app.composer.draft && !closing.current;
  const layers = (drawer.open ? 1 : 0) + (app.reader.open ? 1 : 0) + (composing ? 1 : 0);
  useEffect(() => {
    if (popping.current !== null) return;
    const s = stack.current;
    while (s.length < layers) {
      const seq = nextSeq();
      history.pushState({ tidingsSeq: seq }, "", location.href);
      s.push(seq);
    }
    if (s.length > layers) {
      const n = s.length - layers;
      // Only our own entry is taken back: over another (`#/settings` opened meanwhile),
      // going back would leave that one.
      const ours = seqOf(history.state) === s[s.length - 1];
      s.length = layers;
      if (ours) {
        popping.current = location.href;
        history.go(-n);
      }
    }
  });
  useEffect(() => {
    const onPop = (e: PopStateEvent) => {
      if (popping.current !== null) {
        // Our own step back: the URL the app had moved to (a folder chosen meanwhile) stays.
        history.replaceState(history.state, "", popping.current);
        popping.current = null;
        app.emit();
        return;
      }
      const at = seqOf(e.state);
      const keep = stack.current.filter((q) => q <= at).length;
      stack.current.length = keep;
      let over = layers - keep;
      if (over > 0 && composing) {
        closing.current = true;
        void app.composer.close();
        over--;
      }
      if (over > 0 && app.reader.open) {
        app.reader.closeThread();
        over--;
      }
      if (over > 0 && drawer.open) drawer.set(false);
    };
    addEventListener("popstate", onPop);
    return () => removeEventListener("popstate", onPop);
  });
}
