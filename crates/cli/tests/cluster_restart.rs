//! The PostgreSQL server restarted under load, then stopped for a few seconds and started
//! again, under two `tidings serve` nodes: mail arriving at Dovecot, Email/set writes
//! through both nodes, a WebSocket push client on the node that does not hold the
//! account. The nodes reconnect by themselves (pool, bus, leases), nothing delivered or
//! written is lost, a write the outage refused is refused with a JMAP error within a
//! bound, and push resumes with nothing missed.

mod cluster_support;
mod push_support;

use cluster_support::{
    Node, accounts_made, holders, inbox_counts, logs, message, rows, seeded_accounts, until,
};
use push_support::{Ws, basic, free_port, ws_connect_when_up};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use testkit::imap_client::ImapClient;
use testkit::{Dovecot, DovecotOptions, Postgres};

const PASS: &str = "pw";
const ACCOUNTS: usize = 3;
/// Messages seeded per account: each write flags one of them, never the same twice.
const SEEDED: usize = 30;
/// The longest a write may take, outage or not (the client's own bound is 15 s).
const WRITE_BOUND: Duration = Duration::from_secs(12);

/// What one Email/set came back with.
#[derive(Debug)]
enum Outcome {
    Updated,
    /// Refused, with the JMAP error type (method-level or the SetError's).
    Refused(String),
}

