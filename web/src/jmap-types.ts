// The JMAP objects and method responses the web client reads (RFC 8620, RFC 8621), with
// the properties it asks for. `Methods` names each method's response, so an answer is
// typed by the method that produced it (`Jmap.call`, `Answers.get`) and nothing is cast
// where a response is read.

export type Id = string;
/** A state string (RFC 8620 1.2): opaque, compared for equality only. */
export type State = string;

// --- the Session (RFC 8620 2) -------------------------------------------------------------

/** Tidings' own account capability: the account's sync status (see ARCHITECTURE.md). */
export interface SyncInfo {
  status: "new" | "syncing" | "ok" | "retrying" | "auth_failed";
  error?: string;
  since?: number;
  progress?: { total: number; headers: number; bodies: number };
  /** MB downloaded this UTC day against the daily limit (null: unlimited); `reached`:
   * the background body pass stopped at its share, `note` says so in words. */
  download?: { usedMb: number; limitMb: number | null; reached: boolean; note: string; resumesAt: number };
}

/** RFC 8887 4: the WebSocket capability. */
export interface WebSocketCapability {
  url?: string;
  supportsPush?: boolean;
}

export interface SessionAccount {
  name: string;
  isPersonal: boolean;
  isReadOnly: boolean;
  accountCapabilities: { "urn:tidings:params:sync"?: SyncInfo } & Record<string, unknown>;
}

export interface Session {
  capabilities: { "urn:ietf:params:jmap:websocket"?: WebSocketCapability } & Record<string, unknown>;
  accounts: Record<Id, SessionAccount>;
  primaryAccounts: Record<string, Id>;
  username: string;
  apiUrl: string;
  downloadUrl: string;
  uploadUrl: string;
  eventSourceUrl: string;
  state: State;
}

// --- mail objects (RFC 8621) ---------------------------------------------------------------

/** RFC 8621 4.1.2.3. */
export interface EmailAddress {
  name: string | null;
  email: string;
}

/** RFC 8621 2. */
export interface Mailbox {
  id: Id;
  name: string;
  parentId: Id | null;
  role: string | null;
  sortOrder: number;
  totalEmails: number;
  unreadEmails: number;
  totalThreads: number;
  unreadThreads: number;
}

/** RFC 8621 4: the properties of a list row (`LIST_PROPS`). An Email/get asking for
 * fewer (the thread lookup asks for `threadId` alone) is read for those only. */
export interface Email {
  id: Id;
  threadId: Id;
  mailboxIds: Record<Id, boolean>;
  keywords: Record<string, boolean>;
  from: EmailAddress[] | null;
  to: EmailAddress[] | null;
  subject: string | null;
  preview: string;
  receivedAt: string;
  /** Asked for by the list (Drafts and Sent sort and show by it). */
  sentAt?: string | null;
  hasAttachment: boolean;
  size: number;
}

/** RFC 8621 4.1.4: EmailBodyPart, the properties the reader uses. */
export interface BodyPart {
  partId: string | null;
  blobId: string | null;
  size: number;
  name: string | null;
  type: string;
  charset: string | null;
  disposition: string | null;
  cid: string | null;
}

/** The properties the reader asks for besides the list's (`BODY_PROPS`). */
export interface EmailBody {
  cc: EmailAddress[] | null;
  bcc: EmailAddress[] | null;
  replyTo: EmailAddress[] | null;
  sentAt: string | null;
  messageId: string[] | null;
  inReplyTo: string[] | null;
  references: string[] | null;
  textBody: BodyPart[];
  htmlBody: BodyPart[];
  attachments: BodyPart[];
  bodyValues: Record<string, { value: string; isTruncated: boolean }>;
  blobId: string;
}

/** An Email fetched for reading: a list row's properties and its body's. */
export type FullEmail = Email & EmailBody;

/** Whether an Email/get answer carries what the reader needs (it asked for
 * `BODY_PROPS`; a server that left them out is not read as if it had not). */
export function isFullEmail(e: Email | FullEmail): e is FullEmail {
  return "textBody" in e && Array.isArray(e.textBody) && Array.isArray(e.htmlBody) && Array.isArray(e.attachments) && typeof e.bodyValues === "object" && e.bodyValues !== null;
}

