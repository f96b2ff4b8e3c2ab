// The Settings screen (`#/settings`, loaded when opened): one section component after
// another; each part of the app appends its own to SECTIONS.

import type { JSX } from "preact";
import { useLayoutEffect } from "preact/hooks";
import type { MailApp } from "../state";
import { OfflineSettings } from "./settings/Offline";

export type SettingsSection = (p: { app: MailApp }) => JSX.Element;

export const SECTIONS: SettingsSection[] = [OfflineSettings];

export function Settings({ app, onClose }: { app: MailApp; onClose: () => void }) {
  useLayoutEffect(() => {
    const k = (e: KeyboardEvent) => e.key === "Escape" && onClose();
    document.addEventListener("keydown", k);
    return () => document.removeEventListener("keydown", k);
  }, []);
  return (
    <div class="overlay" onClick={onClose}>
      <div class="dialog settings" role="dialog" aria-modal="true" aria-labelledby="settings-title" onClick={(e) => e.stopPropagation()}>
        <h2 id="settings-title">Settings</h2>
        {SECTIONS.map((S, i) => (
          <S key={i} app={app} />
        ))}
        <button type="button" onClick={onClose}>
          Close
        </button>
      </div>
    </div>
  );
}