struct Write {
    account: String,
    email: String,
    /// The seeded message's number (its Message-ID is `<n.user>`).
    n: usize,
    outcome: Outcome,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_ride_out_a_postgres_restart_under_load() -> Result<()> {
    let mut pg = Postgres::start()?;
    let url = pg.fresh_database()?;
    let db = url.rsplit('/').next().context("database name")?.to_owned();
    let dovecot = Arc::new(Dovecot::start(DovecotOptions::default())?);
    let users: Vec<String> = (0..ACCOUNTS).map(|i| format!("r{i}@example.org")).collect();
    let dir = tempfile::tempdir()?;
    let common = seeded_accounts(&dovecot, &url, dir.path(), &users, PASS, SEEDED)?;
    let ports = [free_port()?, free_port()?];
    let mut nodes = vec![Node::start_on(dir.path(), "n1", &common, ports[0])?];
    accounts_made(&pg, &db, ACCOUNTS, &nodes).await?;
    nodes.push(Node::start_on(dir.path(), "n2", &common, ports[1])?);
    until(
        "every account held and synced",
        Duration::from_secs(60),
        || {
            let counts = inbox_counts(&pg, &db)?;
            let synced = counts.len() == ACCOUNTS && counts.values().all(|&c| c == SEEDED);
            Ok((holders(&pg, &db)?.len() == ACCOUNTS && synced).then_some(()))
        },
    )
    .await
    .with_context(|| logs(&nodes))?;
    // Account id -> Dovecot login, and the watched account's holder.
    let user_of: BTreeMap<i64, String> = rows(&pg, &db, "SELECT id, username FROM account")?
        .into_iter()
        .map(|r| Ok((r[0].parse()?, r[1].clone())))
        .collect::<Result<_>>()?;
    let (&watched, watched_user) = user_of.iter().next().context("an account")?;
    let watched_user = watched_user.clone();
    let watched_jmap = format!("a{watched}");
    let holder = holders(&pg, &db)?
        .get(&watched)
        .cloned()
        .context("the holder")?;
    let other = nodes
        .iter()
        .zip(ports)
        .find(|(n, _)| n.name != holder)
        .map(|(_, p)| p)
        .context("a node other than the holder")?;

    let auth = basic("alice", "x");
    // The push client, on the node that does not sync the watched account.
    let mut push = ws_connect_when_up(other, &auth).await?;
    let (ids0, s0) = push.email_ids(&watched_jmap).await?;
    push.enable(Some(&["Email"]), None).await?;

    // The Emails each write flags, with their Message-ID numbers.
    let mut writers = [
        ws_connect_when_up(ports[0], &auth).await?,
        ws_connect_when_up(ports[1], &auth).await?,
    ];
    let mut targets: Vec<(String, String, usize)> = Vec::new();
    for id in user_of.keys() {
        let account = format!("a{id}");
        let r = writers[0]
            .call(json!([["Email/query", {"accountId": account}, "q"],
                ["Email/get", {"accountId": account,
                "#ids": {"resultOf": "q", "name": "Email/query", "path": "/ids"},
                "properties": ["messageId"]}, "g"]]))
            .await?;
        for e in r["methodResponses"][1][1]["list"]
            .as_array()
            .with_context(|| format!("Email/get list: {r}"))?
        {
            let mid = e["messageId"][0].as_str().context("messageId")?;
            let n: usize = mid.split('.').next().context("number")?.parse()?;
            targets.push((account.clone(), e["id"].as_str().context("id")?.into(), n));
        }
    }
    targets.sort_by_key(|(a, _, n)| (*n, a.clone()));
    if targets.len() != ACCOUNTS * SEEDED {
        bail!(
            "{} Emails to write, not {}",
            targets.len(),
            ACCOUNTS * SEEDED
        );
    }

    // The load: a delivery every 250 ms round the accounts, a write every 150 ms through
    // the nodes in turn, until told to stop (both bounded in count too).
    let stop = Arc::new(AtomicBool::new(false));
    let deliverer = {
        let (stop, dovecot, users) = (stop.clone(), dovecot.clone(), users.clone());
        tokio::task::spawn_blocking(move || -> Result<Vec<usize>> {
            let mut sent = vec![0; users.len()];
            for k in 0..400 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let i = k % users.len();
                dovecot.deliver(&users[i], &message(&users[i], 1000 + k))?;
                sent[i] += 1;
                std::thread::sleep(Duration::from_millis(250));
            }
            Ok(sent)
        })
    };
    let writer = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut done = Vec::new();
            for (k, (account, email, n)) in targets.into_iter().enumerate() {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let began = Instant::now();
                let r = request(
                    &mut writers[k % 2],
                    &format!("w{k}"),
                    json!([["Email/set", {"accountId": account,
                        "update": {&email: {"keywords/$flagged": true}}}, "s"]]),
                )
                .await
                .with_context(|| format!("write {k}"))?;
                let took = began.elapsed();
                if took > WRITE_BOUND {
                    bail!("write {k} took {took:?}");
                }
                let outcome = outcome(&r, &email)?;
                done.push(Write {
                    account,
                    email,
                    n,
                    outcome,
                });
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
            Ok::<_, anyhow::Error>(done)
        })
    };

    tokio::time::sleep(Duration::from_secs(2)).await;
    // An administrator's restart: every connection of every node dropped at once.
    pg.restart()?;
    tokio::time::sleep(Duration::from_secs(4)).await;
    // Down for a few seconds: the nodes' reconnections fail and back off meanwhile.
    pg.stop()?;
    let down = Instant::now();
    tokio::time::sleep(Duration::from_secs(4)).await;
    // The load ends while the server is down: what arrived meanwhile is stored right
    // after the start, perhaps before the other node listens again, and then nothing
    // more happens, so only the bus's re-reading of the change log can tell the push
    // client about it.
    stop.store(true, Ordering::Relaxed);
    let sent = deliverer.await??;
    let writes = writer.await??;
    pg.start_again()?;
    let outage = down.elapsed();

    // The nodes are still running.
    for n in &mut nodes {
        if let Some(status) = n.child.try_wait()? {
            bail!("{} exited ({status}):\n{}", n.name, n.log());
        }
    }
    // The leases are renewed again: every account held, its lease moving forward.
    until("every account held again", Duration::from_secs(20), || {
        let h = holders(&pg, &db)?;
        Ok((h.len() == ACCOUNTS).then_some(()))
    })
    .await
    .with_context(|| logs(&nodes))?;
    let expiry = |pg: &Postgres| -> Result<BTreeMap<i64, String>> {
        rows(
            pg,
            &db,
            "SELECT account_id, expires_at FROM account_lease ORDER BY account_id",
        )?
        .into_iter()
        .map(|r| Ok((r[0].parse()?, r[1].clone())))
        .collect()
    };
    let first = expiry(&pg)?;
    until("the leases renewed", Duration::from_secs(10), || {
        let now = expiry(&pg)?;
        Ok(first
            .iter()
            .all(|(a, t)| now.get(a) > Some(t))
            .then_some(()))
    })
    .await
    .with_context(|| logs(&nodes))?;

    // Every delivery is in the store.
    let ids: Vec<i64> = user_of.keys().copied().collect();
    until(
        "every delivery stored",
        Duration::from_secs(60),
        || -> Result<Option<()>> {
            let counts = inbox_counts(&pg, &db)?;
            Ok(ids
                .iter()
                .enumerate()
                .all(|(i, a)| counts.get(a) == Some(&(SEEDED + sent[i])))
                .then_some(()))
        },
    )
    .await
    .with_context(|| format!("sent {sent:?}\n{}", logs(&nodes)))?;

    // Every write that succeeded is on the IMAP server (a second, independent client);
    // some were refused while the server was down, each with a JMAP error.
    let updated: Vec<&Write> = writes
        .iter()
        .filter(|w| matches!(w.outcome, Outcome::Updated))
        .collect();
    let refused: Vec<&Write> = writes
        .iter()
        .filter(|w| matches!(w.outcome, Outcome::Refused(_)))
        .collect();
    eprintln!(
        "outage {outage:?}: {} writes updated, {} refused ({:?}); deliveries {sent:?}",
        updated.len(),
        refused.len(),
        refused
            .iter()
            .map(|w| match &w.outcome {
                Outcome::Refused(t) => t.as_str(),
                Outcome::Updated => "",
            })
            .collect::<BTreeSet<_>>(),
    );
    assert!(!refused.is_empty(), "no write met the outage");
    assert!(updated.len() > refused.len(), "most writes land");
    let login: HashMap<String, String> = user_of
        .iter()
        .map(|(id, u)| (format!("a{id}"), u.clone()))
        .collect();
    until(
        "every successful write on the IMAP server",
        Duration::from_secs(60),
        || {
            for w in &updated {
                let user = login.get(&w.account).context("login")?;
                let mut imap = ImapClient::login(dovecot.imap_port(), user, PASS)?;
                imap.select("INBOX")?;
                let found = imap.raw_command(&format!(
                    "UID SEARCH FLAGGED HEADER Message-ID \"<{}.{user}>\"",
                    w.n
                ))?;
                imap.logout()?;
                let hit = found
                    .lines()
                    .any(|l| l.starts_with("* SEARCH ") && l.len() > "* SEARCH ".len());
                if !hit {
                    return Ok(None);
                }
            }
            Ok(Some(()))
        },
    )
    .await
    .with_context(|| logs(&nodes))?;

    // Every Email change was pushed: nothing changed after the last state the client
    // was told of, once the other node listens again (its listener retries with a
    // backoff of up to 5 s: the bound leaves room for that and a loaded machine).
    let mut last_pushed = None;
    let told = Instant::now();
    all_pushed(&mut push, &watched_jmap, &s0, &mut last_pushed)
        .await
        .with_context(|| logs(&nodes))?;
    eprintln!("every change pushed {:?} after the checks", told.elapsed());
    let other_log = nodes
        .iter()
        .find(|n| n.name != holder)
        .map(Node::log)
        .unwrap_or_default();
    eprintln!(
        "the other node's bus announced what it missed: {}",
        other_log.contains("announcing what was missed")
    );

    // Push resumed: a delivery now reaches the client on the other node.
    let flagged_watched: BTreeSet<String> = updated
        .iter()
        .filter(|w| w.account == watched_jmap)
        .map(|w| w.email.clone())
        .collect();
    let maybe_watched: BTreeSet<String> = refused
        .iter()
        .filter(|w| w.account == watched_jmap)
        .map(|w| w.email.clone())
        .collect();
    let (present, _) = push.email_ids(&watched_jmap).await?;
    dovecot.deliver(&watched_user, &message(&watched_user, 5000))?;
    push.wait_emails(&watched_jmap, present.len() + 1).await?;
    let (_, now) = push.email_ids(&watched_jmap).await?;
    let pushed = wait_push_of(&mut push, &watched_jmap, &now, &mut last_pushed)
        .await
        .with_context(|| logs(&nodes))?;
    eprintln!("pushed after the restart: {pushed}");
    // Nothing committed since was left unsaid either.
    all_pushed(&mut push, &watched_jmap, &s0, &mut last_pushed)
        .await
        .with_context(|| logs(&nodes))?;
    let (after, _) = push.email_ids(&watched_jmap).await?;
    // `Email/changes` from the state before the load: exactly the new Emails, and the
    // written ones (a refused write may have committed before the connection broke).
    let new: BTreeSet<String> = after
        .iter()
        .filter(|i| !ids0.contains(i))
        .cloned()
        .collect();
    let (created, changed, destroyed, _) = push.email_changes(&watched_jmap, &s0).await?;
    assert_eq!(created.iter().cloned().collect::<BTreeSet<_>>(), new);
    assert!(destroyed.is_empty(), "{destroyed:?}");
    let changed: BTreeSet<String> = changed.into_iter().collect();
    assert!(
        changed.is_superset(&flagged_watched),
        "{changed:?} {flagged_watched:?}"
    );
    assert!(
        changed
            .iter()
            .all(|e| flagged_watched.contains(e) || maybe_watched.contains(e)),
        "{changed:?}"
    );

    // Neither node spins: little CPU over a quiet second.
    let cpu = |n: &Node| -> Result<u64> { cpu_ticks(n.child.id()) };
    let t0: Vec<u64> = nodes.iter().map(cpu).collect::<Result<_>>()?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let t1: Vec<u64> = nodes.iter().map(cpu).collect::<Result<_>>()?;
    for (i, n) in nodes.iter().enumerate() {
        // 100 ticks a second: 3 s at a third of a core is 100.
        assert!(
            t1[i] - t0[i] < 100,
            "{} used {} ticks in 3 s",
            n.name,
            t1[i] - t0[i]
        );
    }
    drop(nodes);
    Ok(())
}

