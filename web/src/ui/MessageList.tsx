import { useEffect, useLayoutEffect, useRef, useState } from "preact/hooks";
import { PAGE, type MailApp } from "../state";
import type { Email, EmailAddress } from "../model";
import { Highlighted } from "./text";
import { Icon } from "./icons";
import { rowHeight } from "../app/prefs";
import { UNIFIED } from "../app/list";
import { accountColor, dotStyle } from "./Sidebar";

const OVERSCAN = 10;

export function who(a: EmailAddress[] | null | undefined): string {
  const x = a?.[0];
  if (!x) return "(nobody)";
  return x.name || x.email;
}

// One formatter each, made once: `toLocaleDateString` with options builds a new one per
// call, which is most of a row's render time.
const TIME = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
const DAY = new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric" });
const DATE = new Intl.DateTimeFormat(undefined, { year: "numeric", month: "short", day: "numeric" });

export function shortDate(iso: string, now = new Date()): string {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return "";
  if (d.toDateString() === now.toDateString()) return TIME.format(d);
  if (d.getFullYear() === now.getFullYear()) return DAY.format(d);
  return DATE.format(d);
}

/** The message list, virtualised: only the rows on screen (plus a few) exist in the DOM;
 * the windows of ids and Emails they need are fetched as the user scrolls. */
export function MessageList({ app }: { app: MailApp }) {
  const scroller = useRef<HTMLDivElement>(null);
  const [top, setTop] = useState(0);
  const [height, setHeight] = useState(800);
  const anchor = useRef<number | null>(null);
  const list = app.list.model;
  const ROW = rowHeight();

  useLayoutEffect(() => {
    const el = scroller.current;
    if (!el) return;
    const ro = new ResizeObserver(() => setHeight(el.clientHeight));
    ro.observe(el);
    setHeight(el.clientHeight);
    return () => ro.disconnect();
  }, []);

  // A new list starts at the top.
  useEffect(() => {
    if (scroller.current) scroller.current.scrollTop = 0;
    setTop(0);
  }, [app.list.view]);

  const first = Math.max(0, Math.floor(top / ROW) - OVERSCAN);
  const last = Math.min(list.total, Math.ceil((top + height) / ROW) + OVERSCAN);

  // Fetch what the visible rows need: at most every 50 ms while scrolling (throttled, so a
  // long fling still fills the rows it passes over), and once more where it stops.
  const want = useRef({ first, last });
  want.current = { first, last };
  const timer = useRef<ReturnType<typeof setTimeout> | null>(null);
  useEffect(() => {
    if (timer.current) return;
    timer.current = setTimeout(() => {
      timer.current = null;
      const w = want.current;
      void app.list.ensureRange(w.first - PAGE / 2, w.last + PAGE / 2);
    }, 50);
  }, [first, last, list.queryState, list.total]);
  useEffect(() => () => {
    if (timer.current) clearTimeout(timer.current);
  }, []);

  // Keep the cursor row visible when it moves by keyboard.
  useEffect(() => {
    const el = scroller.current;
    if (!el || anchor.current === app.list.cursor) return;
    anchor.current = app.list.cursor;
    const y = app.list.cursor * ROW;
    if (y < el.scrollTop) el.scrollTop = y;
    else if (y + ROW > el.scrollTop + el.clientHeight) el.scrollTop = y + ROW - el.clientHeight;
  }, [app.list.cursor]);

  const rows = [];
  for (let i = first; i < last; i++) {
    const id = list.ids[i];
    const e = id ? app.list.cache.get(id) : undefined;
    rows.push(<Row key={id ?? `p${i}`} app={app} index={i} email={e} row={ROW} />);
  }
  const unified = UNIFIED.find((u) => u.kind === app.list.view.unified);
  const title = app.list.view.search ? `Search: ${app.list.view.search}` : unified ? unified.name : app.folders.mailbox(app.list.view.mailboxId)?.name ?? "";
  return (
    <section class="list" aria-label="Messages">
      <div class="list-head">
        <h1 class="list-title">{title}</h1>
        <span class="list-total" aria-live="polite">
          {app.list.loading ? "…" : `${list.total.toLocaleString()} ${app.list.view.collapseThreads && !unified ? "conversations" : "messages"}`}
        </span>
        {/* A unified view lists messages: conversations are one account's. */}
        {!unified && (
          <label class="threads-toggle">
            <input type="checkbox" checked={app.list.view.collapseThreads} onChange={(e) => void app.list.setCollapse((e.currentTarget as HTMLInputElement).checked)} />
            Conversations
          </label>
        )}
        {app.can("folders") && !app.list.view.search && app.folders.mailbox(app.list.view.mailboxId) && !app.folders.mailbox(app.list.view.mailboxId)?.role && (
          <span class="folder-actions">
            <button
              type="button"
              class="ghost"
              onClick={() => {
                const m = app.folders.mailbox(app.list.view.mailboxId);
                const name = m && prompt("New name of the folder", m.name);
                if (m && name && name !== m.name) void app.folders.renameFolder(m.id, name);
              }}
            >
              Rename
            </button>
            <button
              type="button"
              class="ghost"
              onClick={() => {
                const m = app.folders.mailbox(app.list.view.mailboxId);
                if (m && confirm(`Delete the folder ${m.name}?`)) void app.folders.deleteFolder(m.id);
              }}
            >
              Delete folder
            </button>
          </span>
        )}
        {app.list.selected.size > 0 && <Bulk app={app} />}
      </div>
      {app.list.searchProblems.length > 0 && (
        <p class="search-problems" role="alert">
          Not understood: {app.list.searchProblems.join(", ")}
        </p>
      )}
      <div
        ref={scroller}
        class="scroller"
        role="grid"
        aria-rowcount={list.total}
        aria-label="Message list"
        aria-activedescendant={list.ids[app.list.cursor] ? `row-${app.list.cursor}` : undefined}
        tabIndex={0}
        onScroll={(e) => setTop((e.currentTarget as HTMLDivElement).scrollTop)}
      >
        <div class="spacer" style={{ height: `${list.total * ROW}px` }}>
          {rows}
        </div>
        {!app.list.loading && list.total === 0 && <p class="empty">No messages here.</p>}
      </div>
    </section>
  );
}

