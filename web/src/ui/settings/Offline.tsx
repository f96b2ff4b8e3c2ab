// Settings: notifications (reaching a closed tab through Web Push when the browser and
// the server allow it) and offline reading (recent mail kept in IndexedDB on this
// device; turning it off deletes it).

import { useState } from "preact/hooks";
import { readPref, writePref } from "../../app/prefs";
import type { MailApp } from "../../state";

export function OfflineSettings({ app }: { app: MailApp }) {
  const [offline, setOffline] = useState(readPref("tidings.offline") === "1");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState("");
  const n = app.notifications;
  const toggleOffline = async (on: boolean) => {
    setBusy(true);
    setError("");
    setOffline(on);
    try {
      const m = await import("../../offline");
      if (on) {
        const o = await m.enableOffline(app);
        writePref("tidings.offline", "1");
        await o.fetchAhead();
      } else {
        writePref("tidings.offline", "0");
        const cur = app.jmap.offline;
        if (cur instanceof m.Offline) await cur.destroy(app.jmap);
        else await m.forget();
      }
    } catch (e) {
      setOffline(!on);
      setError(e instanceof Error ? e.message : String(e));
    }
    setBusy(false);
    app.emit();
  };
  return (
    <>
      <label>
        <input type="checkbox" name="notifications" checked={n.on} onChange={(e) => void n.set(e.currentTarget.checked)} />
        Notify me of new mail in Inbox
      </label>
      {n.on && <p class="note">{n.push ? "Notifications arrive with Tidings closed too." : `Only while Tidings is open${n.pushProblem ? `: ${n.pushProblem}` : ""}.`}</p>}
      <label>
        <input type="checkbox" name="offline" checked={offline} disabled={busy} onChange={(e) => void toggleOffline(e.currentTarget.checked)} />
        Keep recent mail for offline reading
      </label>
      <p class="note" data-offline-status={busy ? "busy" : offline ? "on" : "off"}>
        {busy
          ? offline
            ? "Keeping recent mail…"
            : "Working…"
          : offline
            ? "The latest messages of every folder are kept on this device; changes made offline are sent when the connection is back."
            : "Nothing is kept on this device."}
      </p>
      {offline && app.jmap.offline?.note() && <p class="note">{app.jmap.offline.note()}</p>}
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
    </>
  );
}
