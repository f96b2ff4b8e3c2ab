// Small inline SVG icons (no icon font, no emoji: they render the same everywhere).

const PATHS: Record<string, string> = {
  inbox: "M3 13h5l1.5 2.5h5L16 13h5M5 5h14l2 8v6H3v-6z",
  drafts: "M4 20h4l10-10-4-4L4 16zM13 7l4 4",
  sent: "M3 11l18-8-8 18-2-8z",
  archive: "M3 4h18v4H3zM5 8v12h14V8M10 12h4",
  junk: "M12 3l10 18H2zM12 10v5M12 18v.5",
  trash: "M4 7h16M9 7V4h6v3M6 7l1 13h10l1-13",
  folder: "M3 6h6l2 2h10v11H3z",
  flag: "M5 21V4h12l-2 4 2 4H5",
  menu: "M4 6h16M4 12h16M4 18h16",
  search: "M10.5 17a6.5 6.5 0 1 0 0-13 6.5 6.5 0 0 0 0 13zM15.5 15.5L20 20",
  back: "M19 12H5M11 6l-6 6 6 6",
  clip: "M16 7l-7 7a2 2 0 0 0 3 3l7-7a4 4 0 0 0-6-6l-7 7a6 6 0 0 0 8 8l6-6",
};

export function Icon({ name, label }: { name: string; label?: string }) {
  const d = PATHS[name] ?? PATHS.folder;
  return (
    <svg class="ico" viewBox="0 0 24 24" width="18" height="18" aria-hidden={label ? undefined : "true"} role={label ? "img" : undefined} aria-label={label}>
      <path d={d} fill="none" stroke="currentColor" stroke-width="1.8" stroke-linejoin="round" stroke-linecap="round" />
    </svg>
  );
}
