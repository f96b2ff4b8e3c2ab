// The JMAP transport (RFC 8620): the Session, batched method calls over HTTP, feature
// detection, and the push channel (RFC 8887 WebSocket when the server offers it, else
// EventSource, else polling). Nothing here knows about the UI.

import type { Id, Method, MethodErrorArgs, Methods, Session, StateChange, TypeStates, UploadResponse, WebSocketCapability } from "./jmap-types";

export type { Id, Session, SessionAccount, SyncInfo } from "./jmap-types";
/** A method call as sent (RFC 8620 3.2): name, arguments, call id. */
export type Invocation = [string, Record<string, unknown>, string];

export const CORE = "urn:ietf:params:jmap:core";
export const MAIL = "urn:ietf:params:jmap:mail";
export const SUBMISSION = "urn:ietf:params:jmap:submission";
export const WEBSOCKET = "urn:ietf:params:jmap:websocket";
/** RFC 9749 3: Web Push with VAPID; the capability holds the server's applicationServerKey. */
export const WEBPUSH_VAPID = "urn:ietf:params:jmap:webpush-vapid";
/** Tidings' own account capability: the account's sync status (see ARCHITECTURE.md). */
export const TIDINGS_SYNC = "urn:tidings:params:sync";

export class HttpError extends Error {
  constructor(
    public status: number,
    message: string,
  ) {
    super(message);
  }
}

export class MethodError extends Error {
  constructor(
    public type: string,
    public description?: string,
  ) {
    super(description ? `${type}: ${description}` : type);
  }
}

/** The answers of one request, by call id (RFC 8620 3.4). Each is read as the response
 * of the method it names, and only if the server answered that method: the one place
 * where JSON becomes a typed response. */
export class Answers {
  constructor(private byId: Map<string, [string, unknown]>) {}

  /** The answer to call `id` of `method`: its response, a `MethodError` (an `error`
   * response, or an answer of another method), or undefined when there is none. */
  get<M extends Method>(id: string, method: M): Methods[M] | MethodError | undefined {
    const a = this.byId.get(id);
    if (a === undefined) return undefined;
    const [name, args] = a;
    if (name === "error") {
      const e = (args ?? {}) as Partial<MethodErrorArgs>;
      return new MethodError(String(e.type), typeof e.description === "string" ? e.description : undefined);
    }
    if (name !== method) return new MethodError("serverFail", `${method} answered as ${name}`);
    return args as Methods[M];
  }
}

/** Headers every request of ours carries (the server then answers a 401 without asking
 * the browser for a Basic password). */
const CLIENT_HEADERS = { "X-Tidings-Client": "web" };

export type Fetch = typeof fetch;

/** The optional methods whose presence is probed (`probeCalls`). */
const PROBED = ["Email/set", "Mailbox/set", "EmailSubmission/set"] as const;

/** A method response as sent (RFC 8620 3.4): name, arguments, call id. */
export type Response = [string, unknown, string];

/** Offline reading (web/src/offline.ts, loaded only when the user turned it on): told
 * what went through, asked when the network is gone (a `TypeError` from fetch; an HTTP
 * error is an answer, not an absence). Without it nothing is kept anywhere. */
export interface OfflineSeam {
  sessionLoaded(s: Session): void;
  answered(calls: Invocation[], responses: Response[]): void;
  /** The Session kept last, or null. */
  session(): Promise<Session | null>;
  /** The responses from what was kept (queuing what changes mail), or null when the
   * calls cannot be answered from it. */
  replay(calls: Invocation[]): Promise<Response[] | null>;
  /** What the connection indicator says while offline ("" for nothing more). */
  note(): string;
}

export class Jmap {
  session!: Session;
  /** Optional methods the server answered (anything but `unknownMethod`). */
  methods = new Set<string>();
  offline: OfflineSeam | null = null;

  constructor(private fetchFn: Fetch = (i, o) => fetch(i, o)) {}

  async loadSession(): Promise<Session> {
    let r: globalThis.Response;
    try {
      r = await this.fetchFn("/jmap/session", {
        headers: CLIENT_HEADERS,
        credentials: "same-origin",
      });
    } catch (e) {
      const kept = e instanceof TypeError ? await this.offline?.session() : null;
      if (!kept) throw e;
      this.session = kept;
      return kept;
    }
    if (!r.ok) throw new HttpError(r.status, `session: ${r.status}`);
    this.session = (await r.json()) as Session;
    this.offline?.sessionLoaded(this.session);
    return this.session;
  }

