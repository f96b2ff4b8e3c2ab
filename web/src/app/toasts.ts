// The one message at the bottom of the screen: what an action did (with Undo while it
// can be undone), what went wrong, and the state of the message being sent.

import type { MailApp } from "../state";

export interface Toast {
  text: string;
  undo?: () => void;
  error?: boolean;
  /** It tells the state of the message being sent (`Sending`). */
  send?: boolean;
}

export class Toasts {
  /** The toast on screen, if any. */
  current: Toast | null = null;

  constructor(private app: MailApp) {}

  error(text: string): void {
    this.current = { text, error: true };
    this.app.emit();
  }
}