function Bulk({ app }: { app: MailApp }) {
  const ids = [...app.list.selected];
  return (
    <div class="bulk" role="toolbar" aria-label="Selected messages">
      <span>{ids.length} selected</span>
      {app.can("read") && (
        <button type="button" onClick={() => void app.actions.toggle("$seen", ids)}>
          Read/unread
        </button>
      )}
      {app.can("flag") && (
        <button type="button" onClick={() => void app.actions.toggle("$flagged", ids)}>
          Flag
        </button>
      )}
      {app.can("move") && (
        <button type="button" onClick={() => void app.actions.archive(ids)}>
          Archive
        </button>
      )}
      {app.can("delete") && (
        <button type="button" onClick={() => void app.actions.remove(ids)}>
          Delete
        </button>
      )}
      <button
        type="button"
        class="ghost"
        onClick={() => {
          app.list.selected.clear();
          app.emit();
        }}
      >
        Clear
      </button>
    </div>
  );
}

let lastClicked = -1;

function Row({ app, index, email, row }: { app: MailApp; index: number; email: Email | undefined; row: number }) {
  const style = { transform: `translateY(${index * row}px)` };
  if (!email)
    return (
      <div class="row placeholder" role="row" aria-rowindex={index + 1} style={style}>
        <span class="ph" />
      </div>
    );
  const unread = !email.keywords.$seen;
  const flagged = !!email.keywords.$flagged;
  const selected = app.list.selected.has(email.id);
  const isOpen = app.reader.open?.emailId === email.id || (app.reader.open && app.reader.open.threadId === email.threadId);
  const count = app.list.view.collapseThreads ? app.list.threadSizes.get(email.threadId) ?? 1 : 1;
  const acc = app.list.account(email.id);
  const unified = app.list.view.unified;
  const role = app.folders.mailbox(app.list.view.mailboxId, acc)?.role;
  // Drafts and Sent are about whom they are to.
  const sent = unified === "sent" || unified === "drafts" || role === "sent" || role === "drafts";
  const draft = !!email.keywords.$draft && (unified === "drafts" || role === "drafts" || !!app.folders.mailboxes.find((m) => m.role === "drafts" && email.mailboxIds[m.id]));
  const snippet = app.list.snippets.get(email.id);
  // Where the message is: its account in a unified view, its folders in search results.
  const where = unified
    ? app.accountName(acc)
    : app.list.view.search
      ? [app.accountIds().length > 1 ? app.accountName(acc) : "", Object.keys(email.mailboxIds).map((m) => app.folders.mailbox(m, acc)?.name).filter(Boolean).join(", ")]
          .filter(Boolean)
          .join(" · ")
      : "";
  const onClick = (e: MouseEvent) => {
    if (e.shiftKey && lastClicked >= 0) {
      const [a, b] = [Math.min(lastClicked, index), Math.max(lastClicked, index)];
      for (let i = a; i <= b; i++) {
        const id = app.list.model.ids[i];
        if (id) app.list.selected.add(id);
      }
      app.emit();
      return;
    }
    if (e.ctrlKey || e.metaKey) {
      if (selected) app.list.selected.delete(email.id);
      else app.list.selected.add(email.id);
      lastClicked = index;
      app.emit();
      return;
    }
    lastClicked = index;
    app.list.cursor = index;
    // A draft opens where it is written.
    if (draft && app.can("draft")) void app.composer.openDraft(email.id);
    else void app.reader.openThread(email.id);
  };
  return (
    <div
      class={`row ${unread ? "unread" : ""} ${selected ? "selected" : ""} ${isOpen ? "open" : ""} ${app.list.cursor === index ? "cursor" : ""}`}
      role="row"
      id={`row-${index}`}
      aria-rowindex={index + 1}
      aria-selected={selected}
      data-email={email.id}
      style={style}
      draggable={app.can("move")}
      onDragStart={(e) => {
        const ids = selected ? [...app.list.selected] : [email.id];
        e.dataTransfer?.setData("application/x-tidings-emails", ids.join(","));
      }}
      onClick={onClick}
    >
      {/* A label: the whole cell (44 px on a phone) toggles the box, without opening the row. */}
      <label role="gridcell" class="sel" onClick={(e) => e.stopPropagation()}>
        <input
          type="checkbox"
          aria-label={`Select message from ${who(email.from)}: ${email.subject || "(no subject)"}`}
          tabIndex={-1}
          checked={selected}
          onClick={(e) => e.stopPropagation()}
          onChange={() => {
            if (selected) app.list.selected.delete(email.id);
            else app.list.selected.add(email.id);
            lastClicked = index;
            app.emit();
          }}
        />
      </label>
      <span role="gridcell" class="from">
        {unread && <span class="dot" aria-label="Unread" />}
        {sent ? `To: ${who(email.to)}` : who(email.from)}
        {count > 1 && <span class="tcount">{count}</span>}
      </span>
      <span role="gridcell" class="subject-line">
        {where && (
          <span class="where" data-where={where} style={{ fontSize: "0.75em", marginInlineEnd: "0.5em", opacity: 0.85 }}>
            {unified && <span style={dotStyle(accountColor(app, acc))} aria-hidden="true" />}
            {where}
          </span>
        )}
        <span class="subject">
          {snippet?.subject ? <Highlighted html={snippet.subject} /> : email.subject || "(no subject)"}
        </span>
        <span class="preview">{snippet?.preview ? <Highlighted html={snippet.preview} /> : email.preview}</span>
      </span>
      <span role="gridcell" class="marks">
        {email.hasAttachment && (
          <span class="clip" title="Has attachment">
            <Icon name="clip" label="Has attachment" />
          </span>
        )}
        {app.can("flag") ? (
          <button
            type="button"
            class={`flag ${flagged ? "on" : ""}`}
            aria-label={flagged ? "Unflag" : "Flag"}
            aria-pressed={flagged}
            tabIndex={-1}
            onClick={(e) => {
              e.stopPropagation();
              void app.actions.setKeyword([email.id], "$flagged", !flagged);
            }}
          >
            <Icon name="flag" />
          </button>
        ) : (
          flagged && (
            <span class="flag on">
              <Icon name="flag" label="Flagged" />
            </span>
          )
        )}
        <time dateTime={sent && email.sentAt ? email.sentAt : email.receivedAt}>{shortDate(sent && email.sentAt ? email.sentAt : email.receivedAt)}</time>
      </span>
    </div>
  );
}
