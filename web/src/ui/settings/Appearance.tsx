import { useState } from "preact/hooks";
import type { MailApp } from "../../state";
import { type Appearance as Prefs, readAppearance, setAppearance } from "../../app/prefs";

type Choice<K extends keyof Prefs> = { key: K; legend: string; options: [Prefs[K], string][] };

const CHOICES = [
  { key: "theme", legend: "Theme", options: [["system", "As the system"], ["light", "Light"], ["dark", "Dark"]] } satisfies Choice<"theme">,
  { key: "density", legend: "Density", options: [["comfortable", "Comfortable"], ["compact", "Compact"]] } satisfies Choice<"density">,
  { key: "pane", legend: "Reading pane", options: [["right", "Right of the list"], ["bottom", "Below the list"], ["off", "Off (the message replaces the list)"]] } satisfies Choice<"pane">,
];

/** Theme, density and the reading pane's place: applied at once, kept in this browser. */
export function Appearance({ app }: { app: MailApp }) {
  const [prefs, setPrefs] = useState(readAppearance);
  return (
    <>
      {CHOICES.map((c) => (
        <fieldset key={c.key} class="choice">
          <legend>{c.legend}</legend>
          {c.options.map(([value, label]) => (
            <label key={value}>
              <input
                type="radio"
                name={c.key}
                value={value}
                checked={prefs[c.key] === value}
                onChange={() => {
                  setPrefs(setAppearance({ [c.key]: value }));
                  // The list's row height follows the density.
                  app.emit();
                }}
              />
              {label}
            </label>
          ))}
        </fieldset>
      ))}
    </>
  );
}
