//! Adding an account from the browser, end to end: Debian's headless Chromium driven by
//! playwright-core (`web/e2e/accounts.mjs`) against a real `tidings serve` whose user has
//! no account yet, with the private Dovecot and Postfix as the mail servers. The browser
//! finds settings, fails with a wrong password, adds the account, watches its sync
//! progress bar fill, renames and removes it.
//!
//! Needs `web/dist` (embedded at compile time), `web/node_modules` and `/usr/bin/chromium`.

use anyhow::{Context, Result, bail};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use testkit::{Dovecot, DovecotOptions, Smtp, corpus};

const MAIL_USER: &str = "alice@example.org";
const MAIL_PASSWORD: &str = "imap-pw";
/// Enough mail that the first sync takes a moment, so the progress bar can be seen
/// before it is complete.
const MESSAGES: usize = 1500;

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn web_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../web")
}

fn chromium() -> PathBuf {
    std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

fn prerequisites() -> Result<()> {
    let web = web_dir();
    if !web.join("dist/index.html").exists() || !web.join("node_modules/playwright-core").exists() {
        bail!("web/dist or web/node_modules is missing: run `npm ci && npm run build` in web/");
    }
    if !chromium().exists() {
        bail!(
            "{} is missing: install Debian's chromium",
            chromium().display()
        );
    }
    Ok(())
}

/// Runs the browser script with `env`, bounded in time; kills it when over.
fn run_script(env: &[(&str, String)], limit: Duration) -> Result<()> {
    let web = web_dir();
    let artifacts = std::env::var_os("CARGO_TARGET_DIR")
        .map(|t| PathBuf::from(t).join("accounts-e2e"))
        .unwrap_or_else(|| web.join("test-results"));
    let mut cmd = Command::new("node");
    cmd.arg("e2e/accounts.mjs")
        .current_dir(&web)
        .env("CHROMIUM", chromium())
        .env("ARTIFACTS", &artifacts)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().context("starting node")?;
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break s;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            bail!("the browser run took longer than {} s", limit.as_secs());
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut out = String::new();
    if let Some(mut o) = child.stdout.take() {
        use std::io::Read;
        o.read_to_string(&mut out)?;
    }
    if !status.success() || !out.contains("DONE") {
        bail!("the browser checks failed (see [accounts-e2e] lines above)");
    }
    eprintln!("screenshots in {}", artifacts.display());
    Ok(())
}

struct Serve {
    child: std::process::Child,
    log: PathBuf,
}

impl Serve {
    fn start(dir: &std::path::Path, config_text: &str) -> Result<Serve> {
        let config = dir.join("t.toml");
        std::fs::write(&config, config_text)?;
        let log = dir.join("serve.log");
        let child = Command::new(env!("CARGO_BIN_EXE_tidings"))
            .args(["serve", "--config"])
            .arg(&config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(&log)?))
            .spawn()?;
        Ok(Serve { child, log })
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn add_an_account_in_headless_chromium() -> Result<()> {
    prerequisites()?;
    let dovecot = Dovecot::start(DovecotOptions::default())?;
    dovecot.add_user(MAIL_USER, MAIL_PASSWORD)?;
    dovecot.seed_corpus(
        MAIL_USER,
        &corpus::generate(7, MESSAGES, &["INBOX", "Archive"]),
    )?;
    let smtp = Smtp::start(&dovecot)?;
    let dir = tempfile::tempdir()?;
    let port = free_port()?;
    let serve = Serve::start(
        dir.path(),
        &format!(
            "listen = \"127.0.0.1:{port}\"\ndata_dir = \"{}\"\nkey_file = \"{}\"\n\
             setup_ca_file = \"{}\"\n\
             [[user]]\nname = \"alice\"\npassword = \"pw\"\n",
            dir.path().join("data").display(),
            dir.path().join("key/k").display(),
            dovecot.ca_file().display(),
        ),
    )?;
    let outcome = run_script(
        &[
            ("TIDINGS_URL", format!("http://127.0.0.1:{port}")),
            ("TIDINGS_USER", "alice".into()),
            ("TIDINGS_PASSWORD", "pw".into()),
            ("MAIL_USER", MAIL_USER.into()),
            ("MAIL_PASSWORD", MAIL_PASSWORD.into()),
            ("IMAPS_PORT", dovecot.imaps_port().to_string()),
            ("SMTPS_PORT", smtp.submissions_port().to_string()),
        ],
        Duration::from_secs(300),
    );
    if outcome.is_err() {
        eprintln!("server log:\n{}", serve.log());
    }
    outcome?;
    // Neither the right nor the wrong password reached the log.
    let log = serve.log();
    if log.contains(MAIL_PASSWORD) || log.contains("not-the-password") {
        bail!("a password is in the server log");
    }
    // The password reached the store encrypted: the clear text is nowhere in it.
    let db = std::fs::read(dir.path().join("data/tidings.sqlite"))?;
    if db
        .windows(MAIL_PASSWORD.len())
        .any(|w| w == MAIL_PASSWORD.as_bytes())
    {
        bail!("the mail password is stored in clear text");
    }
    Ok(())
}

/// "Sign in with …" in the browser: oidc-provider's development login and consent pages,
/// back to Tidings, an OAuth2 account stored and syncing from a Dovecot that accepts the
/// provider's tokens.
#[test]
fn sign_in_with_an_oauth_provider_in_headless_chromium() -> Result<()> {
    use testkit::DovecotOAuth2;
    use testkit::oidc::{AuthServer, AuthServerOptions, CLIENT_ID, CLIENT_SECRET};
    prerequisites()?;
    let port = free_port()?;
    let auth = AuthServer::start_for_sign_in(
        AuthServerOptions::default(),
        &[format!("http://127.0.0.1:{port}/web/oauth/callback")],
    )?;
    let dovecot = Dovecot::start(DovecotOptions {
        oauth2: Some(DovecotOAuth2::new(auth.introspection_url())),
        ..DovecotOptions::default()
    })?;
    dovecot.add_user(MAIL_USER, "unused with tokens")?;
    const SUBJECT: &str = "Signed in with a token";
    dovecot.deliver(
        MAIL_USER,
        &corpus::message("carol@example.org", MAIL_USER, SUBJECT, "hello"),
    )?;
    let dir = tempfile::tempdir()?;
    let serve = Serve::start(
        dir.path(),
        &format!(
            "listen = \"127.0.0.1:{port}\"\ndata_dir = \"{}\"\nkey_file = \"{}\"\n\
             setup_ca_file = \"{}\"\n\
             [[user]]\nname = \"alice\"\npassword = \"pw\"\n\
             [[oauth_provider]]\nname = \"test\"\nissuer = \"{}\"\nclient_id = \"{CLIENT_ID}\"\n\
             client_secret = \"{CLIENT_SECRET}\"\nscopes = [\"openid\", \"email\", \"offline_access\"]\n\
             imap_host = \"127.0.0.1\"\nimap_port = {}\n",
            dir.path().join("data").display(),
            dir.path().join("key/k").display(),
            dovecot.ca_file().display(),
            auth.issuer(),
            dovecot.imaps_port(),
        ),
    )?;
    let outcome = run_script(
        &[
            ("E2E_STEP", "oauth".into()),
            ("TIDINGS_URL", format!("http://127.0.0.1:{port}")),
            ("TIDINGS_USER", "alice".into()),
            ("TIDINGS_PASSWORD", "pw".into()),
            ("OAUTH_PROVIDER", "test".into()),
            ("OAUTH_USER", MAIL_USER.into()),
            ("OAUTH_SUBJECT", SUBJECT.into()),
        ],
        Duration::from_secs(240),
    );
    if outcome.is_err() {
        eprintln!("server log:\n{}", serve.log());
    }
    outcome
}
