//! Sending through Tidings (`EmailSubmission/set` over HTTP, the engine's worker, SMTP with
//! STARTTLS and AUTH into the testkit's Postfix) beside a plain SMTP client (lettre's
//! pooled `AsyncSmtpTransport`) submitting the same message to the same Postfix in the
//! same run. Both clocks stop when Postfix has logged the message as accepted (its cleanup
//! line), so both include the same server work. Prints Markdown for BENCHMARKS.md.
//!
//! `cargo bench -p cli --bench submit` (TIDINGS_BENCH_SENDS, default 20 single sends;
//! TIDINGS_BENCH_BATCH, default 100 for the batch).

use anyhow::{Context, Result, bail};
use lettre::AsyncTransport;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use testkit::{Dovecot, DovecotOptions, SeedMessage, Smtp};

mod common;
use common::{Http, env_usize};

const USER: &str = "sender@example.org";
const PASS: &str = "pw";

/// Waits (bounded) until Postfix has accepted `n` messages in all.
impl Http {
    fn call(&mut self, name: &str, args: serde_json::Value) -> Result<serde_json::Value> {
        let body = serde_json::json!({
            "using": ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail",
                      "urn:ietf:params:jmap:submission"],
            "methodCalls": [[name, args, "0"]],
        })
        .to_string();
        let v = self.post(&body)?;
        let first = v["methodResponses"][0].clone();
        if first[0] != name {
            bail!("{name}: {v}");
        }
        Ok(first[1].clone())
    }
}

