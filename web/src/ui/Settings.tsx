import { useLayoutEffect } from "preact/hooks";
import type { MailApp } from "../state";
import { Appearance } from "./settings/Appearance";
import { OfflineSettings } from "./settings/Offline";

/** The Settings screen (`#/settings`): one section component after the other. */
const SECTIONS = [Appearance, OfflineSettings];

export function Settings({ app, onClose }: { app: MailApp; onClose: () => void }) {
  useLayoutEffect(() => {
    const k = (e: KeyboardEvent) => e.key === "Escape" && onClose();
    document.addEventListener("keydown", k);
    return () => document.removeEventListener("keydown", k);
  }, []);
  return (
    <div class="overlay settings-overlay" onClick={onClose}>
      <div class="dialog settings" role="dialog" aria-modal="true" aria-labelledby="settings-title" onClick={(e) => e.stopPropagation()}>
        <header class="settings-head">
          <h2 id="settings-title">Settings</h2>
          <button type="button" onClick={onClose}>
            Done
          </button>
        </header>
        {SECTIONS.map((S, i) => (
          <S key={i} app={app} />
        ))}
      </div>
    </div>
  );
}
