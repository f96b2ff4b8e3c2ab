//! `tidings migrate --to postgres://...`: a data dir synced by `tidings serve` from the
//! private Dovecot, changed by its user through JMAP, copied into a private PostgreSQL.
//! Afterwards the PostgreSQL store holds what the SQLite store holds (every id, state,
//! counter, copy, thread link, the change log in its order, the write-back queue), a
//! client's changes from its old state are exactly what it changed, and new objects get
//! new ids and a higher state. A copy into a database that is not empty, or of a store a
//! server still has open, is refused and changes nothing; one cut half-way leaves nothing.

use anyhow::{Context, Result, bail};
use mail_types::{AccountId, EmailId, ModSeq, State, ThreadId, Uid};
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use store::prelude::*;
use store::{
    ChangePosition, EmailQuery, MailboxChanges, NewCopy, ObjectType, PgStore, SqliteStore,
};
use testkit::{Dovecot, DovecotOptions, SeedMessage, corpus};

const USER: &str = "alice@example.org";
const PASS: &str = "imap-pw";
const BASIC: &str = "Basic YWxpY2U6cHc="; // alice:pw
/// Messages synced: a few hundred keeps the test fast (BENCHMARKS.md moves 10,000).
const MESSAGES: usize = 300;

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// One JMAP request over HTTP/1.1; returns the methodResponses.
fn jmap(port: u16, calls: Value) -> Result<Value> {
    let body = json!({
        "using": ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail"],
        "methodCalls": calls,
    })
    .to_string();
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(20)))?;
    write!(
        s,
        "POST /jmap/api HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {BASIC}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    let split = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("header end")?;
    let head = String::from_utf8_lossy(&out[..split]);
    if !head.starts_with("HTTP/1.1 200") {
        bail!("{head}");
    }
    let v: Value = serde_json::from_slice(&out[split + 4..])?;
    Ok(v["methodResponses"].clone())
}

/// A data dir with its config: alice's account on the private Dovecot.
struct DataDir {
    dir: tempfile::TempDir,
    port: u16,
}

impl DataDir {
    fn new(dovecot: &Dovecot) -> Result<DataDir> {
        let dir = tempfile::tempdir()?;
        let port = free_port()?;
        std::fs::write(
            dir.path().join("tidings.toml"),
            format!(
                "listen = \"127.0.0.1:{port}\"\ndata_dir = \"{}\"\nkey_file = \"{}\"\n\
                 [[user]]\nname = \"alice\"\npassword = \"pw\"\n\
                 [[account]]\nuser = \"alice\"\nname = \"mail\"\nkind = \"imap\"\n\
                 host = \"127.0.0.1\"\nport = {}\nsecurity = \"none\"\n\
                 username = \"{USER}\"\npassword = \"{PASS}\"\n",
                dir.path().join("data").display(),
                dir.path().join("key/k").display(),
                dovecot.imap_port(),
            ),
        )?;
        Ok(DataDir { dir, port })
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("tidings.toml")
    }

    fn db(&self) -> PathBuf {
        self.dir.path().join("data/tidings.sqlite")
    }

    fn serve(&self) -> Result<Serve> {
        self.serve_with(&self.config())
    }

    /// `tidings serve` on the migrated store: the same configuration with `store` set.
    fn serve_on(&self, url: &str) -> Result<Serve> {
        let config = self.dir.path().join("postgres.toml");
        std::fs::write(
            &config,
            format!(
                "store = \"{url}\"\nnode_name = \"n1\"\n{}",
                std::fs::read_to_string(self.config())?
            ),
        )?;
        self.serve_with(&config)
    }

    fn serve_with(&self, config: &std::path::Path) -> Result<Serve> {
        let log = std::fs::File::create(self.dir.path().join("serve.log"))?;
        let child = Command::new(env!("CARGO_BIN_EXE_tidings"))
            .args(["serve", "--config"])
            .arg(config)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()?;
        Ok(Serve(child))
    }

    fn migrate(&self, url: &str) -> Result<Output> {
        Ok(Command::new(env!("CARGO_BIN_EXE_tidings"))
            .args(["migrate", "--to", url, "--config"])
            .arg(self.config())
            .stdin(Stdio::null())
            .output()?)
    }
}

struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits (bounded) until `check` holds.
fn wait_for(what: &str, mut check: impl FnMut() -> Result<bool>) -> Result<()> {
    let start = Instant::now();
    loop {
        if check().unwrap_or(false) {
            return Ok(());
        }
        if start.elapsed() > Duration::from_secs(90) {
            bail!("timed out waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn seed_dovecot() -> Result<Dovecot> {
    let dovecot = Dovecot::start(DovecotOptions::default())?;
    dovecot.add_user(USER, PASS)?;
    let msgs = corpus::generate(18, MESSAGES, &["INBOX", "Archive"]);
    for folder in ["INBOX", "Archive"] {
        let seed: Vec<SeedMessage> = msgs
            .iter()
            .filter(|m| m.folder == folder)
            .map(|m| SeedMessage {
                raw: m.raw.clone(),
                flags: m.flags.clone(),
                internal_date: m.internal_date,
            })
            .collect();
        dovecot.seed(USER, folder, &seed)?;
    }
    Ok(dovecot)
}

/// Everything a JMAP client reads of the account, through the store's roles: the same
/// answers from both backends is what "clients do not notice" means.
#[derive(Debug, PartialEq)]
struct Snapshot {
    state: State,
    accounts: Vec<(AccountId, String)>,
    mailboxes: Vec<store::MailboxView>,
    query: store::QueryPage,
    emails: Vec<store::EmailView>,
    threads: Vec<(ThreadId, Vec<EmailId>)>,
    changes: Vec<store::Change>,
    pages: Vec<String>,
    search: Vec<EmailId>,
    /// The write-back queue as the outbox worker sees it.
    outbox: String,
    pending: u64,
}

async fn snapshot<S: Directory + Reading + Outbox>(
    s: &S,
    a: AccountId,
    since: State,
) -> Result<Snapshot> {
    let query = s
        .query_emails(
            a,
            &EmailQuery {
                count: true,
                ..Default::default()
            },
        )
        .await?;
    let emails = s.emails(a, &query.ids).await?;
    let mut thread_ids = query.threads.clone();
    thread_ids.sort_unstable_by_key(|t| t.0);
    thread_ids.dedup();
    let mut pages = Vec::new();
    for object in [ObjectType::Email, ObjectType::Mailbox, ObjectType::Thread] {
        let page = s
            .changes_page(a, object, ChangePosition::whole(since), 50)
            .await?;
        pages.push(format!("{page:?}"));
    }
    let mut accounts: Vec<(AccountId, String)> = s
        .list_accounts()
        .await?
        .into_iter()
        .map(|r| (r.id, r.name))
        .collect();
    accounts.sort_unstable_by_key(|(id, _)| id.0);
    Ok(Snapshot {
        state: s.account_state(a).await?,
        accounts,
        mailboxes: s.mailbox_views(a).await?,
        threads: s.threads(a, &thread_ids).await?,
        changes: s.changes_since(a, since).await?,
        search: s.search(a, "the").await?,
        outbox: format!("{:?}", s.outbox_next(a, 1000).await?),
        pending: s.outbox_status(a).await?.pending,
        query,
        emails,
        pages,
    })
}

/// What a JMAP client holds of the account: mailbox ids and names, every Email id,
/// each thread's Emails (all sorted), and the Email state.
struct ClientView {
    mailboxes: Vec<(String, String)>,
    emails: Vec<String>,
    threads: Vec<(String, Vec<String>)>,
    state: i64,
}

fn client_view(port: u16) -> Result<ClientView> {
    let r = jmap(
        port,
        json!([
            ["Mailbox/get", {"accountId": "a1", "properties": ["name"]}, "m"],
            ["Email/query", {"accountId": "a1"}, "q"],
            ["Email/get", {"accountId": "a1", "#ids": {"resultOf": "q", "name": "Email/query", "path": "/ids"},
                "properties": ["threadId"]}, "g"],
            ["Thread/get", {"accountId": "a1", "#ids": {"resultOf": "g", "name": "Email/get", "path": "/list/*/threadId"}}, "t"]
        ]),
    )?;
    let list = |i: usize| r[i][1]["list"].as_array().cloned().unwrap_or_default();
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let mut mailboxes: Vec<(String, String)> = list(0)
        .iter()
        .map(|m| (text(&m["id"]), text(&m["name"])))
        .collect();
    mailboxes.sort_unstable();
    let mut emails: Vec<String> = r[1][1]["ids"]
        .as_array()
        .context("ids")?
        .iter()
        .map(text)
        .collect();
    emails.sort_unstable();
    let mut threads: Vec<(String, Vec<String>)> = list(3)
        .iter()
        .map(|t| {
            let ids = t["emailIds"].as_array().cloned().unwrap_or_default();
            (text(&t["id"]), ids.iter().map(text).collect())
        })
        .collect();
    threads.sort_unstable();
    threads.dedup();
    let state = r[2][1]["state"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .context("state")?;
    if emails.len() != MESSAGES || threads.is_empty() {
        bail!("{} Emails, {} threads: {r}", emails.len(), threads.len());
    }
    Ok(ClientView {
        mailboxes,
        emails,
        threads,
        state,
    })
}

/// What the client-visible tables hold, read from outside the code under test (Python's
/// sqlite3 on one side, psql on the other), each as `|`-separated lines: ids, states,
/// counters, copies, the change log in its order, the write-back queue.
const TABLES: &[(&str, bool)] = &[
    (
        "SELECT id, user_id, name, state, delivery_state FROM account",
        false,
    ),
    (
        "SELECT id, raw_name, uidvalidity, uidnext, highestmodseq, copies, bodies, \
         total_emails, unread_emails, total_threads, unread_threads FROM mailbox",
        false,
    ),
    (
        "SELECT id, thread_id, identity, size, received_at, coalesce(blob_id, '') FROM email",
        false,
    ),
    (
        "SELECT mailbox_id, uid, email_id, flags, modseq FROM copy",
        false,
    ),
    ("SELECT id, account_id FROM thread", false),
    ("SELECT account_id, msgid, thread_id FROM thread_ref", false),
    (
        "SELECT id, kind, coalesce(email_id, 0), payload, rev FROM outbox",
        false,
    ),
    (
        "SELECT mailbox_id, uid, outbox_id FROM outbox_tombstone",
        false,
    ),
    ("SELECT id FROM blob", false),
    // In its order: a `*/changes` page resumes after a row within a state.
    (
        "SELECT account_id, state, type, object_id, op FROM change ORDER BY {seq}",
        true,
    ),
];

/// The rows of `sql` on the SQLite store, `|`-separated.
fn sqlite_rows(db: &std::path::Path, sql: &str) -> Result<Vec<String>> {
    const RUN: &str = "import sqlite3, sys\n\
        c = sqlite3.connect(sys.argv[1])\n\
        for r in c.execute(sys.argv[2]): print('|'.join(str(v) for v in r))\n";
    let out = Command::new("python3")
        .args(["-c", RUN])
        .arg(db)
        .arg(sql)
        .output()?;
    if !out.status.success() {
        bail!("sqlite: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect())
}

/// Each of [`TABLES`] on both sides: the same rows (in the same order where it matters).
fn same_tables(pg: &testkit::Postgres, url: &str, db: &std::path::Path) -> Result<()> {
    for (sql, ordered) in TABLES {
        let mut old = sqlite_rows(db, &sql.replace("{seq}", "rowid"))?;
        let mut new: Vec<String> = pg
            .psql(&database(url), &sql.replace("{seq}", "seq"))?
            .lines()
            .map(str::to_string)
            .collect();
        if !ordered {
            old.sort_unstable();
            new.sort_unstable();
        }
        assert!(!old.is_empty(), "{sql}: no rows");
        assert_eq!(old, new, "{sql}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrated_store_keeps_ids_states_and_changes() -> Result<()> {
    let dovecot = seed_dovecot()?;
    let data = DataDir::new(&dovecot)?;
    let serve = data.serve()?;
    let port = data.port;
    // Synced, bodies included (asking for the preview makes sure of them).
    wait_for("the initial sync", || {
        let r = jmap(
            port,
            json!([["Email/query", {"accountId": "a1", "calculateTotal": true}, "q"]]),
        )?;
        Ok(r[0][1]["total"] == MESSAGES)
    })?;

    // Every body stored too, so the sync changes nothing after the state below.
    let start = Instant::now();
    loop {
        let store = SqliteStore::open(&data.db())?;
        let mut bodies = 0;
        for a in store.list_accounts().await? {
            for m in store.mailboxes(a.id).await? {
                bodies += m.progress.bodies;
            }
        }
        if bodies as usize == MESSAGES {
            break;
        }
        if start.elapsed() > Duration::from_secs(90) {
            bail!("{bodies} bodies of {MESSAGES} stored");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // What the client holds before its changes: the state it will ask changes from (a
    // JMAP state is the account's counter, an id the row's behind a type letter).
    let r = jmap(
        port,
        json!([["Email/get", {"accountId": "a1", "ids": []}, "g"]]),
    )?;
    let s0 = State(
        r[0][1]["state"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .context("state")?,
    );
    let account = AccountId(1);

    // The user's changes to seven messages of INBOX: five flagged or unflagged, two
    // moved to Archive.
    let r = jmap(
        port,
        json!([["Mailbox/get", {"accountId": "a1", "properties": ["name"]}, "m"]]),
    )?;
    let mailbox_id = |name: &str| -> Result<String> {
        r[0][1]["list"]
            .as_array()
            .context("mailboxes")?
            .iter()
            .find(|m| m["name"] == name)
            .and_then(|m| m["id"].as_str())
            .map(str::to_string)
            .with_context(|| format!("no {name}"))
    };
    let (inbox, archive) = (mailbox_id("INBOX")?, mailbox_id("Archive")?);
    let r = jmap(
        port,
        json!([
            ["Email/query", {"accountId": "a1", "filter": {"inMailbox": inbox}, "limit": 7}, "q"],
            ["Email/get", {"accountId": "a1", "#ids": {"resultOf": "q", "name": "Email/query", "path": "/ids"},
                "properties": ["keywords"]}, "g"]
        ]),
    )?;
    let ids: Vec<String> = r[0][1]["ids"]
        .as_array()
        .context("ids")?
        .iter()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    let flagged = |id: &str| {
        r[1][1]["list"].as_array().is_some_and(|l| {
            l.iter()
                .any(|e| e["id"] == id && e["keywords"]["$flagged"] == true)
        })
    };
    let first_flagged = flagged(&ids[0]);
    let mut update = serde_json::Map::new();
    for id in &ids[..5] {
        let to = if flagged(id) {
            Value::Null
        } else {
            json!(true)
        };
        update.insert(id.clone(), json!({ "keywords/$flagged": to }));
    }
    for id in &ids[5..] {
        update.insert(
            id.clone(),
            json!({ "mailboxIds": { archive.as_str(): true } }),
        );
    }
    let r = jmap(
        port,
        json!([["Email/set", {"accountId": "a1", "update": update}, "s"]]),
    )?;
    assert_eq!(
        r[0][1]["updated"].as_object().map(|o| o.len()),
        Some(7),
        "{r}"
    );
    wait_for("the write-back", || {
        let r = jmap(port, json!([["Outbox/get", {"accountId": "a1"}, "o"]]))?;
        Ok(r[0][1]["pending"] == 0)
    })?;
    let seen = client_view(port)?;
    drop(serve);

    // Changes the server has not had yet (serve stopped before their write-back): a flag
    // taken back and a move back to INBOX, queued with their tombstone.
    let queued = SqliteStore::open(&data.db())?;
    let boxes = queued.mailboxes(account).await?;
    let mailbox = |name: &str| {
        boxes
            .iter()
            .find(|m| m.raw_name == name)
            .map(|m| m.id)
            .context("mailbox")
    };
    let email = |k: usize| -> Result<EmailId> {
        Ok(EmailId(ids[k].strip_prefix('e').context("id")?.parse()?))
    };
    let patches = vec![
        store::EmailPatch {
            email: email(0)?,
            // Back to what it was before the user's change.
            keywords_add: if first_flagged {
                vec!["$flagged".into()]
            } else {
                vec![]
            },
            keywords_remove: if first_flagged {
                vec![]
            } else {
                vec!["$flagged".into()]
            },
            mailboxes_add: vec![],
            mailboxes_remove: vec![],
        },
        store::EmailPatch {
            email: email(5)?,
            keywords_add: vec![],
            keywords_remove: vec![],
            mailboxes_add: vec![mailbox("INBOX")?],
            mailboxes_remove: vec![mailbox("Archive")?],
        },
    ];
    let results = queued.update_emails(account, patches).await?;
    assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
    drop(queued);

    let pg = testkit::Postgres::shared()?;
    let url = pg.fresh_database()?;
    let out = data.migrate(&url)?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "migrate failed: {stderr}");
    assert!(stdout.contains("store = \"postgres://"), "{stdout}");
    assert!(
        stderr.contains("email") && stderr.contains("change"),
        "{stderr}"
    );

    let sqlite = SqliteStore::open(&data.db())?;
    let postgres = PgStore::connect(&url).await?;
    let old = snapshot(&sqlite, account, s0).await?;
    let new = snapshot(&postgres, account, s0).await?;
    assert_eq!(old.query.ids.len(), MESSAGES);
    assert!(!old.search.is_empty());
    assert_eq!(old.pending, 2, "{}", old.outbox);
    assert_eq!(old, new);
    // Row for row too, read from outside the code under test.
    same_tables(pg, &url, &data.db())?;

    // The changes from the old state are exactly the user's: the seven Emails updated
    // (and the mailboxes and threads whose counts moved), nothing else, the queued two
    // among them.
    let mut changed: Vec<i64> = new
        .changes
        .iter()
        .filter(|c| c.object == ObjectType::Email)
        .map(|c| c.id)
        .collect();
    changed.sort_unstable();
    changed.dedup();
    let mut expected: Vec<i64> = ids
        .iter()
        .filter_map(|id| id.strip_prefix('e')?.parse().ok())
        .collect();
    expected.sort_unstable();
    assert_eq!(expected.len(), 7, "{ids:?}");
    assert_eq!(changed, expected);

    let db = database(&url);
    // A JMAP client of `tidings serve` on the migrated store sees the same mailboxes,
    // Emails and threads under the same ids, and its Email/changes from its old state
    // are the seven Emails changed.
    let serve = data.serve_on(&url)?;
    wait_for("serve on PostgreSQL", || {
        let r = jmap(
            port,
            json!([["Email/query", {"accountId": "a1", "calculateTotal": true}, "q"]]),
        )?;
        Ok(r[0][1]["total"] == MESSAGES)
    })?;
    let now = client_view(port)?;
    assert_eq!(now.mailboxes, seen.mailboxes);
    assert_eq!(now.emails, seen.emails);
    assert_eq!(now.threads, seen.threads);
    assert!(
        now.state >= seen.state,
        "{} before {}",
        now.state,
        seen.state
    );
    let r = jmap(
        port,
        json!([["Email/changes", {"accountId": "a1", "sinceState": s0.0.to_string()}, "c"]]),
    )?;
    let mut updated: Vec<String> = r[0][1]["updated"]
        .as_array()
        .context("updated")?
        .iter()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    updated.sort_unstable();
    let mut want = ids.clone();
    want.sort_unstable();
    assert_eq!(updated, want, "{r}");
    assert_eq!(r[0][1]["created"], json!([]), "{r}");
    assert_eq!(r[0][1]["destroyed"], json!([]), "{r}");
    drop(serve);

    // Each sequence is past every id SQLite handed out, those of rows deleted since too.
    for (table, column) in [
        ("email", "id"),
        ("mailbox", "id"),
        ("thread", "id"),
        ("outbox", "id"),
    ] {
        let marked: i64 = sqlite_exec(
            &data.db(),
            &format!("SELECT coalesce(max(seq), 0) FROM sqlite_sequence WHERE name = '{table}'"),
        )?
        .parse()?;
        let next: i64 = pg
            .psql(
                &db,
                &format!(
                    "SELECT coalesce(pg_sequence_last_value(pg_get_serial_sequence('{table}', '{column}')), 0)"
                ),
            )?
            .parse()?;
        assert!(
            next >= marked && marked > 0,
            "{table}: sequence at {next}, SQLite's mark {marked}"
        );
    }

    // A new message after the move: a higher state, an id no old object ever had.
    let inbox = postgres
        .mailboxes(account)
        .await?
        .into_iter()
        .find(|m| m.raw_name == "INBOX")
        .context("INBOX")?;
    let uid = Uid(inbox.uidnext.0 + 1000);
    let raw = corpus::message("carol@example.org", USER, "after the move", "new");
    let state = postgres
        .apply_mailbox_changes(
            account,
            inbox.id,
            MailboxChanges {
                new: vec![NewCopy {
                    uid,
                    flags: vec![],
                    modseq: ModSeq(1),
                    internal_date: 1_800_000_000,
                    size: raw.len() as u32,
                    server_email_id: None,
                    header_hash: "h:after-the-move".into(),
                    parsed: store::ParsedMessage {
                        subject: Some("after the move".into()),
                        ..Default::default()
                    },
                    raw: None,
                }],
                ..MailboxChanges::new(inbox.uidvalidity)
            },
        )
        .await?;
    assert!(state > new.state, "{state:?} after {:?}", new.state);
    let added: Vec<i64> = postgres
        .changes_since(account, new.state)
        .await?
        .into_iter()
        .filter(|c| c.object == ObjectType::Email)
        .map(|c| c.id)
        .collect();
    let highest_old = new
        .changes
        .iter()
        .filter(|c| c.object == ObjectType::Email)
        .map(|c| c.id)
        .chain(old.query.ids.iter().map(|e| e.0))
        .max()
        .unwrap_or(0);
    assert_eq!(added.len(), 1, "{added:?}");
    assert!(added[0] > highest_old, "{added:?} reuses an old id");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_refused_or_cut_leaves_the_database_as_it_was() -> Result<()> {
    let dovecot = Dovecot::start(DovecotOptions::default())?;
    dovecot.add_user(USER, PASS)?;
    dovecot.seed(
        USER,
        "INBOX",
        &[SeedMessage {
            raw: corpus::message("bob@example.org", USER, "hello", "one"),
            flags: vec![],
            internal_date: 1_780_000_000,
        }],
    )?;
    let data = DataDir::new(&dovecot)?;
    let serve = data.serve()?;
    let port = data.port;
    wait_for("the sync", || {
        let r = jmap(
            port,
            json!([["Email/query", {"accountId": "a1", "calculateTotal": true}, "q"]]),
        )?;
        Ok(r[0][1]["total"] == 1)
    })?;
    let pg = testkit::Postgres::shared()?;

    // A server still running on the store: refused, the database left empty.
    let url = pg.fresh_database()?;
    let out = data.migrate(&url)?;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("stop it first"), "{stderr}");
    assert_eq!(tables(pg, &url)?, "0");
    drop(serve);

    // A copy failing after most tables went in (a mailbox counter made wrong in the
    // SQLite file: the comparison after the copies fails) leaves no row behind.
    sqlite_exec(
        &data.db(),
        "UPDATE mailbox SET copies = copies + 1 WHERE raw_name = 'INBOX'",
    )?;
    let cut = data.migrate(&url)?;
    assert!(!cut.status.success());
    let stderr = String::from_utf8_lossy(&cut.stderr);
    assert!(stderr.contains("count differently"), "{stderr}");
    for table in ["app_user", "account", "change", "email", "copy"] {
        assert_eq!(rows(pg, &url, table)?, 0, "{table}");
    }
    sqlite_exec(
        &data.db(),
        "UPDATE mailbox SET copies = copies - 1 WHERE raw_name = 'INBOX'",
    )?;

    // A database holding a store already: refused, its rows as they were.
    let first = data.migrate(&url)?;
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let counts = |pg: &testkit::Postgres| -> Result<Vec<i64>> {
        ["app_user", "account", "email", "change", "blob"]
            .iter()
            .map(|t| rows(pg, &url, t))
            .collect()
    };
    let before = counts(pg)?;
    assert!(before.iter().all(|n| *n > 0), "{before:?}");
    let second = data.migrate(&url)?;
    assert!(!second.status.success());
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(stderr.contains("holds a store already"), "{stderr}");
    assert_eq!(counts(pg)?, before);

    // Into another database that is not ours: refused, nothing created there.
    let other = pg.fresh_database()?;
    let name = database(&other);
    pg.psql(&name, "CREATE TABLE invoices (id int)")?;
    let third = data.migrate(&other)?;
    assert!(!third.status.success());
    assert_eq!(tables(pg, &other)?, "1");
    // The password of a URL is never printed.
    let secret = other.replacen("postgres://postgres@", "postgres://postgres:s3cr3t-pw@", 1);
    let out = data.migrate(&secret)?;
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!all.contains("s3cr3t-pw"), "{all}");
    Ok(())
}

/// SQL on the SQLite store from outside (Python's sqlite3), as an administrator would;
/// returns the first column of the first row, if any.
fn sqlite_exec(db: &std::path::Path, sql: &str) -> Result<String> {
    const RUN: &str = "import sqlite3, sys\n\
        c = sqlite3.connect(sys.argv[1])\n\
        r = c.execute(sys.argv[2]).fetchone()\n\
        c.commit()\n\
        print('' if r is None else r[0])\n";
    let out = Command::new("python3")
        .args(["-c", RUN])
        .arg(db)
        .arg(sql)
        .output()?;
    if !out.status.success() {
        bail!("sqlite: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn database(url: &str) -> String {
    url.rsplit('/').next().unwrap_or_default().to_string()
}

/// How many tables the database has.
fn tables(pg: &testkit::Postgres, url: &str) -> Result<String> {
    pg.psql(
        &database(url),
        "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'",
    )
}

fn rows(pg: &testkit::Postgres, url: &str, table: &str) -> Result<i64> {
    let n = pg.psql(&database(url), &format!("SELECT count(*) FROM {table}"))?;
    Ok(n.parse()?)
}