/// Sends one Request and returns its Response or its RequestError (RFC 8887 4.3.4: a
/// request the server could not process at all), keeping StateChanges for later.
async fn request(ws: &mut Ws, id: &str, calls: Value) -> Result<Value> {
    ws.send(
        &json!({"@type": "Request", "id": id, "using": push_support::USING,
        "methodCalls": calls}),
    )
    .await?;
    let deadline = Instant::now() + WRITE_BOUND;
    while Instant::now() < deadline {
        let Some(v) = ws.recv(deadline - Instant::now()).await? else {
            break;
        };
        match v["@type"].as_str() {
            Some("StateChange") => ws.pushes.push_back((Instant::now(), v)),
            Some("Response" | "RequestError") if v["requestId"] == id => return Ok(v),
            _ => bail!("unexpected message {v}"),
        }
    }
    bail!("no answer to {id} within {WRITE_BOUND:?}: a hang")
}

fn outcome(r: &Value, email: &str) -> Result<Outcome> {
    if r["@type"] == "RequestError" {
        let status = r["status"].as_u64().context("status")?;
        let detail = r["detail"].as_str().context("detail")?;
        return Ok(Outcome::Refused(format!("{status} {detail}")));
    }
    let call = &r["methodResponses"][0];
    if call[0] == "error" {
        let t = call[1]["type"].as_str().context("error type")?;
        return Ok(Outcome::Refused(t.into()));
    }
    if call[1]["updated"].get(email).is_some() {
        return Ok(Outcome::Updated);
    }
    match call[1]["notUpdated"][email]["type"].as_str() {
        Some(t) => Ok(Outcome::Refused(t.into())),
        None => bail!("neither updated nor refused: {r}"),
    }
}

