// `#/settings`: whether the Settings screen is open, and the screen itself loaded on
// first use (it is not part of the first screen's script).

import type { ComponentType } from "preact";
import { useEffect, useState } from "preact/hooks";
import type { MailApp } from "../../state";

type SettingsComponent = ComponentType<{ app: MailApp; onClose: () => void }>;

export function useSettingsRoute(): [boolean, (open: boolean) => void] {
  const [open, setOpen] = useState(location.hash === "#/settings");
  const [back, setBack] = useState("");
  useEffect(() => {
    const f = () => setOpen(location.hash === "#/settings");
    window.addEventListener("hashchange", f);
    return () => window.removeEventListener("hashchange", f);
  }, []);
  const set = (on: boolean) => {
    if (on && location.hash !== "#/settings") {
      setBack(location.hash);
      location.hash = "#/settings";
    } else if (!on) history.replaceState(null, "", back || "#/");
    setOpen(on);
  };
  return [open, set];
}

export function SettingsScreen({ app, onClose }: { app: MailApp; onClose: () => void }) {
  const [C, setC] = useState<SettingsComponent | null>(null);
  useEffect(() => {
    void import("../Settings").then((m) => setC(() => m.Settings));
  }, []);
  return C ? <C app={app} onClose={onClose} /> : null;
}
