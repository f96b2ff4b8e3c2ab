// Adding, trying, editing and removing mail accounts from the browser: the calls to the
// server's setup routes (`/web/accounts…`, see crates/api/src/setup) and the pure parts
// of the Add-account form (validation, what discovered settings mean). No UI here.

export type Security = "tls" | "starttls" | "none";

export interface Server {
  host: string;
  port: number;
  security: Security;
}

export interface Settings {
  kind: "imap" | "pop3";
  incoming: Server;
  smtp: Server | null;
  username: string;
}

/** What discovery found for an address. */
export interface Found extends Settings {
  source: "table" | "srv" | "autoconfig" | "guess";
  provider: string | null;
  oauth: string | null;
  appPassword: boolean;
  foreign: boolean;
}

export interface Failure {
  server: "imap" | "pop3" | "smtp";
  kind: "wrongPassword" | "appPassword" | "imapDisabled" | "tls" | "unreachable" | "refused";
  message: string;
}

export interface AccountInfo {
  id: string;
  name: string;
  auth: "password" | "oauth2";
  settings: Settings;
  status: string;
  error: string;
}

export class SetupError extends Error {
  constructor(
    message: string,
    public status: number,
    public failure: Failure | null = null,
  ) {
    super(message);
  }
}

const HEADERS = { "X-Tidings-Client": "web", "Content-Type": "application/json" };

async function call<T>(method: string, path: string, body?: unknown): Promise<T> {
  const r = await fetch(path, {
    method,
    credentials: "same-origin",
    headers: HEADERS,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  let v: Record<string, unknown> = {};
  try {
    v = (await r.json()) as Record<string, unknown>;
  } catch {
    /* not JSON */
  }
  if (!r.ok) {
    const msg = typeof v.error === "string" ? v.error : `The server answered ${r.status}.`;
    throw new SetupError(msg, r.status, (v.failure as Failure | undefined) ?? null);
  }
  return v as T;
}

export const setupApi = {
  list: () => call<{ accounts: AccountInfo[]; oauthProviders?: string[] }>("GET", "/web/accounts"),
  discover: (email: string) => call<Found>("POST", "/web/accounts/discover", { email }),
  tryIt: (password: string, settings: Settings) => call<{ ok: true }>("POST", "/web/accounts/try", { password, settings }),
  add: (email: string, password: string, settings: Settings, name?: string) =>
    call<{ id: string; name: string }>("POST", "/web/accounts", { email, password, settings, name }),
  edit: (id: string, patch: { name?: string; password?: string; settings?: Settings }) =>
    call<{ id: string }>("PATCH", `/web/accounts/${encodeURIComponent(id)}`, patch),
  remove: (id: string) => call<{ removed: string }>("DELETE", `/web/accounts/${encodeURIComponent(id)}`),
};

/** A plausible address: something, one @, a domain with a dot. */
export function validEmail(email: string): boolean {
  return /^[^@\s]+@[^@\s.]+(\.[^@\s.]+)+$/.test(email.trim());
}

export function validHost(host: string): boolean {
  return /^[A-Za-z0-9.\-:[\]]{1,253}$/.test(host.trim());
}

export function validPort(port: number): boolean {
  return Number.isInteger(port) && port > 0 && port < 65536;
}

/** What is wrong with the form, field by field; empty when it can be sent. */
export function formErrors(email: string, password: string, s: Settings | null): Record<string, string> {
  const e: Record<string, string> = {};
  if (!validEmail(email)) e.email = "Enter an email address (name@example.org).";
  if (!password) e.password = "Enter the password.";
  if (s) {
    if (!validHost(s.incoming.host)) e.incomingHost = "Enter the incoming server's name.";
    if (!validPort(s.incoming.port)) e.incomingPort = "Enter a port between 1 and 65535.";
    if (s.smtp && !validHost(s.smtp.host)) e.smtpHost = "Enter the outgoing server's name.";
    if (s.smtp && !validPort(s.smtp.port)) e.smtpPort = "Enter a port between 1 and 65535.";
    if (!s.username.trim()) e.username = "Enter the user name.";
  }
  return e;
}

/** The settings a form starts with, from what discovery found. */
export function settingsOf(f: Found): Settings {
  return {
    kind: f.kind,
    incoming: { ...f.incoming },
    smtp: f.smtp ? { ...f.smtp } : null,
    username: f.username,
  };
}

/** Sentences about discovered settings the user should read before going on. */
export function foundNotes(f: Found): { text: string; warn: boolean }[] {
  const notes: { text: string; warn: boolean }[] = [];
  const where = {
    table: `Settings for ${f.provider ?? "this provider"} are built in.`,
    srv: "Settings found in the domain's DNS (SRV records).",
    autoconfig: "Settings found in the provider's configuration document.",
    guess: "No settings were published for this domain: these are guesses; check them under Server settings.",
  }[f.source];
  notes.push({ text: where, warn: f.source === "guess" });
  if (f.foreign)
    notes.push({
      text: `The configuration document names servers outside your address's domain (${f.incoming.host}). Use them only if you trust them.`,
      warn: true,
    });
  if (f.appPassword)
    notes.push({
      text: `${f.provider ?? "This provider"} needs an app password: create one in your account's security settings and enter it here.`,
      warn: false,
    });
  return notes;
}

/** The port a security mode usually uses, for when the user switches it. */
export function defaultPort(server: "imap" | "pop3" | "smtp", security: Security): number {
  const table = {
    imap: { tls: 993, starttls: 143, none: 143 },
    pop3: { tls: 995, starttls: 110, none: 110 },
    smtp: { tls: 465, starttls: 587, none: 587 },
  } as const;
  return table[server][security];
}
