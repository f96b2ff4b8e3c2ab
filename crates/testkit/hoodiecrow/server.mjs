// A Gmail-shaped IMAP server for the tests: hoodiecrow-imap (npm) with its X-GM-EXT-1
// plugin, a Gmail mailbox tree, and the side effects Gmail has and hoodiecrow lacks.
//
// Started by testkit::gmail::Server. Prints one JSON line, {"imap": port, "control":
// port}, then serves IMAP on the first port and a small HTTP control API on the second
// (both on 127.0.0.1). Exits when stdin closes (the harness died or dropped us).
//
// Gmail's model (developers.google.com/gmail/imap/imap-extensions, and "IMAP for Gmail"):
// a message is one object with labels; every label is a folder holding a copy of it, and
// "[Gmail]/All Mail" (SPECIAL-USE \All) holds every message not in Trash or Spam. The
// folders and X-GM-LABELS always agree: adding a label puts the message into that folder,
// removing it (or expunging the copy in that folder) takes it out. hoodiecrow stores each
// folder's messages separately and its X-GM-LABELS have no side effects, so this script
// keeps one record per message (labels, flags, thread) and makes the folders follow it.
// Label names as Gmail sends them: \Inbox, \Sent, \Draft, \Important, \Starred for the
// system labels, the folder name for user labels.
//
// hoodiecrow 2.1.0 implements X-GM-MSGID and X-GM-LABELS but neither advertises
// X-GM-EXT-1 nor has X-GM-THRID: both are added here (the thread id is the test's, as
// Gmail decides threads itself).
//
// Options: --user U --pass P; --no-all-mail (no folder has \All: a server that lies about
// X-GM-EXT-1); --bad-msgid (X-GM-MSGID answers a non-number); --no-x-gm-ext (the same
// server, the extension not advertised); --labels a,b (user label folders to create).

import { createRequire } from "node:module";
import http from "node:http";

const require = createRequire(import.meta.url);
const hoodiecrow = require("hoodiecrow-imap");
const builtinFetch = require("hoodiecrow-imap/lib/commands/handlers/fetch.js");

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : dflt;
};
const flag = (name) => args.includes(name);
const user = opt("--user", "testuser");
const pass = opt("--pass", "testpass");
const noAllMail = flag("--no-all-mail");
const badMsgid = flag("--bad-msgid");
// The same server without X-GM-EXT-1 advertised: what a client that does not know Gmail
// sees (the peer of the wire-cost measurement).
const hideExtension = flag("--no-x-gm-ext");
const userLabels = opt("--labels", "Work,Travel")
  .split(",")
  .filter((l) => l.length);

// Folder path -> the label it stands for. All Mail, Trash and Spam are not labels.
const SYSTEM = {
  INBOX: "\\Inbox",
  "[Gmail]/Sent Mail": "\\Sent",
  "[Gmail]/Drafts": "\\Draft",
  "[Gmail]/Important": "\\Important",
  "[Gmail]/Starred": "\\Starred",
};
const ALL = "[Gmail]/All Mail";
const TRASH = "[Gmail]/Trash";
const SPAM = "[Gmail]/Spam";

const gmailFolders = {
  "All Mail": noAllMail ? {} : { "special-use": "\\All" },
  "Sent Mail": { "special-use": "\\Sent" },
  Drafts: { "special-use": "\\Drafts" },
  Important: { "special-use": "\\Important" },
  Starred: { "special-use": "\\Flagged" },
  Trash: { "special-use": "\\Trash" },
  Spam: { "special-use": "\\Junk" },
};
const top = { "[Gmail]": { flags: ["\\Noselect"], folders: gmailFolders } };
for (const l of userLabels) top[l] = {};

const server = hoodiecrow({
  plugins: ["ID", "ENABLE", "CONDSTORE", "SPECIAL-USE", "MOVE", "UIDPLUS", "UNSELECT",
    "IDLE", "LITERALPLUS", "X-GM-EXT-1"],
  users: { [user]: { password: pass } },
  storage: {
    INBOX: { messages: [] },
    "": { separator: "/", folders: top },
  },
});
if (hideExtension) delete server.capabilities["X-GM-EXT-1"];
else server.registerCapability("X-GM-EXT-1");