  /** One request with several method calls; answers by call id. A method error of one
   * call is returned as a `MethodError` value, not thrown, so the others still count. */
  async request(calls: Invocation[], apiUrl = this.session.apiUrl): Promise<Answers> {
    let responses: Response[];
    try {
      responses = await this.send(calls, apiUrl);
    } catch (e) {
      const kept = e instanceof TypeError ? await this.offline?.replay(calls) : null;
      if (!kept) throw e;
      responses = kept;
    }
    return new Answers(new Map(responses.map(([name, args, id]) => [id, [name, args]])));
  }

  /** The request on the network, nothing kept or replayed. */
  async send(calls: Invocation[], apiUrl = this.session.apiUrl): Promise<Response[]> {
    const using = [CORE, MAIL];
    if (calls.some((c) => c[0].startsWith("EmailSubmission") || c[0].startsWith("Identity")))
      using.push(SUBMISSION);
    const r = await this.fetchFn(apiUrl, {
      method: "POST",
      credentials: "same-origin",
      headers: { ...CLIENT_HEADERS, "Content-Type": "application/json" },
      body: JSON.stringify({ using, methodCalls: calls }),
    });
    if (!r.ok) throw new HttpError(r.status, `JMAP request failed: ${r.status}`);
    const body = (await r.json()) as { methodResponses: Response[] };
    this.offline?.answered(calls, body.methodResponses);
    return body.methodResponses;
  }

  /** One method call; a method error is thrown. */
  async call<M extends Method>(name: M, args: Record<string, unknown>): Promise<Methods[M]> {
    const r = (await this.request([[name, args, "0"]])).get("0", name);
    if (r === undefined) throw new MethodError("serverFail", "no response");
    if (r instanceof MethodError) throw r;
    return r;
  }

  /** The calls that ask the server which optional methods it has: each `/set` with
   * nothing to do (a no-op by RFC 8620 5.3); a server without it answers `unknownMethod`.
   * Sent with the first request of the app; `readProbe` takes the answers. */
  probeCalls(accountId: Id): Invocation[] {
    return PROBED.map((m) => [m, { accountId }, `probe:${m}`]);
  }

  readProbe(answers: Answers): void {
    for (const m of PROBED) {
      const a = answers.get(`probe:${m}`, m);
      if (a === undefined) continue;
      if (a instanceof MethodError && (a.type === "unknownMethod" || a.type === "unknownCapability")) this.methods.delete(m);
      else this.methods.add(m);
    }
  }

  /** Records what a call's answer says about the method's existence. */
  learn(method: string, answer: unknown): void {
    if (answer instanceof MethodError && answer.type === "unknownMethod") this.methods.delete(method);
    else if (answer !== undefined) this.methods.add(method);
  }

  has(method: string): boolean {
    return this.methods.has(method);
  }

  downloadUrl(accountId: Id, blobId: Id, name: string, type: string): string {
    return this.session.downloadUrl
      .replace("{accountId}", encodeURIComponent(accountId))
      .replace("{blobId}", encodeURIComponent(blobId))
      .replace("{name}", encodeURIComponent(name || "attachment"))
      .replace("{type}", encodeURIComponent(type || "application/octet-stream"));
  }

  /** Uploads a blob (RFC 8620 6.1) with progress; resolves to its blob id. */
  upload(accountId: Id, file: Blob, onProgress?: (fraction: number) => void): Promise<UploadResponse> {
    const url = this.session.uploadUrl.replace("{accountId}", encodeURIComponent(accountId));
    return new Promise((resolve, reject) => {
      const x = new XMLHttpRequest();
      x.open("POST", url);
      x.withCredentials = true;
      x.setRequestHeader("X-Tidings-Client", "web");
      x.setRequestHeader("Content-Type", file.type || "application/octet-stream");
      x.upload.onprogress = (e) => {
        if (e.lengthComputable) onProgress?.(e.loaded / e.total);
      };
      x.onload = () => {
        if (x.status >= 200 && x.status < 300) resolve(JSON.parse(x.responseText) as UploadResponse);
        else reject(new HttpError(x.status, `upload failed: ${x.status}`));
      };
      x.onerror = () => reject(new HttpError(0, "upload failed: network"));
      x.send(file);
    });
  }
}