/** RFC 8621 3. */
export interface Thread {
  id: Id;
  emailIds: Id[];
}

/** RFC 8621 5. */
export interface SearchSnippet {
  emailId: Id;
  subject: string | null;
  preview: string | null;
}

/** RFC 8621 6: the properties the composer uses. */
export interface Identity {
  id: Id;
  name: string;
  email: string;
  replyTo?: EmailAddress[] | null;
  bcc?: EmailAddress[] | null;
  textSignature?: string;
  htmlSignature?: string;
  mayDelete?: boolean;
}

/** RFC 8621 7: the properties of an EmailSubmission the client reads. */
export interface EmailSubmission {
  id: Id;
  undoStatus: "pending" | "final" | "canceled";
  sendAt?: string | null;
  deliveryStatus?: Record<string, { smtpReply: string; delivered: string }> | null;
}

// --- errors (RFC 8620 3.6) --------------------------------------------------------------

/** The arguments of an `error` response (RFC 8620 3.6.2). */
export interface MethodErrorArgs {
  type: string;
  description?: string;
}

/** RFC 8620 5.3: why one object of a /set was not created, updated or destroyed. */
export interface SetError {
  type: string;
  description?: string | null;
}

// --- the standard methods (RFC 8620 5) -------------------------------------------------------

/** RFC 8620 5.1. */
export interface GetResponse<T> {
  accountId: Id;
  state: State;
  list: T[];
  notFound?: Id[];
}

/** RFC 8620 5.2. */
export interface ChangesResponse {
  accountId: Id;
  oldState: State;
  newState: State;
  hasMoreChanges: boolean;
  created: Id[];
  updated: Id[];
  destroyed: Id[];
}

/** RFC 8620 5.3; `created` holds the server-set properties (the id at least). */
export interface SetResponse<T extends { id: Id }> {
  accountId: Id;
  oldState?: State | null;
  newState?: State;
  created?: Record<Id, Partial<T> & { id: Id }> | null;
  updated?: Record<Id, Partial<T> | null> | null;
  destroyed?: Id[] | null;
  notCreated?: Record<Id, SetError> | null;
  notUpdated?: Record<Id, SetError> | null;
  notDestroyed?: Record<Id, SetError> | null;
}

/** RFC 8620 5.5. */
export interface QueryResponse {
  accountId: Id;
  queryState: State;
  canCalculateChanges: boolean;
  position: number;
  ids: Id[];
  total?: number;
  limit?: number;
}

/** RFC 8620 5.6. */
export interface QueryChangesResponse {
  accountId: Id;
  oldQueryState: State;
  newQueryState: State;
  total?: number;
  removed: Id[];
  added: { id: Id; index: number }[];
}

/** RFC 8620 6.1: the answer to an upload. */
export interface UploadResponse {
  accountId: Id;
  blobId: Id;
  type: string;
  size: number;
}

/** Each method the client calls, and what it answers. */
export interface Methods {
  "Mailbox/get": GetResponse<Mailbox>;
  "Mailbox/changes": ChangesResponse;
  "Mailbox/set": SetResponse<Mailbox>;
  "Email/get": GetResponse<Email | FullEmail>;
  "Email/changes": ChangesResponse;
  "Email/query": QueryResponse;
  "Email/queryChanges": QueryChangesResponse;
  "Email/set": SetResponse<Email>;
  "Thread/get": GetResponse<Thread>;
  "SearchSnippet/get": GetResponse<SearchSnippet>;
  "Identity/get": GetResponse<Identity>;
  "Identity/set": SetResponse<Identity>;
  "EmailSubmission/get": GetResponse<EmailSubmission>;
  "EmailSubmission/set": SetResponse<EmailSubmission>;
  "PushSubscription/set": SetResponse<{ id: Id }>;
}

export type Method = keyof Methods;

// --- push (RFC 8620 7.1) ---------------------------------------------------------------

/** `{accountId: {TypeName: state}}`: the `changed` of a StateChange. */
export type TypeStates = Record<Id, Record<string, State>>;

/** RFC 8620 7.1, as sent on the WebSocket (RFC 8887 4.3.5). */
export interface StateChange {
  "@type": "StateChange";
  changed: TypeStates;
}
