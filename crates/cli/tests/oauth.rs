//! OAuth2 accounts through the `tidings` binary, against a real authorization server
//! (oidc-provider) and a Dovecot that introspects every token: a config account with a
//! `refresh_token_file`, `tidings account add --auth oauth2` with the token on stdin, and
//! a terminal on stdin without the provider's configuration refused. Tokens never reach
//! the log or the store in clear.

use anyhow::{Context, Result, bail};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use store::SqliteStore;
use store::prelude::*;
use testkit::oidc::{AuthServer, AuthServerOptions, CLIENT_ID, CLIENT_SECRET};
use testkit::{Dovecot, DovecotOAuth2, DovecotOptions, corpus};

const ALICE: &str = "alice@example.org";
const DEADLINE: Duration = Duration::from_secs(30);

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

struct Setup {
    auth: AuthServer,
    dovecot: Dovecot,
    dir: tempfile::TempDir,
    config: PathBuf,
}

/// An auth server, a Dovecot trusting it, and a config with the provider, the user
/// "alice" and `accounts` (TOML) appended.
fn setup(
    mut accounts: impl FnMut(&AuthServer, &Dovecot, &Path) -> Result<String>,
) -> Result<Setup> {
    let auth = AuthServer::start(AuthServerOptions::default())?;
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
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = \"data\"\nkey_file = \"key/secret.key\"\n\
             [[user]]\nname = \"alice\"\npassword = \"pw\"\n\
             [[oauth_provider]]\nname = \"test\"\nissuer = \"{}\"\nclient_id = \"{CLIENT_ID}\"\n\
             client_secret = \"{CLIENT_SECRET}\"\n{}",
            auth.issuer(),
            accounts(&auth, &dovecot, dir.path())?
        ),
    )?;
    Ok(Setup {
        auth,
        dovecot,
        dir,
        config,
    })
}

fn account_toml(d: &Dovecot, name: &str) -> String {
    format!(
        "[[account]]\nuser = \"alice\"\nname = \"{name}\"\nkind = \"imap\"\nhost = \"127.0.0.1\"\n\
         port = {}\nsecurity = \"starttls\"\nusername = \"{ALICE}\"\nca_file = \"{}\"\n\
         auth = \"oauth2\"\noauth_provider = \"test\"\n",
        d.imap_port(),
        d.ca_file().display()
    )
}

fn tidings(args: &[&str], config: &Path, stdin: Option<&str>) -> Result<Output> {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_account_with_a_refresh_token_file_syncs_and_no_token_is_logged() -> Result<()> {
    let mut rt = String::new();
    let s = setup(|auth, d, dir| {
        rt = auth.mint_refresh_token(ALICE, CLIENT_ID)?;
        std::fs::write(dir.join("alice.token"), format!("{rt}\n"))?;
        Ok(format!(
            "{}refresh_token_file = \"alice.token\"\n",
            account_toml(d, "work")
        ))
    })?;
    let log_path = s.dir.path().join("serve.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_tidings"))
        .args(["serve", "--config"])
        .arg(&s.config)
        .env("RUST_LOG", "trace")
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(&log_path)?))
        .spawn()?;
    let db = s.dir.path().join("data/tidings.sqlite");
    let start = Instant::now();
    let result = async {
        loop {
            if start.elapsed() > DEADLINE {
                bail!("the OAuth2 account never synced");
            }
            if db.exists() {
                let store = SqliteStore::open(&db)?;
                if let Some(a) = store.list_accounts().await?.first()
                    && a.status.name() == "ok"
                {
                    let mailboxes = store.mailboxes(a.id).await?;
                    let inbox = mailboxes
                        .iter()
                        .find(|m| m.name == "INBOX")
                        .context("INBOX")?;
                    assert_eq!(store.mailbox_messages(inbox.id).await?.len(), 1);
                    return Ok(());
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    .await;
    let _ = child.kill();
    let _ = child.wait();
    result?;
    let log = std::fs::read(&log_path)?;
    assert!(!contains(&log, &rt), "the refresh token is in the log");
    assert!(
        !contains(&log, CLIENT_SECRET),
        "the client secret is in the log"
    );
    assert!(!contains(&log, "Bearer "), "a bearer token is in the log");
    let db_bytes = std::fs::read(&db)?;
    assert!(
        !contains(&db_bytes, &rt),
        "the refresh token is stored in clear"
    );
    drop(s.auth);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_add_takes_the_refresh_token_on_stdin() -> Result<()> {
    let s = setup(|_, _, _| Ok(String::new()))?;
    let rt = s.auth.mint_refresh_token(ALICE, CLIENT_ID)?;
    let port = s.dovecot.imap_port().to_string();
    let ca = s.dovecot.ca_file().display().to_string();
    let add = |name: &str, provider: &str, token: &str| {
        tidings(
            &[
                "account",
                "add",
                "--user",
                "alice",
                "--name",
                name,
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
                provider,
            ],
            &s.config,
            Some(token),
        )
    };
    // Config users reach the store when the server starts; here there is no server.
    let out = tidings(&["user", "add", "alice"], &s.config, Some("pw"))?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // An unknown provider is refused before anything is stored.
    let out = add("bad", "nope", &rt)?;
    assert!(!out.status.success());
    assert!(
        contains(&out.stderr, "nope"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = add("work", "test", &rt)?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A one-shot sync logs in with a token of that refresh token.
    let out = tidings(&["account", "sync"], &s.config, None)?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        contains(&out.stdout, "alice/work"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        contains(&out.stdout, "1 new"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let store = SqliteStore::open(&s.dir.path().join("data/tidings.sqlite"))?;
    let accounts = store.list_accounts().await?;
    assert_eq!(accounts.len(), 1);
    assert_eq!(accounts[0].auth.as_str(), "oauth2");
    assert_eq!(accounts[0].auth.provider(), "test");
    Ok(())
}

/// On a terminal the account signs in with the device flow (crates/cli/tests/device_flow.rs);
/// that needs the provider's configuration, which a bare data dir does not have.
#[test]
fn account_add_on_a_terminal_without_a_config_says_what_signing_in_needs() -> Result<()> {
    // `script` gives the command a pseudo-terminal as stdin.
    if Command::new("script").arg("--version").output().is_err() {
        bail!("util-linux `script` is needed to give the command a terminal");
    }
    let dir = tempfile::tempdir()?;
    let cmd = format!(
        "{} account add --user alice --name n --host 127.0.0.1 --port 1 --username u \
         --auth oauth2 --oauth-provider test --data-dir {} --key-file {}",
        env!("CARGO_BIN_EXE_tidings"),
        dir.path().join("data").display(),
        dir.path().join("key").display(),
    );
    let out = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .stdin(Stdio::null())
        .output()?;
    assert!(!out.status.success(), "must exit non-zero");
    assert!(
        contains(&out.stdout, "signing in needs --config"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    Ok(())
}