export async function signIn(username: string, password: string): Promise<void> {
  const r = await fetch("/auth/login", {
    method: "POST",
    credentials: "same-origin",
    headers: { ...CLIENT_HEADERS, "Content-Type": "application/json" },
    body: JSON.stringify({ username, password }),
  });
  if (!r.ok) {
    let msg = "Sign-in failed.";
    try {
      msg = ((await r.json()) as { error?: string }).error ?? msg;
    } catch {
      /* not JSON */
    }
    throw new HttpError(r.status, msg);
  }
}

export async function signOut(): Promise<void> {
  await fetch("/auth/logout", { method: "POST", credentials: "same-origin", headers: CLIENT_HEADERS });
}

// --- push ------------------------------------------------------------------------------

export type { TypeStates } from "./jmap-types";
export type Connection = "connecting" | "live" | "polling" | "offline";

export interface PushOptions {
  onChange: (c: TypeStates | null) => void;
  onStatus: (s: Connection) => void;
  /** Polling interval without push, ms. */
  pollMs?: number;
}

/** Keeps a push channel open with exponential backoff (1 s doubling to 30 s, jittered).
 * `onChange(null)` means "something may have changed" (polling, or after a reconnect). */
export class Push {
  private ws: WebSocket | null = null;
  private es: EventSource | null = null;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private attempt = 0;
  private stopped = false;

  constructor(
    private session: Session,
    private opts: PushOptions,
  ) {}

  start(): void {
    this.stopped = false;
    this.connect();
    window.addEventListener("online", this.kick);
  }

  stop(): void {
    this.stopped = true;
    window.removeEventListener("online", this.kick);
    this.ws?.close();
    this.es?.close();
    if (this.timer) clearTimeout(this.timer);
  }

  private kick = () => {
    if (this.timer) clearTimeout(this.timer);
    this.attempt = 0;
    this.connect();
  };

  private retry(): void {
    if (this.stopped) return;
    this.opts.onStatus(navigator.onLine === false ? "offline" : "connecting");
    const base = Math.min(30_000, 1000 * 2 ** this.attempt++);
    this.timer = setTimeout(() => this.connect(), base / 2 + Math.random() * (base / 2));
  }

  private connect(): void {
    if (this.stopped) return;
    const ws: WebSocketCapability | undefined = this.session.capabilities[WEBSOCKET];
    if (ws?.url && ws.supportsPush && typeof WebSocket !== "undefined") return this.connectWs(ws.url);
    // Without a WebSocket, poll: the RFC's EventSource is used only once the server has
    // it (the Session advertises its URL always, so it is tried and polling is the fallback).
    this.poll();
  }

  private connectWs(url: string): void {
    this.opts.onStatus("connecting");
    const abs = new URL(url, location.href);
    if (abs.protocol === "http:") abs.protocol = "ws:";
    if (abs.protocol === "https:") abs.protocol = "wss:";
    let sock: WebSocket;
    try {
      sock = new WebSocket(abs.toString(), "jmap");
    } catch {
      return this.retry();
    }
    this.ws = sock;
    sock.onopen = () => {
      this.attempt = 0;
      sock.send(JSON.stringify({ "@type": "WebSocketPushEnable", dataTypes: null }));
      this.opts.onStatus("live");
      this.opts.onChange(null);
    };
    sock.onmessage = (e) => {
      try {
        const m = JSON.parse(String(e.data)) as Partial<StateChange>;
        if (m["@type"] === "StateChange" && m.changed) this.opts.onChange(m.changed);
      } catch {
        /* ignore garbage */
      }
    };
    sock.onclose = () => {
      if (this.ws === sock) this.ws = null;
      this.retry();
    };
  }

  private poll(): void {
    const every = this.opts.pollMs ?? 15_000;
    this.opts.onStatus(navigator.onLine === false ? "offline" : "polling");
    this.opts.onChange(null);
    this.timer = setTimeout(() => this.poll(), every);
  }
}