// One record per Gmail message, by X-GM-MSGID (a decimal string: 64-bit).
const messages = new Map();
// Far above hoodiecrow's own counter (used for APPENDed messages), so the two never meet.
let nextMsgid = 1600000000000000000n;
// FETCHes of each message's header and whole body, for the tests' byte counts.
const counters = new Map();

function folderOf(label) {
  for (const [path, l] of Object.entries(SYSTEM)) {
    if (l === label) return path;
  }
  return userLabels.includes(label) ? label : null;
}
function labelOf(path) {
  if (path.toUpperCase() === "INBOX") return "\\Inbox";
  if (SYSTEM[path]) return SYSTEM[path];
  return userLabels.includes(path) ? path : null;
}

function mailbox(path) {
  return server.getMailbox(path);
}

function bumpModseq(mb, msg) {
  mb.HIGHESTMODSEQ = (mb.HIGHESTMODSEQ || 0) + 1;
  msg.MODSEQ = mb.HIGHESTMODSEQ;
}

// The messages hoodiecrow holds for a record, as [mailbox, message] pairs.
function copiesOf(msgid) {
  const out = [];
  for (const path of Object.keys(server.folderCache)) {
    const mb = server.folderCache[path];
    for (const m of mb.messages || []) {
      if (m["X-GM-MSGID"] === msgid) out.push([mb, m]);
    }
  }
  return out;
}

function addCopy(path, rec) {
  const mb = mailbox(path);
  if (!mb) return null;
  const message = {
    raw: rec.raw,
    flags: [...rec.flags],
    internaldate: rec.internaldate,
    "X-GM-MSGID": rec.msgid,
    "X-GM-THRID": rec.thrid,
    "X-GM-LABELS": [...rec.labels],
  };
  mb.messages.push(message);
  server.processMessage(message, mb);
  server.notify({ tag: "*", attributes: [mb.messages.length, { type: "ATOM", value: "EXISTS" }] }, mb);
  return message;
}

// Like hoodiecrow's expungeSpecificMessages, without a connection: every session that has
// the folder selected is told.
function removeCopies(mb, doomed, connection) {
  if (connection && connection.selectedMailbox === mb) {
    connection.expungeSpecificMessages(mb, doomed, false, false);
    return;
  }
  const before = [].concat(mb.messages);
  let removed = 0;
  for (let i = 0; i < mb.messages.length; i++) {
    if (doomed.includes(mb.messages[i])) {
      mb.messages[i].ghost = true;
      mb.messages.splice(i, 1);
      server.notify({ tag: "*", attributes: [i + 1, { type: "ATOM", value: "EXPUNGE" }] }, mb);
      i--;
      removed++;
    }
  }
  if (removed) {
    server.notify({ tag: "*", attributes: [mb.messages.length, { type: "ATOM", value: "EXISTS" }],
      mailboxCopy: before }, mb);
  }
}

// Makes the folders follow the record: a copy in All Mail (unless in Trash or Spam), one
// in each label's folder, none elsewhere; every copy with the record's flags and labels.
// \Starred follows \Flagged, as in Gmail. Copies whose labels or flags changed get a new
// MODSEQ (Gmail: a label change is a CONDSTORE change in All Mail).
function reconcile(rec, connection) {
  const starred = rec.flags.includes("\\Flagged");
  rec.labels = rec.labels.filter((l) => l !== "\\Starred");
  if (starred) rec.labels.push("\\Starred");
  const want = new Set();
  if (rec.place === "trash") want.add(TRASH);
  else if (rec.place === "spam") want.add(SPAM);
  else {
    if (mailbox(ALL)) want.add(ALL);
    for (const l of rec.labels) {
      const f = folderOf(l);
      if (f) want.add(f);
    }
  }
  const have = new Map();
  for (const [mb, m] of copiesOf(rec.msgid)) {
    if (!want.has(mb.path) || have.has(mb.path)) {
      removeCopies(mb, [m], connection);
      continue;
    }
    have.set(mb.path, m);
    const labels = JSON.stringify(m["X-GM-LABELS"]);
    const flags = JSON.stringify(m.flags);
    m["X-GM-LABELS"] = [...rec.labels];
    m.flags = [...rec.flags];
    if (labels !== JSON.stringify(m["X-GM-LABELS"]) || flags !== JSON.stringify(m.flags)) {
      bumpModseq(mb, m);
    }
  }
  for (const path of want) {
    if (!have.has(path)) addCopy(path, rec);
  }
}