/// The Email state of the newest StateChange already received for `account`.
async fn last_email_state(ws: &mut Ws, account: &str) -> Result<Option<String>> {
    let mut last = None;
    for p in ws.settle(Duration::from_millis(300)).await? {
        if let Some(s) = p["changed"][account]["Email"].as_str() {
            last = Some(s.to_owned());
        }
    }
    Ok(last)
}

/// Waits until `Email/changes` from the newest Email state pushed (kept in `last`; `s0`
/// before any) is empty: every Email change was pushed. Bounded by 20 s, which leaves room
/// for the bus's reconnect backoff (up to 5 s) and a loaded machine. (The account's state
/// itself may be past it: a change of Mailboxes only is not pushed to an Email client.)
async fn all_pushed(ws: &mut Ws, account: &str, s0: &str, last: &mut Option<String>) -> Result<()> {
    let start = Instant::now();
    loop {
        if let Some(s) = last_email_state(ws, account).await? {
            *last = Some(s);
        }
        let since = last.clone().unwrap_or_else(|| s0.to_owned());
        let (created, changed, destroyed, _) = ws.email_changes(account, &since).await?;
        if created.is_empty() && changed.is_empty() && destroyed.is_empty() {
            return Ok(());
        }
        if start.elapsed() > Duration::from_secs(20) {
            bail!("not pushed: created {created:?}, updated {changed:?}, destroyed {destroyed:?}");
        }
    }
}

/// Waits for a StateChange announcing `state` (or a later one) of `account`'s Emails,
/// keeping the newest state pushed in `last`.
async fn wait_push_of(
    ws: &mut Ws,
    account: &str,
    state: &str,
    last: &mut Option<String>,
) -> Result<Value> {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(20) {
        let Some(p) = ws.push(Duration::from_secs(20)).await? else {
            break;
        };
        if let Some(s) = p["changed"][account]["Email"].as_str() {
            *last = Some(s.to_owned());
            if number(s) >= number(state) {
                return Ok(p);
            }
        }
    }
    bail!("no StateChange of {account} at {state} or later")
}

/// A state's number (states are the change log's counter; a page's state adds `.row`).
fn number(state: &str) -> Option<u64> {
    state.split('.').next()?.parse().ok()
}

/// User and system CPU time of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').context("stat")?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let t = |i: usize| -> Result<u64> { Ok(f.get(i).context("stat field")?.parse()?) };
    Ok(t(11)? + t(12)?)
}
