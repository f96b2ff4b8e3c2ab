// Desktop notifications of new mail in Inbox: optional, asked for by the user, and only
// while the page is hidden.

import type { Email } from "../jmap-types";
import type { MailApp } from "../state";
import { readPref, writePref } from "./prefs";

export class Notifications {
  on = readPref("tidings.notify") === "1";

  constructor(private app: MailApp) {}

  async set(on: boolean): Promise<void> {
    if (on && typeof Notification !== "undefined" && Notification.permission !== "granted") {
      on = (await Notification.requestPermission()) === "granted";
    }
    this.on = on;
    writePref("tidings.notify", on ? "1" : "0");
    this.app.emit();
  }

  notifyNew(created: Email[]): void {
    const inbox = this.app.folders.byRole("inbox")?.id;
    if (!this.on || !inbox || typeof Notification === "undefined" || Notification.permission !== "granted") return;
    if (typeof document !== "undefined" && !document.hidden) return;
    for (const e of created.filter((x) => x.mailboxIds[inbox] && !x.keywords.$seen).slice(0, 3)) {
      const from = e.from?.[0];
      new Notification(from?.name || from?.email || "New mail", { body: e.subject ?? "", tag: e.id });
    }
  }
}
