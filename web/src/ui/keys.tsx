import { useEffect, useLayoutEffect } from "preact/hooks";
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
export function useShortcuts(app: MailApp, o: { search: RefObject<HTMLInputElement>; toggleHelp: () => void }): void {
  useEffect(() => {
    let prefix = "";
    const onKey = (e: KeyboardEvent) => {
      const t = e.target as HTMLElement | null;
      if (t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || t.isContentEditable)) return;
      if (e.ctrlKey || e.metaKey || e.altKey) return;
      const k = e.key;
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
