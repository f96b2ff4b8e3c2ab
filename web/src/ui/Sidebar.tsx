import type { MailApp } from "../state";
import type { SyncInfo } from "../jmap-types";
import { mailboxTree } from "../model";
import { Icon } from "./icons";
import { UNIFIED } from "../app/list";

const ROLE_ICONS = new Set(["inbox", "drafts", "sent", "archive", "junk", "trash"]);

export function syncText(s: SyncInfo | undefined): { text: string; error: boolean; fraction: number | null } {
  if (!s) return { text: "", error: false, fraction: null };
  const p = s.progress;
  const fraction = p && p.total > 0 ? Math.min(1, (p.headers + p.bodies) / (2 * p.total)) : null;
  switch (s.status) {
    case "new":
      return { text: "Connecting to the mail server for the first time…", error: false, fraction };
    case "syncing":
      return { text: p && p.total ? `Syncing: ${p.headers} of ${p.total} messages` : "Syncing…", error: false, fraction };
    case "retrying":
      return { text: `The mail server cannot be reached; retrying. (${s.error ?? ""})`, error: true, fraction: null };
    case "auth_failed":
      return { text: "The mail server refused the password. Update it under Add or manage accounts.", error: true, fraction: null };
    default:
      // In step, but the day's download budget held the background bodies back: say so,
      // since messages not stored yet open more slowly (and fail past the limit).
      if (s.download?.reached) return { text: s.download.note, error: false, fraction: null };
      return { text: "", error: false, fraction: null };
  }
}

/** A colour per account, the same in the sidebar and on the rows of a unified view. */
export function accountColor(app: MailApp, id: string): string {
  const i = Math.max(0, app.accountIds().indexOf(id));
  return `hsl(${(i * 137 + 210) % 360} 55% 45%)`;
}

/** The account's colour as a dot (inline: the layout's stylesheet is not this file's). */
export function dotStyle(background: string) {
  return { background, display: "inline-block", width: "0.6em", height: "0.6em", borderRadius: "50%", marginInlineEnd: "0.4em" };
}

export function Sidebar({ app }: { app: MailApp }) {
  const accounts = app.accountIds();
  const unified = app.list.view.unified;
  return (
    <nav class="sidebar" aria-label="Mailboxes">
      {accounts.length > 1 && (
        <ul role="tree" aria-label="All accounts" class="unified">
          {UNIFIED.map((u) => {
            const current = unified === u.kind && !app.list.view.search;
            const unread = u.kind === "inbox" ? accounts.reduce((n, a) => n + (app.folders.byRole("inbox", a)?.unreadEmails ?? 0), 0) : 0;
            return (
              <li key={u.kind} role="none">
                <a
                  role="treeitem"
                  aria-level={1}
                  aria-selected={current}
                  aria-current={current ? "page" : undefined}
                  class={`mailbox ${current ? "current" : ""} ${unread ? "has-unread" : ""}`}
                  href={`#/all/${u.kind}`}
                  data-unified={u.kind}
                  onClick={(e) => {
                    e.preventDefault();
                    void app.list.selectUnified(u.kind);
                  }}
                >
                  <Icon name={u.kind === "flagged" ? "flag" : u.kind} />
                  <span class="mbname">{u.name}</span>
                  {unread > 0 && (
                    <span class="count" aria-label={`${unread} unread`}>
                      {unread}
                    </span>
                  )}
                </a>
              </li>
            );
          })}
        </ul>
      )}
      {accounts.map((id) => (
        <Account key={id} app={app} id={id} />
      ))}
      <button type="button" class="ghost add-account-button" data-action="accounts" onClick={() => app.openAccounts(true)}>
        + Add or manage accounts
      </button>
      {app.can("folders") && (
        <button
          type="button"
          class="ghost"
          onClick={() => {
            const name = prompt(`Name of the new folder in ${app.accountName(app.accountId)}`);
            if (name) void app.folders.createFolder(name);
          }}
        >
          + New folder
        </button>
      )}
    </nav>
  );
}

/** One account: its name, its sync status, and its folders below it. */
function Account({ app, id }: { app: MailApp; id: string }) {
  const acc = app.session?.accounts[id];
  const st = syncText(app.boot.sync[id]);
  const tree = mailboxTree(app.folders.of(id));
  const name = acc?.name ?? id;
  return (
    <div class="account" data-account={name} data-account-id={id}>
      <h2 class="account-name">
        {app.accountIds().length > 1 && <span class="account-dot" style={dotStyle(accountColor(app, id))} aria-hidden="true" />}
        {name}
      </h2>
      {st.text && (
        <p class={st.error ? "sync error" : "sync"} role={st.error ? "alert" : "status"}>
          {st.text}
        </p>
      )}
      {st.fraction !== null && <progress max={1} value={st.fraction} aria-label="Sync progress" />}
      <ul role="tree" aria-label={`Folders of ${name}`}>
        {tree.map(({ mailbox: m, depth }) => {
          const current = app.list.view.mailboxId === m.id && !app.list.view.search && !app.list.view.unified;
          return (
            <li key={m.id} role="none">
              <a
                role="treeitem"
                aria-level={depth + 1}
                aria-selected={current}
                aria-current={current ? "page" : undefined}
                class={`mailbox ${current ? "current" : ""} ${m.unreadEmails ? "has-unread" : ""}`}
                style={{ paddingInlineStart: `${0.75 + depth * 1}rem` }}
                href={`#/mailbox/${m.id}`}
                data-mailbox={m.id}
                data-role={m.role ?? ""}
                onClick={(e) => {
                  e.preventDefault();
                  void app.list.selectMailbox(m.id, id);
                }}
                onDragOver={(e) => {
                  if (app.can("move")) {
                    e.preventDefault();
                    (e.currentTarget as HTMLElement).classList.add("drop");
                  }
                }}
                onDragLeave={(e) => (e.currentTarget as HTMLElement).classList.remove("drop")}
                onDrop={(e) => {
                  e.preventDefault();
                  (e.currentTarget as HTMLElement).classList.remove("drop");
                  const ids = (e.dataTransfer?.getData("application/x-tidings-emails") ?? "").split(",").filter(Boolean);
                  if (ids.length) void app.actions.move(ids, m.id);
                }}
              >
                <Icon name={ROLE_ICONS.has(m.role ?? "") ? (m.role as string) : "folder"} />
                <span class="mbname">{m.name}</span>
                {m.unreadEmails > 0 && (
                  <span class="count" aria-label={`${m.unreadEmails} unread`}>
                    {m.unreadEmails}
                  </span>
                )}
              </a>
            </li>
          );
        })}
      </ul>
    </div>
  );
}
