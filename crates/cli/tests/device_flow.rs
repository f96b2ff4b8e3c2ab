//! `tidings account add --auth oauth2` signing in with the device authorization grant
//! (RFC 8628), against a real authorization server (oidc-provider with its device flow
//! and development login pages, driven over HTTP as a person's browser would) and a
//! Dovecot that introspects every token: approved, the account is stored and syncs (with
//! `--device-flow`, and by default on a terminal);
//! declined or expired, the command says so and nothing is stored.

use anyhow::{Context, Result, bail};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use store::SqliteStore;
use store::prelude::*;
use testkit::oidc::{AuthServer, AuthServerOptions, CLIENT_ID, CLIENT_SECRET};
use testkit::{Dovecot, DovecotOAuth2, DovecotOptions, corpus};

const ALICE: &str = "alice@example.org";
const DEADLINE: Duration = Duration::from_secs(30);

struct Setup {
    auth: AuthServer,
    dovecot: Dovecot,
    dir: tempfile::TempDir,
    config: PathBuf,
}

fn setup(device_code_ttl: Option<Duration>) -> Result<Setup> {
    let auth = AuthServer::start(AuthServerOptions {
        device_flow: true,
        device_code_ttl,
        ..Default::default()
    })?;
    let dovecot = Dovecot::start(DovecotOptions {
        oauth2: Some(DovecotOAuth2::new(auth.introspection_url())),
        ..DovecotOptions::default()
    })?;
    dovecot.add_user(ALICE, "unused")?;
    dovecot.deliver(
        ALICE,
        &corpus::message("b@example.org", ALICE, "Hello", "x"),
    )?;
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("t.toml");
    // Only the issuer: discovery names the device authorization endpoint.
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = \"data\"\nkey_file = \"key/secret.key\"\n\
             [[user]]\nname = \"alice\"\npassword = \"pw\"\n\
             [[oauth_provider]]\nname = \"test\"\nissuer = \"{}\"\nclient_id = \"{CLIENT_ID}\"\n\
             client_secret = \"{CLIENT_SECRET}\"\n",
            auth.issuer(),
        ),
    )?;
    let s = Setup {
        auth,
        dovecot,
        dir,
        config,
    };
    let out = run(&["user", "add", "alice"], &s.config, Some("pw"))?;
    if !out.status.success() {
        bail!("user add: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(s)
}

fn run(args: &[&str], config: &Path, stdin: Option<&str>) -> Result<std::process::Output> {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_tidings"))
        .args(args)
        .arg("--config")
        .arg(config)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    {
        let mut input = child.stdin.take().context("stdin")?;
        if let Some(s) = stdin {
            writeln!(input, "{s}")?;
        }
    }
    Ok(child.wait_with_output()?)
}

/// `tidings account add --device-flow` running, its stderr read line by line.
struct Adding {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Adding {
    /// `--device-flow` with stdin not a terminal; with `terminal`, without the flag on a
    /// pseudo-terminal (util-linux `script`), whose output carries what the command says.
    fn start(s: &Setup) -> Result<Adding> {
        Self::spawn(s, false)
    }

    fn spawn(s: &Setup, terminal: bool) -> Result<Adding> {
        let port = s.dovecot.imap_port().to_string();
        let ca = s.dovecot.ca_file().display().to_string();
        let args = [
            "account",
            "add",
            "--user",
            "alice",
            "--name",
            "work",
            "--host",
            "127.0.0.1",
            "--port",
            &port,
            "--security",
            "starttls",
            "--username",
            ALICE,
            "--ca-file",
            &ca,
            "--auth",
            "oauth2",
            "--oauth-provider",
            "test",
            "--config",
        ];
        let mut child = if terminal {
            let cmd = format!(
                "{} {} {}",
                env!("CARGO_BIN_EXE_tidings"),
                args.join(" "),
                s.config.display()
            );
            Command::new("script")
                .args(["-qec", &cmd, "/dev/null"])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .context("util-linux `script` gives the command a terminal")?
        } else {
            Command::new(env!("CARGO_BIN_EXE_tidings"))
                .args(args)
                .arg(&s.config)
                .arg("--device-flow")
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()?
        };
        // On the terminal everything comes through `script`'s stdout.
        let stderr: Box<dyn std::io::Read + Send> = if terminal {
            Box::new(child.stdout.take().context("stdout")?)
        } else {
            Box::new(child.stderr.take().context("stderr")?)
        };
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Adding {
            child,
            lines,
            seen: Vec::new(),
        })
    }

    /// The user code the command printed (once it says it is waiting for the sign-in).
    fn user_code(&mut self) -> Result<String> {
        let start = Instant::now();
        let mut code = None;
        while let Some(left) = DEADLINE.checked_sub(start.elapsed()) {
            let Ok(line) = self.lines.recv_timeout(left) else {
                break;
            };
            self.seen.push(line.clone());
            let line = line.trim_end_matches('\r');
            if let Some((_, c)) = line.split_once("enter the code ") {
                code = Some(c.trim().to_string());
            }
            if line.trim_start().starts_with("Waiting for the sign-in")
                && let Some(c) = code
            {
                return Ok(c);
            }
        }
        bail!("no user code printed; stderr: {:?}", self.seen)
    }

    /// Waits (bounded) for the command to end; its success and everything it wrote on
    /// stderr.
    fn finish(mut self) -> Result<(bool, String, String)> {
        let start = Instant::now();
        let status = loop {
            if let Some(st) = self.child.try_wait()? {
                break st;
            }
            if start.elapsed() > DEADLINE {
                let _ = self.child.kill();
                let _ = self.child.wait();
                bail!("the command did not end; stderr: {:?}", self.seen);
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(2)) {
            self.seen.push(line);
        }
        let mut stdout = String::new();
        if let Some(mut out) = self.child.stdout.take() {
            std::io::Read::read_to_string(&mut out, &mut stdout)?;
        }
        Ok((status.success(), stdout, self.seen.join("\n")))
    }
}

async fn accounts(s: &Setup) -> Result<usize> {
    let store = SqliteStore::open(&s.dir.path().join("data/tidings.sqlite"))?;
    Ok(store.list_accounts().await?.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_sign_in_stores_the_account_and_it_syncs() -> Result<()> {
    let s = setup(None)?;
    let mut adding = Adding::start(&s)?;
    let code = adding.user_code()?;
    let printed = adding.seen.join("\n");
    assert!(
        printed.contains(&format!("open {}/device", s.auth.issuer())),
        "{printed}"
    );
    assert!(
        printed.contains("user_code="),
        "the complete address: {printed}"
    );
    // A few polls answered authorization_pending first.
    std::thread::sleep(Duration::from_millis(1500));
    s.auth.approve_device(&code, ALICE)?;
    let (ok, stdout, stderr) = adding.finish()?;
    assert!(ok, "{stderr}");
    assert!(stdout.contains("account work added"), "{stdout}");
    assert!(stderr.contains("Signed in."), "{stderr}");

    // The stored refresh token logs in to Dovecot (OAUTHBEARER / XOAUTH2) and syncs.
    let out = run(&["account", "sync"], &s.config, None)?;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("alice/work") && text.contains("1 new"),
        "{text}"
    );
    let store = SqliteStore::open(&s.dir.path().join("data/tidings.sqlite"))?;
    let a = store.list_accounts().await?;
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].auth.as_str(), "oauth2");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declined_sign_in_says_so_and_stores_nothing() -> Result<()> {
    let s = setup(None)?;
    let mut adding = Adding::start(&s)?;
    let code = adding.user_code()?;
    s.auth.deny_device(&code)?;
    let (ok, _, stderr) = adding.finish()?;
    assert!(!ok, "must fail");
    assert!(stderr.contains("declined"), "{stderr}");
    assert_eq!(accounts(&s).await?, 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_code_says_so_and_stores_nothing() -> Result<()> {
    let s = setup(Some(Duration::from_secs(3)))?;
    let mut adding = Adding::start(&s)?;
    adding.user_code()?;
    let started = Instant::now();
    let (ok, _, stderr) = adding.finish()?;
    assert!(!ok, "must fail");
    assert!(stderr.contains("expired"), "{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "bounded by expires_in"
    );
    assert_eq!(accounts(&s).await?, 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_terminal_the_device_sign_in_is_the_default() -> Result<()> {
    let s = setup(None)?;
    let mut adding = Adding::spawn(&s, true)?;
    let code = adding.user_code()?;
    s.auth.approve_device(&code, ALICE)?;
    let (ok, _, output) = adding.finish()?;
    assert!(ok, "{output}");
    assert!(output.contains("account work added"), "{output}");
    assert_eq!(accounts(&s).await?, 1);
    Ok(())
}
