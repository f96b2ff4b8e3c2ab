//! A private PostgreSQL on a free loopback port, for the store's PostgreSQL backend tests.
//!
//! `initdb` into a temporary directory (no fsync: nothing here must survive a crash),
//! trust authentication on loopback and on its own Unix socket directory only, then the
//! server as a child process. PostgreSQL refuses to run as root, so as root it runs as
//! the Debian `postgres` user (`nobody` where that user does not exist), which owns the
//! directory; as an ordinary user it runs as that user.
//!
//! Each test takes a database of its own ([`Postgres::fresh_database`]), so the tests of
//! one binary can share one server ([`Postgres::shared`]): `initdb` costs a second or
//! two, `CREATE DATABASE` a few milliseconds.
//!
//! The server runs under a small `sh` watchdog whose standard input is a pipe from this
//! process: when the pipe closes (the value is dropped, or the test process exits in any
//! way, `kill -9` included) the watchdog stops the server (SIGQUIT, PostgreSQL's
//! immediate shutdown) and removes the directory. A process-wide [`Postgres::shared`]
//! server, never dropped, is cleaned up that way too.

use crate::dovecot::{group_alive, passwd_entries, signal};
use anyhow::{Context, Result, anyhow, bail};
use std::fs;
use std::io::Write;
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// How long `initdb`, a start or a stop may take (initdb on a loaded 2-core machine takes
/// a few seconds).
const DEADLINE: Duration = Duration::from_secs(60);
const START_ATTEMPTS: usize = 3;
/// The superuser `initdb` creates; every test connects as it.
const SUPERUSER: &str = "postgres";

/// Runs the server (`$@`) in the background and waits for it; a second background job
/// reads the test process's pipe (fd 3: a background job's own stdin is /dev/null) and,
/// at its end of file, stops the server and removes the directory (`$1`). The server's
/// output goes to `$1/postgres.log`.
const WATCHDOG: &str = r#"exec 3<&0
dir=$1; shift
"$@" </dev/null >>"$dir/postgres.log" 2>&1 &
pid=$!
(
    read -r _ <&3
    kill -QUIT "$pid" 2>/dev/null
    i=0
    while kill -0 "$pid" 2>/dev/null && [ "$i" -lt 200 ]; do sleep 0.05; i=$((i + 1)); done
    kill -KILL "$pid" 2>/dev/null
    rm -rf "$dir"
) &
wait "$pid"
"#;

/// A running private PostgreSQL. Dropping it stops the server and removes its directory.
#[derive(Debug)]
pub struct Postgres {
    /// The watchdog shell (the server's parent), leader of its own process group.
    child: Option<Child>,
    /// The watchdog's pipe: closing it stops the server.
    pipe: Option<ChildStdin>,
    port: u16,
    dir: PathBuf,
    bin: PathBuf,
    /// The numbers of the databases handed out so far.
    databases: AtomicU32,
    /// The pipes of watchdogs whose server was stopped by [`Postgres::restart`]: each
    /// would remove the directory when its pipe closes, so they stay open until the drop.
    retired: Vec<ChildStdin>,
}

impl Postgres {
    /// Creates a cluster in a new temporary directory and starts it on a free loopback
    /// port; returns once it accepts connections.
    pub fn start() -> Result<Postgres> {
        let bin = bin_dir()?;
        let owner = Owner::detect()?;
        let dir = tempfile::Builder::new()
            .prefix("tdpg-")
            .tempdir_in("/tmp")
            .context("creating the PostgreSQL dir")?
            .keep();
        let mut pg = Postgres {
            child: None,
            pipe: None,
            port: 0,
            dir,
            bin,
            databases: AtomicU32::new(0),
            retired: Vec::new(),
        };
        owner.chown(&pg.dir)?;
        let sockets = pg.socket_dir();
        fs::create_dir(&sockets).context("creating the socket dir")?;
        owner.chown(&sockets)?;
        pg.initdb(&owner)?;
        let mut last = None;
        for _ in 0..START_ATTEMPTS {
            pg.port = free_port()?;
            match pg.spawn(&owner) {
                Ok(()) => return Ok(pg),
                // Another process took the port between our probe and the server's bind.
                Err(e) if format!("{e:#}").contains("could not bind") => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow!("no start attempt")))
    }

