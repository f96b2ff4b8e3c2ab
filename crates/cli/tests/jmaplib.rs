//! A second independent JMAP client library, Python's capability-driven `jmaplib` (from
//! PyPI, installed into `.venv` by scripts/lib.sh), drives a live `tidings serve` over
//! HTTPS end to end, over the private Dovecot (IMAP, LMTP) and Postfix (submission).
//!
//! The script (tests/jmaplib/jmaplib_check.py) runs one step per capability URI the
//! Session offers and refuses a URI it has no step for, so a capability cannot be added
//! to the Session without a real client exercising it. This test reads the Session on
//! its own and checks that the steps that ran are exactly the capabilities offered.

use anyhow::{Context, Result, bail};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use testkit::{Dovecot, DovecotOptions, Smtp, corpus};

const USER: &str = "alice@example.org";
const PASS: &str = "imap-pw";
const OTHER: &str = "bob@example.org";
const OTHER_PASS: &str = "bob-pw";
/// How long the whole script may take; each of its waits is bounded well inside this.
const SCRIPT_DEADLINE: Duration = Duration::from_secs(240);

/// The Python that has jmaplib: `TIDINGS_PYTHON`, else the repository's `.venv`.
fn python() -> Result<PathBuf> {
    let python = match std::env::var_os("TIDINGS_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python"),
    };
    // A .venv made before jmaplib was added has jmapc only: say so, not an ImportError.
    let has = Command::new(&python)
        .args(["-c", "import jmap, httpx_ws, cryptography"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has {
        bail!(
            "no Python with jmaplib at {}: run ./scripts/test (scripts/lib.sh installs \
             jmaplib[ws,push]==3.0.1 into .venv), or set TIDINGS_PYTHON",
            python.display()
        );
    }
    Ok(python)
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The Session resource read without any JMAP library: Python's standard library over
/// HTTPS, trusting the test CA.
fn session(python: &Path, port: u16, ca: &Path) -> Result<serde_json::Value> {
    const READ: &str = "import base64, ssl, sys, urllib.request\n\
        ctx = ssl.create_default_context(cafile=sys.argv[2])\n\
        req = urllib.request.Request(sys.argv[1], headers={'Authorization': 'Basic ' + base64.b64encode(b'alice:pw').decode()})\n\
        sys.stdout.write(urllib.request.urlopen(req, context=ctx, timeout=10).read().decode())\n";
    let out = Command::new(python)
        .args(["-c", READ])
        .arg(format!("https://127.0.0.1:{port}/jmap/session"))
        .arg(ca)
        .output()?;
    if !out.status.success() {
        bail!("session: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// Every capability URI the Session offers, at the top and in any account, less
/// Tidings' own `urn:tidings:*` ones.
fn offered(session: &serde_json::Value) -> BTreeSet<String> {
    let mut uris: BTreeSet<String> = session["capabilities"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    if let Some(accounts) = session["accounts"].as_object() {
        for a in accounts.values() {
            if let Some(m) = a["accountCapabilities"].as_object() {
                uris.extend(m.keys().cloned());
            }
        }
    }
    uris.retain(|u| !u.starts_with("urn:tidings:"));
    uris
}

#[test]
fn jmaplib_exercises_every_capability_the_session_offers() -> Result<()> {
    let python = python()?;
    // With Pigeonhole: the Session offers Sieve and VacationResponse (ManageSieve found).
    // Pigeonhole and a quota, so the Session offers sieve, vacationresponse and quota.
    let dovecot = Dovecot::start(DovecotOptions {
        sieve: true,
        quota_rule: Some("*:storage=10M:messages=1000".into()),
        ..DovecotOptions::default()
    })?;
    let sieve_port = dovecot.managesieve_port().context("managesieve port")?;
    dovecot.add_user(USER, PASS)?;
    // The second account of the same Tidings user, for the methods between accounts.
    dovecot.add_user(OTHER, OTHER_PASS)?;
    for i in 0..3 {
        dovecot.deliver(
            USER,
            &corpus::message(
                "carol@example.org",
                USER,
                &format!("Quarterly report {i}"),
                "the numbers are up this quarter",
            ),
        )?;
    }
    let smtp = Smtp::start(&dovecot)?;
    // tidings serve speaks HTTPS with the testkit's certificate, as a deployment would.
    let tls_dir = dovecot.ca_file().parent().context("tls dir")?.to_path_buf();
    let dir = tempfile::tempdir()?;
    let port = free_port()?;
    let config = dir.path().join("t.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{port}\"\ndata_dir = \"{}\"\nkey_file = \"{}\"\n\
             tls_cert = \"{}\"\ntls_key = \"{}\"\n\
             push_subscription_allow_http = true\npush_subscription_allow_private = true\n\
             [[user]]\nname = \"alice\"\npassword = \"pw\"\n\
             [[account]]\nuser = \"alice\"\nname = \"mail\"\nkind = \"imap\"\nhost = \"127.0.0.1\"\n\
             port = {}\nsecurity = \"tls\"\nusername = \"{USER}\"\npassword = \"{PASS}\"\n\
             ca_file = \"{}\"\nsieve_port = {sieve_port}\n\
             [account.smtp]\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"tls\"\n\
             [[account]]\nuser = \"alice\"\nname = \"second\"\nkind = \"imap\"\nhost = \"127.0.0.1\"\n\
             port = {}\nsecurity = \"tls\"\nusername = \"{OTHER}\"\npassword = \"{OTHER_PASS}\"\n\
             ca_file = \"{}\"\nsieve_port = {sieve_port}\n",
            dir.path().join("data").display(),
            dir.path().join("key/k").display(),
            tls_dir.join("server.pem").display(),
            tls_dir.join("server.key").display(),
            dovecot.imaps_port(),
            dovecot.ca_file().display(),
            smtp.submissions_port(),
            dovecot.imaps_port(),
            dovecot.ca_file().display(),
        ),
    )?;
    let log = std::fs::File::create(dir.path().join("serve.log"))?;
    let mut serve = Command::new(env!("CARGO_BIN_EXE_tidings"))
        .args(["serve", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()?;
    let result = run(&python, &dovecot, port, dir.path(), &config);
    let _ = serve.kill();
    let _ = serve.wait();
    let (session, out) = match result {
        Ok(r) => r,
        Err(e) => {
            let log = std::fs::read_to_string(dir.path().join("serve.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            bail!(
                "{e:#}\n--- tidings serve log (last lines, newest first) ---\n{}",
                tail.join("\n")
            );
        }
    };

    // The steps that ran are exactly the capabilities the Session offers.
    let offered = offered(&session);
    let ran: BTreeSet<String> = out["steps"]
        .as_array()
        .context("steps")?
        .iter()
        .filter_map(|s| s["capability"].as_str().map(String::from))
        .collect();
    assert_eq!(ran, offered, "steps run vs the Session's capabilities");
    for s in out["steps"].as_array().context("steps")? {
        assert_eq!(s["ok"], true, "step failed: {s}");
    }
    // What the steps found, checked here as well so a script that asserts too little
    // cannot pass unnoticed.
    let r = &out["results"];
    assert_eq!(r["core"]["echo"], serde_json::json!({"hello": "jmaplib"}));
    assert_eq!(r["core"]["bearer_username"], "alice");
    assert_eq!(r["core"]["wrong_token_refused"], true);
    assert_eq!(r["core"]["blob_roundtrip"], true);
    assert_eq!(r["core"]["download_type"], "text/plain; charset=utf-8");
    assert_eq!(r["core"]["blob_copied_to_other_account"], true);
    assert_eq!(r["core"]["eventsource_saw_email"], true);
    assert_eq!(r["core"]["push_subscription"], true);
    assert_eq!(r["core"]["push_subscription_encrypted"], true);
    assert_eq!(r["mail"]["imap_list_after_create"], true);
    assert_eq!(r["mail"]["imap_lsub_after_create"], true);
    assert_eq!(r["mail"]["imap_list_after_rename"], true);
    assert_eq!(r["mail"]["imap_list_after_destroy"], true);
    assert_eq!(r["mail"]["changes_created"], 1);
    assert_eq!(r["mail"]["imported_in_imap"], true);
    assert_eq!(r["mail"]["copied_in_other_imap"], true);
    assert_eq!(r["submission"]["delivered_into_inbox"], true);
    assert_eq!(r["submission"]["draft_keyword_cleared"], true);
    assert_eq!(r["submission"]["implicit_email_set"], 1);
    assert_eq!(r["submission"]["smtp_reply"], "250");
    assert_eq!(r["submission"]["canceled_kept_draft"], true);
    assert_eq!(r["websocket"]["push_saw_email"], true);
    assert_eq!(r["sieve"]["flagged_at_delivery"], true);
    assert_eq!(r["vacationresponse"]["set_and_read_back"], true);
    Ok(())
}

/// Waits for the first sync, reads the Session, then runs the script once (bounded).
fn run(
    python: &Path,
    dovecot: &Dovecot,
    port: u16,
    dir: &Path,
    config: &Path,
) -> Result<(serde_json::Value, serde_json::Value)> {
    let start = Instant::now();
    let session = loop {
        match session(python, port, dovecot.ca_file()) {
            // ManageSieve is tried at account start: the script reads the Session once,
            // so it waits for what the engine finds there.
            Ok(s)
                if s["accounts"].as_object().is_some_and(|a| !a.is_empty())
                    && s["capabilities"]["urn:ietf:params:jmap:sieve"].is_object() =>
            {
                break s;
            }
            Ok(_) | Err(_) if start.elapsed() < Duration::from_secs(30) => {
                std::thread::sleep(Duration::from_millis(200));
            }
            Ok(s) => bail!("the Session never listed the account: {s}"),
            Err(e) => return Err(e.context("tidings serve never answered the Session")),
        }
    };
    // An API token (`tidings token create`) for jmaplib's BearerAuth, once the store is up.
    let token = Command::new(env!("CARGO_BIN_EXE_tidings"))
        .args(["token", "create", "--user", "alice", "--config"])
        .arg(config)
        .output()?;
    let token = String::from_utf8(token.stdout)?.trim().to_string();
    if !token.starts_with("tid_") {
        bail!("tidings token create gave no token");
    }
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/jmaplib/jmaplib_check.py");
    let mut child = Command::new(python)
        .arg(&script)
        .env(
            "JMAP_URL",
            format!("https://127.0.0.1:{port}/.well-known/jmap"),
        )
        .env("JMAP_CA_FILE", dovecot.ca_file())
        .env("JMAP_USER", "alice")
        .env("JMAP_PASSWORD", "pw")
        .env("JMAP_TOKEN", &token)
        .env("MAIL_ADDRESS", USER)
        .env("IMAP_PORT", dovecot.imaps_port().to_string())
        .env("IMAP_PASSWORD", PASS)
        .env("OTHER_ADDRESS", OTHER)
        .env("OTHER_PASSWORD", OTHER_PASS)
        .env("IMAP_CA_FILE", dovecot.ca_file())
        .env("LMTP_PORT", dovecot.lmtp_port().to_string())
        // Files, not pipes: nothing reads a pipe while the script runs.
        .stdout(std::fs::File::create(dir.join("script.out"))?)
        .stderr(std::fs::File::create(dir.join("script.err"))?)
        .spawn()?;
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if started.elapsed() > SCRIPT_DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "jmaplib_check.py ran past {SCRIPT_DEADLINE:?}:\n{}{}",
                std::fs::read_to_string(dir.join("script.out")).unwrap_or_default(),
                std::fs::read_to_string(dir.join("script.err")).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let stdout = std::fs::read_to_string(dir.join("script.out"))?;
    let stderr = std::fs::read_to_string(dir.join("script.err"))?;
    let summary: serde_json::Value = serde_json::from_str(stdout.trim()).with_context(|| {
        format!("the script printed no JSON summary:\n{stdout}\n--- stderr ---\n{stderr}")
    })?;
    if !status.success() {
        bail!(
            "jmaplib_check.py failed: {}\n--- stderr ---\n{stderr}",
            serde_json::to_string_pretty(&summary)?
        );
    }
    Ok((session, summary))
}