// hoodiecrow's plugin gives a new message the label of the folder it lands in (\All,
// \Trash... too, which Gmail never shows) and an X-GM-MSGID when it has none. A message
// this script made keeps its record's labels; one a client APPENDed becomes a record
// (with the folder's label, as Gmail does) and gets its other copies once the APPEND
// is done.
server.messageHandlers.push((_server, message, mb) => {
  const known = messages.get(message["X-GM-MSGID"]);
  if (known) {
    message["X-GM-LABELS"] = [...known.labels];
    return;
  }
  const label = labelOf(mb.path);
  const rec = {
    msgid: message["X-GM-MSGID"],
    thrid: message["X-GM-MSGID"],
    raw: message.raw,
    flags: [...message.flags],
    labels: label ? [label] : [],
    place: mb.path === TRASH ? "trash" : mb.path === SPAM ? "spam" : "mail",
    internaldate: message.internaldate,
  };
  message["X-GM-THRID"] = rec.thrid;
  message["X-GM-LABELS"] = [...rec.labels];
  messages.set(rec.msgid, rec);
  setImmediate(() => reconcile(rec, null));
});

server.fetchHandlers["X-GM-THRID"] = (_c, message) => ({ type: "ATOM", value: message["X-GM-THRID"] || "0" });
if (badMsgid) {
  server.fetchHandlers["X-GM-MSGID"] = () => ({ type: "ATOM", value: "notanumber" });
}

function count(message, kind) {
  const id = message["X-GM-MSGID"] || "?";
  const c = counters.get(id) || { header: 0, body: 0 };
  c[kind]++;
  counters.set(id, c);
}
for (const key of ["BODY", "BODY.PEEK"]) {
  server.fetchHandlers[key] = (c, message, query) => {
    const section = query.section || [];
    if (!section.length) count(message, "body");
    else if (section[0] && String(section[0].value).toUpperCase().startsWith("HEADER")) count(message, "header");
    return builtinFetch[key](c, message, query);
  };
}
server.fetchHandlers.RFC822 = (c, m, q) => (count(m, "body"), builtinFetch.RFC822(c, m, q));
server.fetchHandlers["RFC822.HEADER"] = (c, m, q) => (count(m, "header"), builtinFetch["RFC822.HEADER"](c, m, q));

// A STORE of labels or flags on any copy changes the message: every folder follows.
server.outputHandlers.push((connection, _response, description, _parsed, _data, affected) => {
  if (description !== "STORE COMPLETE" && description !== "UID STORE COMPLETE") return;
  for (const item of affected || []) {
    const m = Array.isArray(item) ? item[1] : item;
    const rec = messages.get(m["X-GM-MSGID"]);
    if (!rec) continue;
    rec.labels = [...m["X-GM-LABELS"]];
    rec.flags = [...m.flags].filter((f) => f !== "\\Recent");
    // Expunging a label folder's copy removes that label; \Deleted itself stays local.
    if (rec.flags.includes("\\Deleted")) rec.flags = rec.flags.filter((f) => f !== "\\Deleted");
    reconcile(rec, connection);
  }
});