    /// One server for the whole test process, started at the first call. It is stopped
    /// and removed when the process exits (see the module documentation).
    pub fn shared() -> Result<&'static Postgres> {
        static SHARED: OnceLock<std::result::Result<Postgres, String>> = OnceLock::new();
        SHARED
            .get_or_init(|| Postgres::start().map_err(|e| format!("{e:#}")))
            .as_ref()
            .map_err(|e| anyhow!("starting the shared PostgreSQL: {e}"))
    }

    /// The TCP port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The directory of its Unix socket (`host=` of a libpq connection string).
    pub fn socket_dir(&self) -> PathBuf {
        self.dir.join("sock")
    }

    /// A `postgres://` URL of database `name` as the superuser, over loopback TCP.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://{SUPERUSER}@127.0.0.1:{}/{name}", self.port)
    }

    /// Creates a new, empty database and returns its URL: one per test, so tests sharing
    /// a server see nothing of each other.
    pub fn fresh_database(&self) -> Result<String> {
        let n = self.databases.fetch_add(1, Ordering::Relaxed);
        let name = format!("tidings_{n}");
        self.psql("postgres", &format!("CREATE DATABASE {name}"))?;
        Ok(self.url(&name))
    }

    /// Runs SQL through `psql` in database `db` and returns what it printed (unaligned,
    /// tuples only): for checks from outside the code under test.
    pub fn psql(&self, db: &str, sql: &str) -> Result<String> {
        let out = Command::new(self.bin.join("psql"))
            .args([
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
            ])
            .arg("-p")
            .arg(self.port.to_string())
            .args(["-U", SUPERUSER, "-d", db, "-c", sql])
            .env_remove("PGPASSWORD")
            .stdin(Stdio::null())
            .output()
            .context("running psql")?;
        if !out.status.success() {
            bail!(
                "psql failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// Stops the server the way an administrator's restart does (a fast shutdown: every
    /// client's connection is closed) and starts it again on the same port and data.
    pub fn restart(&mut self) -> Result<()> {
        self.stop()?;
        self.start_again()
    }

    /// Starts the server again after [`Postgres::stop`], on the same port and data.
    pub fn start_again(&mut self) -> Result<()> {
        self.spawn(&Owner::detect()?)
    }

    /// Stops the server with a fast shutdown (every client's connection is closed) and
    /// returns once it exited; [`Postgres::start_again`] starts it again.
    pub fn stop(&mut self) -> Result<()> {
        let pid = fs::read_to_string(self.dir.join("data/postmaster.pid"))
            .context("reading postmaster.pid")?
            .lines()
            .next()
            .and_then(|l| l.trim().parse::<u32>().ok())
            .ok_or_else(|| anyhow!("no pid in postmaster.pid"))?;
        // SIGINT: PostgreSQL's fast shutdown.
        signal(&pid.to_string(), "INT");
        let mut child = self
            .child
            .take()
            .ok_or_else(|| anyhow!("the server is not running"))?;
        let deadline = Instant::now() + DEADLINE;
        // The watchdog shell exits once the server did.
        while child.try_wait().context("waiting for postgres")?.is_none() {
            if Instant::now() >= deadline {
                bail!("postgres did not stop within {DEADLINE:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.retired.extend(self.pipe.take());
        Ok(())
    }

    /// The server's log (its standard error).
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("postgres.log")
    }

    fn initdb(&self, owner: &Owner) -> Result<()> {
        let data = self.dir.join("data");
        let mut cmd = Command::new(self.bin.join("initdb"));
        cmd.arg("-D")
            .arg(&data)
            .args([
                "-U",
                SUPERUSER,
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
            ])
            // The data is thrown away with the directory: no fsync at all.
            .args(["--no-sync", "--no-instructions"])
            .current_dir(&self.dir)
            .stdin(Stdio::null());
        owner.apply(&mut cmd);
        let out = run_bounded(cmd, "initdb")?;
        if !out.status.success() {
            bail!(
                "initdb failed ({}):\n{}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stdout).trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        // Trust on the socket and on loopback only (listen_addresses is 127.0.0.1 too).
        let hba = "local all all trust\nhost all all 127.0.0.1/32 trust\n";
        let path = data.join("pg_hba.conf");
        fs::write(&path, hba).with_context(|| format!("writing {}", path.display()))?;
        owner.chown(&path)
    }

    fn spawn(&mut self, owner: &Owner) -> Result<()> {
        let log_before = fs::metadata(self.log_path()).map(|m| m.len()).unwrap_or(0);
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(WATCHDOG)
            .arg("sh")
            .arg(&self.dir)
            .arg(self.bin.join("postgres"))
            .arg("-D")
            .arg(self.dir.join("data"))
            .arg("-p")
            .arg(self.port.to_string());
        for setting in [
            "listen_addresses=127.0.0.1".to_owned(),
            format!("unix_socket_directories={}", self.socket_dir().display()),
            // Throw-away data: durability buys nothing and costs every commit.
            "fsync=off".to_owned(),
            "synchronous_commit=off".to_owned(),
            "full_page_writes=off".to_owned(),
            // Several test binaries run at once, each with pools of a few connections.
            "max_connections=200".to_owned(),
            "shared_buffers=32MB".to_owned(),
        ] {
            cmd.arg("-c").arg(setting);
        }
        cmd.current_dir(&self.dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0);
        owner.apply(&mut cmd);
        let mut child = cmd.spawn().context("spawning postgres")?;
        self.pipe = child.stdin.take();
        self.child = Some(child);
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(c) = self.child.as_mut()
                && let Some(status) = c.try_wait().context("waiting for postgres")?
            {
                let tail = self.log_tail(log_before);
                self.kill_keeping_dir();
                bail!("postgres exited during startup ({status}):\n{tail}");
            }
            if self.ready() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let tail = self.log_tail(log_before);
                self.kill_keeping_dir();
                bail!(
                    "postgres on port {} not ready after {DEADLINE:?}:\n{tail}",
                    self.port
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether the server accepts connections (`pg_isready`: not merely a bound port, a
    /// server done with its startup and recovery).
    fn ready(&self) -> bool {
        Command::new(self.bin.join("pg_isready"))
            .args([
                "-q",
                "-h",
                "127.0.0.1",
                "-t",
                "1",
                "-U",
                SUPERUSER,
                "-d",
                "postgres",
            ])
            .arg("-p")
            .arg(self.port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Ends a failed start's processes without letting the watchdog remove the directory
    /// (the cluster is started again on another port).
    fn kill_keeping_dir(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pgid = child.id();
            kill_group(pgid);
            let _ = child.wait();
        }
        self.pipe = None;
    }

    /// The last 30 lines the server logged since byte `offset`.
    fn log_tail(&self, offset: u64) -> String {
        let log = fs::read(self.log_path()).unwrap_or_default();
        let start = usize::try_from(offset).unwrap_or(0).min(log.len());
        let log = String::from_utf8_lossy(&log[start..]);
        let lines: Vec<&str> = log.lines().collect();
        format!(
            "--- log tail ---\n{}",
            lines[lines.len().saturating_sub(30)..].join("\n")
        )
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // End of file on the pipe: the watchdog stops the server and removes the dir.
        if let Some(mut pipe) = self.pipe.take() {
            let _ = pipe.flush();
        }
        // Their watchdogs' servers are long gone: they only remove the directory too.
        self.retired.clear();
        if let Some(mut child) = self.child.take() {
            let pgid = child.id();
            let deadline = Instant::now() + DEADLINE;
            while group_alive(pgid) && Instant::now() < deadline {
                let _ = child.try_wait();
                std::thread::sleep(Duration::from_millis(10));
            }
            kill_group(pgid);
            let _ = child.wait();
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// SIGKILL to a process group until none of it is left (bounded).
fn kill_group(pgid: u32) {
    let group = format!("-{pgid}");
    let deadline = Instant::now() + DEADLINE;
    signal(&group, "KILL");
    while group_alive(pgid) && Instant::now() < deadline {
        signal(&group, "KILL");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Runs a command to its end, killing it past [`DEADLINE`].
fn run_bounded(mut cmd: Command, what: &str) -> Result<std::process::Output> {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("spawning {what}"))?;
    let deadline = Instant::now() + DEADLINE;
    while child.try_wait().context(what.to_owned())?.is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{what} did not finish within {DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child
        .wait_with_output()
        .with_context(|| format!("reading {what}'s output"))
}

/// The newest installed PostgreSQL's programs (Debian: /usr/lib/postgresql/<major>/bin).
fn bin_dir() -> Result<PathBuf> {
    let root = Path::new("/usr/lib/postgresql");
    let newest = fs::read_dir(root)
        .ok()
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|major| root.join(major.to_string()).join("bin/initdb").exists())
        .max()
        .ok_or_else(|| {
            anyhow!(
                "no PostgreSQL under {}: install the Debian package postgresql",
                root.display()
            )
        })?;
    Ok(root.join(newest.to_string()).join("bin"))
}

fn free_port() -> Result<u16> {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("binding 127.0.0.1:0")?;
    Ok(l.local_addr()
        .context("local_addr of probe listener")?
        .port())
}

/// Who the server runs as: as root an unprivileged system user (PostgreSQL refuses root),
/// else ourselves.
struct Owner {
    /// `(uid, gid)` to switch to; `None` when we are not root.
    switch: Option<(u32, u32)>,
}

impl Owner {
    fn detect() -> Result<Owner> {
        if rustix::process::geteuid().as_raw() != 0 {
            return Ok(Owner { switch: None });
        }
        let users = passwd_entries();
        let (uid, gid) = ["postgres", "nobody"]
            .iter()
            .find_map(|name| users.iter().find(|(n, _, _)| n == name))
            .map(|(_, u, g)| (*u, *g))
            .ok_or_else(|| {
                anyhow!("running as root, but no `postgres` or `nobody` user to run PostgreSQL as")
            })?;
        Ok(Owner {
            switch: Some((uid, gid)),
        })
    }

    fn chown(&self, path: &Path) -> Result<()> {
        if let Some((uid, gid)) = self.switch {
            std::os::unix::fs::chown(path, Some(uid), Some(gid))
                .with_context(|| format!("chown {}", path.display()))?;
        }
        Ok(())
    }

    fn apply(&self, cmd: &mut Command) {
        if let Some((uid, gid)) = self.switch {
            cmd.uid(uid).gid(gid);
        }
    }
}
