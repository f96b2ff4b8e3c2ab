// What this browser remembers between visits (localStorage: preferences, never secrets),
// and the performance marks of the start-up (read by web/e2e/bench.mjs).

export function readPref(key: string): string | null {
  try {
    return localStorage.getItem(key);
  } catch {
    return null;
  }
}

export function writePref(key: string, value: string): void {
  try {
    localStorage.setItem(key, value);
  } catch {
    /* private mode */
  }
}

export function mark(name: string): void {
  if (typeof performance !== "undefined" && typeof performance.mark === "function") performance.mark(name);
}

// How the client looks: kept in localStorage under one key, read again before the first
// paint by public/appearance.js (a classic script in <head>, which the CSP allows as
// 'self'), so a dark theme never flashes light while the app loads.

export type Theme = "system" | "light" | "dark";
export type Density = "comfortable" | "compact";
export type Pane = "right" | "bottom" | "off";
export interface Appearance {
  theme: Theme;
  density: Density;
  pane: Pane;
  /** Width of the message list beside a reading pane on the right, px; 0: half and half. */
  listWidth: number;
}

export const APPEARANCE_KEY = "tidings.appearance";
const DEFAULTS: Appearance = { theme: "system", density: "comfortable", pane: "right", listWidth: 0 };

function oneOf<T extends string>(v: unknown, allowed: readonly T[], d: T): T {
  return allowed.find((a) => a === v) ?? d;
}

export function readAppearance(): Appearance {
  return parseAppearance(readPref(APPEARANCE_KEY));
}

/** The saved value, whatever another version of the client (or a person) left there. */
export function parseAppearance(saved: string | null): Appearance {
  let raw: Record<string, unknown> = {};
  try {
    const v: unknown = JSON.parse(saved ?? "{}");
    if (v && typeof v === "object") raw = { ...v };
  } catch {
    /* a broken value: the defaults */
  }
  const w = Number(raw.listWidth);
  return {
    theme: oneOf(raw.theme, ["system", "light", "dark"], DEFAULTS.theme),
    density: oneOf(raw.density, ["comfortable", "compact"], DEFAULTS.density),
    pane: oneOf(raw.pane, ["right", "bottom", "off"], DEFAULTS.pane),
    listWidth: Number.isFinite(w) && w > 0 ? Math.round(w) : 0,
  };
}

const darkQuery = () => (typeof matchMedia === "function" ? matchMedia("(prefers-color-scheme: dark)") : null);

/** Sets the attributes style.css keys on; "system" follows the OS setting, also when it changes. */
export function applyAppearance(a: Appearance = readAppearance()): void {
  const root = document.documentElement;
  root.dataset.theme = a.theme === "system" ? (darkQuery()?.matches ? "dark" : "light") : a.theme;
  root.dataset.density = a.density;
  root.dataset.pane = a.pane;
  if (a.listWidth) root.style.setProperty("--list-w", `${a.listWidth}px`);
  else root.style.removeProperty("--list-w");
}

let following = false;
/** Keeps a "system" theme in step with the OS setting for the life of the page. */
export function followSystemTheme(): void {
  const q = darkQuery();
  if (following || !q) return;
  following = true;
  q.addEventListener("change", () => applyAppearance());
}

export function setAppearance(patch: Partial<Appearance>): Appearance {
  const a = { ...readAppearance(), ...patch };
  writePref(APPEARANCE_KEY, JSON.stringify(a));
  applyAppearance(a);
  return a;
}

/** Rows of the message list are this tall (px); the virtualised list positions them by it. */
export function rowHeight(): number {
  return typeof document !== "undefined" && document.documentElement.dataset.density === "compact" ? 48 : 64;
}