// Gmail's MOVE: to Trash or Spam the message leaves All Mail and every label; to a label
// folder it gains that label and loses the source folder's.
function move(uidMode, connection, parsed, data, callback) {
  const fail = (text) => {
    connection.send({ tag: parsed.tag, command: "NO", attributes: [{ type: "TEXT", value: text }] },
      "MOVE FAIL", parsed, data);
    callback();
  };
  const attrs = parsed.attributes || [];
  if (connection.state !== "Selected" || attrs.length !== 2) return fail("MOVE expects a set and a mailbox");
  const target = mailbox(String(attrs[1].value));
  if (!target) return fail("[TRYCREATE] Target mailbox does not exist");
  const source = connection.selectedMailbox;
  const range = server.getMessageRange(source, attrs[0].value, uidMode);
  const src = [];
  const dst = [];
  for (const [, m] of range) {
    const rec = messages.get(m["X-GM-MSGID"]);
    if (!rec) continue;
    src.push(m.uid);
    if (target.path === TRASH) rec.place = "trash";
    else if (target.path === SPAM) rec.place = "spam";
    else {
      rec.place = "mail";
      const add = labelOf(target.path);
      const drop = labelOf(source.path);
      if (drop) rec.labels = rec.labels.filter((l) => l !== drop);
      if (add && !rec.labels.includes(add)) rec.labels.push(add);
    }
    // The source copy goes first, with its EXPUNGE to this session (RFC 6851 3.3).
    removeCopies(source, [m], connection);
    reconcile(rec, connection);
    const landed = target.messages.find((x) => x["X-GM-MSGID"] === rec.msgid);
    if (landed) dst.push(landed.uid);
  }
  const text = src.length
    ? `[COPYUID ${target.uidvalidity} ${src.join(",")} ${dst.join(",")}] Done`
    : "Done";
  connection.send({ tag: parsed.tag, command: "OK", attributes: [{ type: "TEXT", value: text }] },
    "MOVE OK", parsed, data);
  callback();
}
server.setCommandHandler("MOVE", move.bind(null, false));
server.setCommandHandler("UID MOVE", move.bind(null, true));

function addMessage(body) {
  nextMsgid += 1n;
  const msgid = String(nextMsgid);
  const rec = {
    msgid,
    thrid: body.thrid ? String(body.thrid) : msgid,
    raw: body.raw,
    flags: body.flags || [],
    labels: body.labels || [],
    place: body.place || "mail",
    internaldate: body.internaldate ? new Date(body.internaldate * 1000) : new Date(),
  };
  messages.set(msgid, rec);
  reconcile(rec, null);
  return { msgid };
}

function describe(msgid) {
  const rec = messages.get(msgid);
  if (!rec) return null;
  return {
    msgid,
    labels: rec.labels,
    flags: rec.flags,
    place: rec.place,
    folders: copiesOf(msgid).map(([mb]) => mb.path).sort(),
    counters: counters.get(msgid) || { header: 0, body: 0 },
  };
}

const control = http.createServer((req, res) => {
  let body = "";
  req.setEncoding("utf8");
  req.on("data", (d) => { body += d; });
  req.on("end", () => {
    let status = 200;
    let out;
    try {
      const input = body ? JSON.parse(body) : {};
      const url = new URL(req.url, "http://127.0.0.1");
      switch (url.pathname) {
        case "/add":
          out = addMessage(input);
          break;
        case "/labels": {
          // Another client changes labels (or flags): as Gmail, every folder follows.
          const rec = messages.get(String(input.msgid));
          if (!rec) { status = 404; out = { error: "no such message" }; break; }
          for (const l of input.add || []) if (!rec.labels.includes(l)) rec.labels.push(l);
          rec.labels = rec.labels.filter((l) => !(input.remove || []).includes(l));
          reconcile(rec, null);
          out = describe(rec.msgid);
          break;
        }
        case "/message":
          out = describe(String(input.msgid));
          if (!out) { status = 404; out = { error: "no such message" }; }
          break;
        case "/messages":
          out = [...messages.keys()].map(describe);
          break;
        case "/counters": {
          // FETCHes of headers and bodies, all messages together.
          let header = 0;
          let body = 0;
          for (const c of counters.values()) { header += c.header; body += c.body; }
          out = { header, body };
          break;
        }
        default:
          status = 404;
          out = { error: "unknown path" };
      }
    } catch (e) {
      status = 400;
      out = { error: String(e && e.message || e) };
    }
    const text = JSON.stringify(out);
    res.writeHead(status, { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(text) });
    res.end(text);
  });
});

server.server.listen(0, "127.0.0.1", () => {
  control.listen(0, "127.0.0.1", () => {
    process.stdout.write(JSON.stringify({ imap: server.server.address().port, control: control.address().port }) + "\n");
  });
});

process.stdin.on("end", () => process.exit(0));
process.stdin.on("close", () => process.exit(0));
process.stdin.resume();