fn wait_accepted(smtp: &Smtp, n: usize) -> Result<()> {
    let start = Instant::now();
    while smtp.accepted_message_ids().len() < n {
        if start.elapsed() > Duration::from_secs(120) {
            bail!(
                "Postfix accepted only {}",
                smtp.accepted_message_ids().len()
            );
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    Ok(())
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() -> Result<()> {
    let sends = env_usize("TIDINGS_BENCH_SENDS", 20);
    let batch = env_usize("TIDINGS_BENCH_BATCH", 100);
    let raw = format!(
        "From: {USER}\r\nTo: {USER}\r\nSubject: bench\r\nMessage-ID: <bench@example.org>\r\n\r\n{}\r\n",
        "a line of text in the body of the benchmark message\r\n".repeat(40)
    );
    let dovecot = Dovecot::start(DovecotOptions::default())?;
    dovecot.add_user(USER, PASS)?;
    dovecot.seed(
        USER,
        "Drafts",
        &[SeedMessage {
            raw: raw.clone().into_bytes(),
            flags: vec!["\\Draft".into()],
            internal_date: 1_795_000_000,
        }],
    )?;
    let smtp = Smtp::start(&dovecot)?;
    let dir = tempfile::tempdir()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let config = dir.path().join("t.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{port}\"\ndata_dir = \"{}\"\nkey_file = \"{}\"\n\
             [[user]]\nname = \"bench\"\npassword = \"x\"\n\
             [[account]]\nuser = \"bench\"\nname = \"mail\"\nkind = \"imap\"\nhost = \"127.0.0.1\"\n\
             port = {}\nsecurity = \"tls\"\nusername = \"{USER}\"\npassword = \"{PASS}\"\n\
             ca_file = \"{}\"\n\
             [account.smtp]\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"starttls\"\n",
            dir.path().join("data").display(),
            dir.path().join("key/k").display(),
            dovecot.imaps_port(),
            dovecot.ca_file().display(),
            smtp.submission_port(),
        ),
    )?;
    let mut serve = Command::new(env!("CARGO_BIN_EXE_tidings"))
        .args(["serve", "--config"])
        .arg(&config)
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let result = run(port, &smtp, &dovecot, &raw, sends, batch);
    let _ = serve.kill();
    let _ = serve.wait();
    result
}

fn run(
    port: u16,
    smtp: &Smtp,
    dovecot: &Dovecot,
    raw: &str,
    sends: usize,
    batch: usize,
) -> Result<()> {
    let start = Instant::now();
    let (mut http, identity, email) = loop {
        if let Ok(mut h) = Http::connect(port, Duration::from_secs(30))
            && let Ok(q) = h.call(
                "Email/query",
                serde_json::json!({"accountId": "a1", "filter": {"hasKeyword": "$draft"}}),
            )
            && let Some(e) = q["ids"][0].as_str()
        {
            let g = h.call(
                "Email/get",
                serde_json::json!({"accountId": "a1", "ids": [e], "properties": ["blobId"]}),
            )?;
            if g["list"][0]["blobId"].is_string() {
                let i = h.call("Identity/get", serde_json::json!({"accountId": "a1"}))?;
                let id = i["list"][0]["id"].as_str().context("identity")?.to_owned();
                break (h, id, e.to_owned());
            }
        }
        if start.elapsed() > Duration::from_secs(60) {
            bail!("the draft never synced");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    // HOLDFOR=0: no undo window, so the clock measures sending, not waiting.
    let submission = serde_json::json!({
        "identityId": identity, "emailId": email,
        "envelope": {"mailFrom": {"email": USER, "parameters": {"HOLDFOR": "0"}},
                     "rcptTo": [{"email": USER}]},
    });
    let mut accepted = smtp.accepted_message_ids().len();
    // Warm-up: one of each.
    http.call(
        "EmailSubmission/set",
        serde_json::json!({"accountId": "a1", "create": {"w": submission}}),
    )?;
    accepted += 1;
    wait_accepted(smtp, accepted)?;

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // lettre's pool spawns its reaper task when the transport is built.
    let _runtime = rt.enter();
    let ca = Certificate::from_pem(&std::fs::read(dovecot.ca_file())?)?;
    let tls = TlsParameters::builder("127.0.0.1".to_owned())
        .add_root_certificate(ca)
        .build_rustls()?;
    let transport =
        lettre::AsyncSmtpTransport::<lettre::Tokio1Executor>::builder_dangerous("127.0.0.1")
            .port(smtp.submission_port())
            .tls(Tls::Required(tls))
            .credentials(Credentials::new(USER.into(), PASS.into()))
            .build();
    let envelope = lettre::address::Envelope::new(Some(USER.parse()?), vec![USER.parse()?])?;
    rt.block_on(transport.send_raw(&envelope, raw.as_bytes()))?;
    accepted += 1;
    wait_accepted(smtp, accepted)?;

    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    for _ in 0..sends {
        let t = Instant::now();
        http.call(
            "EmailSubmission/set",
            serde_json::json!({"accountId": "a1", "create": {"s": submission}}),
        )?;
        accepted += 1;
        wait_accepted(smtp, accepted)?;
        ours.push(t.elapsed());
        let t = Instant::now();
        rt.block_on(transport.send_raw(&envelope, raw.as_bytes()))?;
        accepted += 1;
        wait_accepted(smtp, accepted)?;
        theirs.push(t.elapsed());
    }
    let (a, b) = (median(&mut ours), median(&mut theirs));

    let create: serde_json::Map<String, serde_json::Value> = (0..batch)
        .map(|i| (format!("b{i}"), submission.clone()))
        .collect();
    let conns = smtp.connections();
    let t = Instant::now();
    http.call(
        "EmailSubmission/set",
        serde_json::json!({"accountId": "a1", "create": create}),
    )?;
    accepted += batch;
    wait_accepted(smtp, accepted)?;
    let ours_batch = t.elapsed();
    let ours_conns = smtp.connections() - conns;
    let conns = smtp.connections();
    let t = Instant::now();
    rt.block_on(async {
        for _ in 0..batch {
            transport.send_raw(&envelope, raw.as_bytes()).await?;
        }
        anyhow::Ok(())
    })?;
    accepted += batch;
    wait_accepted(smtp, accepted)?;
    let theirs_batch = t.elapsed();
    let theirs_conns = smtp.connections() - conns;

    println!("| measure | tidings | lettre (pooled) | ratio |");
    println!("|---|---|---|---|");
    println!(
        "| one message, request to accepted by Postfix (median of {sends}) | {:.1} ms | {:.1} ms | {:.2} |",
        ms(a),
        ms(b),
        a.as_secs_f64() / b.as_secs_f64()
    );
    println!(
        "| {batch} messages, one request to all accepted | {:.0} ms ({:.0}/s) | {:.0} ms ({:.0}/s) | {:.2} |",
        ms(ours_batch),
        batch as f64 / ours_batch.as_secs_f64(),
        ms(theirs_batch),
        batch as f64 / theirs_batch.as_secs_f64(),
        ours_batch.as_secs_f64() / theirs_batch.as_secs_f64()
    );
    println!("| SMTP connections for the {batch} | {ours_conns} | {theirs_conns} | |");
    Ok(())
}
