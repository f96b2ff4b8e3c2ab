//! What the web client's browser tests share: the checks that the built client, its node
//! modules and Chromium are there, a `tidings serve` on a free loopback port, and the run
//! of one `web/e2e/*.mjs` script under a time limit, answering the requests it prints.
//!
//! A script prints one request a line on its stdout (`DELIVER …`, `FLAGGED …`) and reads
//! `OK` or `NO` back on its stdin; `DONE` ends a run whose checks all passed. Anything
//! else it says goes to stderr.

#![allow(dead_code)] // each test binary uses its own part of it

use anyhow::{Context, Result, bail};
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

pub fn web_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../web")
}

pub fn chromium() -> PathBuf {
    std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

/// Fails, saying how to get it, when the built client, one of `modules` in
/// `web/node_modules` or Chromium is missing (`./scripts/test` provides all three).
pub fn prerequisites(modules: &[&str]) -> Result<()> {
    let web = web_dir();
    if !web.join("dist/index.html").exists() {
        bail!("web/dist is missing: run `npm ci && npm run build` in web/ (./scripts/test does)");
    }
    for m in modules {
        if !web.join("node_modules").join(m).exists() {
            bail!("web/node_modules/{m} is missing: run `npm ci` in web/ (./scripts/test does)");
        }
    }
    if !chromium().exists() {
        bail!(
            "{} is missing: install Debian's chromium (./scripts/test does)",
            chromium().display()
        );
    }
    Ok(())
}

/// Where a run keeps its screenshots: under the target dir, else `web/test-results`.
pub fn artifacts(name: &str) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(|t| PathBuf::from(t).join(name))
        .unwrap_or_else(|| web_dir().join("test-results"))
}

/// A `tidings serve` on a free loopback port, its data in a temporary directory, its log
/// in `serve.log` there at `WEB_E2E_LOG`'s level (`warn` by default). Stopped when dropped.
pub struct Serve {
    child: Child,
    dir: tempfile::TempDir,
    pub port: u16,
}

impl Serve {
    /// `config` is the configuration after `listen`, `data_dir` and `key_file`: top-level
    /// settings first, then the `[[user]]` and `[[account]]` tables.
    pub fn start(config: &str) -> Result<Serve> {
        let dir = tempfile::tempdir()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let path = dir.path().join("t.toml");
        std::fs::write(
            &path,
            format!(
                "listen = \"127.0.0.1:{port}\"\ndata_dir = \"{}\"\nkey_file = \"{}\"\n{config}",
                dir.path().join("data").display(),
                dir.path().join("key/k").display(),
            ),
        )?;
        let log = std::fs::File::create(dir.path().join("serve.log"))?;
        let child = Command::new(env!("CARGO_BIN_EXE_tidings"))
            .args(["serve", "--config"])
            .arg(&path)
            .env(
                "RUST_LOG",
                std::env::var("WEB_E2E_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .context("starting tidings serve")?;
        Ok(Serve { child, dir, port })
    }

    /// The configuration file, for the CLI's other commands.
    pub fn config(&self) -> PathBuf {
        self.dir.path().join("t.toml")
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// What the server logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("serve.log")).unwrap_or_default()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `node e2e/<script>` in `web/` with `env` (plus `CHROMIUM`), killed past `limit`.
/// Each line the script prints is handed to `answer`: `Ok` sends `OK` back, an error
/// `NO` and fails the run with it. The run passes when the script said `DONE` and exited
/// with success.
pub fn run_script(
    script: &str,
    env: &[(&str, OsString)],
    limit: Duration,
    mut answer: impl FnMut(&str) -> Result<()>,
) -> Result<()> {
    let mut cmd = Command::new("node");
    cmd.arg(format!("e2e/{script}"))
        .current_dir(web_dir())
        .env("CHROMIUM", chromium())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut node = cmd.spawn().context("starting node")?;
    let pid = node.id();
    // A watchdog: the whole browser run is bounded.
    let finished = Arc::new(AtomicBool::new(false));
    let watchdog = {
        let finished = finished.clone();
        std::thread::spawn(move || {
            let start = Instant::now();
            while !finished.load(Ordering::Relaxed) {
                if start.elapsed() > limit {
                    let _ = Command::new("kill").arg(pid.to_string()).status();
                    return true;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            false
        })
    };
    let mut stdin = node.stdin.take().context("node stdin")?;
    let stdout = BufReader::new(node.stdout.take().context("node stdout")?);
    let mut done = false;
    let mut outcome: Result<()> = Ok(());
    for line in stdout.lines() {
        let line = line?;
        if line == "DONE" {
            done = true;
            continue;
        }
        match answer(&line) {
            Ok(()) => writeln!(stdin, "OK")?,
            Err(e) => {
                writeln!(stdin, "NO")?;
                if outcome.is_ok() {
                    outcome = Err(e);
                }
            }
        }
    }
    let status = node.wait()?;
    finished.store(true, Ordering::Relaxed);
    let killed = watchdog.join().unwrap_or(false);
    outcome?;
    if killed {
        bail!("the browser run took longer than {} s", limit.as_secs());
    }
    if !status.success() || !done {
        bail!("the browser checks failed (see the script's lines above)");
    }
    Ok(())
}

/// `path` as an environment value.
pub fn os(path: &Path) -> OsString {
    path.as_os_str().to_owned()
}
