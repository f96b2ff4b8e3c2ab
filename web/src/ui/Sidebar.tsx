import type { MailApp } from "../state";
import type { SyncInfo } from "../jmap-types";
import { mailboxTree } from "../model";
import { Icon } from "./icons";

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

export function Sidebar({ app }: { app: MailApp }) {
  const tree = mailboxTree(app.folders.mailboxes);
  const accounts = Object.entries(app.session?.accounts ?? {});
  return (
    <nav class="sidebar" aria-label="Mailboxes">
      {accounts.map(([id, acc]) => {
        const st = syncText(app.boot.sync[id]);
        return (
          <div key={id} class="account" data-account={acc.name}>
            <h2 class="account-name">{acc.name}</h2>
            {st.text && (
              <p class={st.error ? "sync error" : "sync"} role={st.error ? "alert" : "status"}>
                {st.text}
              </p>
            )}
            {st.fraction !== null && (
              <progress max={1} value={st.fraction} aria-label="Sync progress" />
            )}
          </div>
        );
      })}
      <button type="button" class="ghost add-account-button" data-action="accounts" onClick={() => app.openAccounts(true)}>
        + Add or manage accounts
      </button>
      <ul role="tree" aria-label="Folders">
        {tree.map(({ mailbox: m, depth }) => {
          const current = app.list.view.mailboxId === m.id && !app.list.view.search;
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
                  void app.list.selectMailbox(m.id);
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
      {app.can("folders") && (
        <button
          type="button"
          class="ghost"
          onClick={() => {
            const name = prompt("Name of the new folder");
            if (name) void app.folders.createFolder(name);
          }}
        >
          + New folder
        </button>
      )}
    </nav>
  );
}
