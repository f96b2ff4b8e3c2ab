//! A private Postfix on free loopback ports that accepts authenticated submissions and
//! delivers them into a private [`Dovecot`] by LMTP.
//!
//! Two listeners, both RFC 6409 submission: `submission_port` offers STARTTLS and allows
//! AUTH only after it; `submissions_port` is implicit TLS (RFC 8314). AUTH PLAIN and
//! LOGIN are checked by Dovecot itself (Postfix's `smtpd_sasl_type = dovecot` over
//! [`Dovecot::auth_socket`]), so the users and passwords are the Dovecot instance's. The
//! certificate is Dovecot's (signed by [`Dovecot::ca_file`]).
//!
//! Every recipient goes to Dovecot's LMTP; two reserved domains let tests provoke the
//! replies a real MTA gives, at RCPT time:
//! - [`REFUSED_DOMAIN`]: `550 5.1.1` (permanent);
//! - [`DEFERRED_DOMAIN`]: `451 4.3.0` (transient).
//!
//! Postfix needs root (its master refuses anything else); as root its daemons run as the
//! Debian `postfix` user. Config, queue and log live in a temporary directory owned by
//! the value; `/etc/postfix` is only read for the list of Postfix's own files. The master
//! runs in the foreground (`master -d`) in its own process group, so dropping the value
//! takes every Postfix process down.

use crate::dovecot::{Dovecot, group_alive, signal, write_atomic};
use anyhow::{Context, Result, anyhow, bail};
use std::fs;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Recipients at this domain are refused with a permanent `550 5.1.1` at RCPT.
pub const REFUSED_DOMAIN: &str = "refused.test";
/// Recipients at this domain are refused with a transient `451 4.3.0` at RCPT.
pub const DEFERRED_DOMAIN: &str = "deferred.test";

/// How long a start, stop or wait may take.
const DEADLINE: Duration = Duration::from_secs(15);
const START_ATTEMPTS: usize = 3;
const MASTER: &str = "/usr/lib/postfix/sbin/master";
const POSTFIX: &str = "/usr/sbin/postfix";

/// A running private Postfix. Dropping it stops every Postfix process and removes its
/// directory.
#[derive(Debug)]
pub struct Smtp {
    child: Option<Child>,
    /// Whether [`DEFERRED_DOMAIN`] recipients get the 451 (see [`Smtp::accept_deferred`]).
    defer: bool,
    submission: u16,
    submissions: u16,
    lmtp: u16,
    auth_socket: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    ca_file: PathBuf,
    dir: tempfile::TempDir,
}

impl Smtp {
    /// Writes a config for `dovecot` (its LMTP port, SASL socket and certificate) and
    /// starts Postfix. Blocks until both listeners answer (a few hundred ms).
    pub fn start(dovecot: &Dovecot) -> Result<Smtp> {
        if !is_root()? {
            bail!("the testkit SMTP server (Postfix) must be started as root");
        }
        for bin in [MASTER, POSTFIX] {
            if !Path::new(bin).exists() {
                bail!("{bin} is missing: install the Debian package postfix");
            }
        }
        let dir = tempfile::Builder::new()
            .prefix("tdp-")
            .tempdir_in("/tmp")
            .context("creating the Postfix dir")?;
        // Postfix daemons (user postfix) must reach the queue below it.
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755))
            .context("chmod Postfix dir")?;
        let (cert, key) = dovecot.tls_cert_and_key();
        let mut smtp = Smtp {
            child: None,
            defer: true,
            submission: 0,
            submissions: 0,
            lmtp: dovecot.lmtp_port(),
            auth_socket: dovecot.auth_socket(),
            cert,
            key,
            ca_file: dovecot.ca_file().to_path_buf(),
            dir,
        };
        let mut last = None;
        for _ in 0..START_ATTEMPTS {
            let (a, b) = pick_ports()?;
            smtp.submission = a;
            smtp.submissions = b;
            match smtp.spawn() {
                Ok(()) => return Ok(smtp),
                Err(e)
                    if format!("{e:#}").contains("Address already in use")
                        || taken(&[smtp.submission, smtp.submissions]) =>
                {
                    last = Some(e)
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow!("no start attempt")))
    }

    /// Submission with STARTTLS (AUTH only after TLS).
    pub fn submission_port(&self) -> u16 {
        self.submission
    }

    /// Submission over implicit TLS.
    pub fn submissions_port(&self) -> u16 {
        self.submissions
    }

    /// The CA that signed the server certificate (Dovecot's).
    pub fn ca_file(&self) -> &Path {
        &self.ca_file
    }

    /// Postfix's log (`maillog_file`).
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("maillog")
    }

    /// The Message-IDs of the messages Postfix received, one entry per submission, in
    /// order (from the cleanup lines of its log). A message submitted twice shows twice.
    /// Cleanup logs the Message-ID as the header arrives, so a message whose connection
    /// was cut in the body shows too, though it was never accepted nor delivered.
    pub fn accepted_message_ids(&self) -> Vec<String> {
        let log = fs::read_to_string(self.log_path()).unwrap_or_default();
        log.lines()
            .filter(|l| l.contains("postfix/cleanup["))
            .filter_map(|l| l.split_once(": message-id=").map(|(_, id)| id.trim()))
            .map(|id| id.trim_start_matches('<').trim_end_matches('>').to_owned())
            .collect()
    }

    /// How many SMTP connections Postfix accepted on both listeners so far (its smtpd
    /// `connect from` log lines): what a test counts to see connections reused.
    pub fn connections(&self) -> usize {
        let log = fs::read_to_string(self.log_path()).unwrap_or_default();
        log.lines()
            .filter(|l| l.contains("postfix/smtpd[") && l.contains(": connect from "))
            .count()
    }

    /// From now on [`DEFERRED_DOMAIN`] recipients are accepted like any other (delivered
    /// by LMTP: the test adds such a Dovecot user): the "try again later" has passed.
    /// Restarts Postfix (same ports, same queue), so open connections are cut.
    pub fn accept_deferred(&mut self) -> Result<()> {
        self.defer = false;
        self.restart()
    }

    /// Whether the master is running.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Kills every Postfix process (SIGKILL to the group: nothing it acknowledged is
    /// lost, the queue is on disk) and waits until they are gone. Idempotent.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pgid = child.id();
        let group = format!("-{pgid}");
        signal(&group, "KILL");
        let _ = child.kill();
        let _ = child.wait();
        let deadline = Instant::now() + DEADLINE;
        while group_alive(pgid) && Instant::now() < deadline {
            signal(&group, "KILL");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Starts again on the same ports with the same queue ("SMTP down, then up").
    pub fn restart(&mut self) -> Result<()> {
        self.stop();
        let deadline = Instant::now() + DEADLINE;
        loop {
            match self.spawn() {
                Ok(()) => return Ok(()),
                Err(e)
                    if format!("{e:#}").contains("Address already in use")
                        && Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => return Err(e.context("restarting postfix")),
            }
        }
    }

    fn spawn(&mut self) -> Result<()> {
        let dir = self.dir.path();
        let conf = dir.join("conf");
        fs::create_dir_all(&conf).context("creating conf dir")?;
        fs::create_dir_all(dir.join("queue")).context("creating queue dir")?;
        let mut map = format!(
            "/@{}$/ 550 5.1.1 Recipient refused (testkit)\n",
            regex_escape(REFUSED_DOMAIN)
        );
        if self.defer {
            map.push_str(&format!(
                "/@{}$/ 451 4.3.0 Try again later (testkit)\n",
                regex_escape(DEFERRED_DOMAIN)
            ));
        }
        fs::write(dir.join("recipients"), map).context("writing recipients map")?;
        write_atomic(&conf.join("main.cf"), self.main_cf().as_bytes(), 0o644)?;
        write_atomic(&conf.join("master.cf"), self.master_cf().as_bytes(), 0o644)?;
        // Creates the queue directories with Postfix's own owners and modes.
        let out = Command::new(POSTFIX)
            .arg("-c")
            .arg(&conf)
            .arg("check")
            .stdin(Stdio::null())
            .output()
            .context("running postfix check")?;
        if !out.status.success() {
            // Postfix reports to syslog, or to the maillog once that is set up.
            bail!(
                "postfix check failed ({}): {} {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim(),
                fs::read_to_string(self.log_path()).unwrap_or_default()
            );
        }
        let log_before = fs::metadata(self.log_path()).map(|m| m.len()).unwrap_or(0);
        let stderr = fs::File::create(dir.join("master.stderr")).context("master.stderr")?;
        let child = Command::new(MASTER)
            .arg("-c")
            .arg(&conf)
            .arg("-d")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .process_group(0)
            .spawn()
            .context("spawning the Postfix master")?;
        self.child = Some(child);
        let deadline = Instant::now() + DEADLINE;
        let mut pending = vec![self.submission, self.submissions];
        loop {
            if let Some(c) = self.child.as_mut()
                && let Some(status) = c.try_wait().context("waiting for postfix")?
            {
                self.child = None;
                bail!(
                    "postfix master exited during startup ({status}):\n{}",
                    self.diagnostics(log_before)
                );
            }
            pending.retain(|&port| {
                let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
                TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err()
            });
            if pending.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let diag = self.diagnostics(log_before);
                self.stop();
                bail!("postfix ports {pending:?} not accepting after {DEADLINE:?}:\n{diag}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn main_cf(&self) -> String {
        let dir = self.dir.path().display();
        format!(
            "# Generated by the Tidings testkit for a private, throw-away instance.\n\
             compatibility_level = 3.6\n\
             queue_directory = {dir}/queue\n\
             data_directory = {dir}/data\n\
             mail_owner = postfix\n\
             setgid_group = postdrop\n\
             maillog_file = {dir}/maillog\n\
             maillog_file_prefixes = {dir}\n\
             myhostname = localhost\n\
             mydomain = localhost\n\
             myorigin = localhost\n\
             mydestination =\n\
             inet_interfaces = 127.0.0.1\n\
             inet_protocols = ipv4\n\
             mynetworks = 127.0.0.0/8\n\
             smtpd_peername_lookup = no\n\
             biff = no\n\
             # Everything is delivered into the test Dovecot.\n\
             default_transport = lmtp:inet:127.0.0.1:{lmtp}\n\
             relay_transport = lmtp:inet:127.0.0.1:{lmtp}\n\
             lmtp_host_lookup = native\n\
             # Retry soon: tests wait for deliveries, not for hours.\n\
             queue_run_delay = 1s\n\
             minimal_backoff_time = 1s\n\
             maximal_backoff_time = 2s\n\
             smtpd_sasl_auth_enable = yes\n\
             smtpd_sasl_type = dovecot\n\
             smtpd_sasl_path = {auth}\n\
             smtpd_tls_auth_only = yes\n\
             smtpd_tls_cert_file = {cert}\n\
             smtpd_tls_key_file = {key}\n\
             smtpd_tls_security_level = may\n\
             smtpd_relay_restrictions = permit_sasl_authenticated, reject\n\
             smtpd_recipient_restrictions = check_recipient_access regexp:{dir}/recipients, permit_sasl_authenticated, reject\n",
            lmtp = self.lmtp,
            auth = self.auth_socket.display(),
            cert = self.cert.display(),
            key = self.key.display(),
        )
    }

    fn master_cf(&self) -> String {
        let mut c = String::from("# Generated by the Tidings testkit.\n");
        c.push_str(&format!(
            "127.0.0.1:{} inet n - n - - smtpd\n  -o smtpd_tls_security_level=encrypt\n",
            self.submission
        ));
        c.push_str(&format!(
            "127.0.0.1:{} inet n - n - - smtpd\n  -o smtpd_tls_wrappermode=yes\n",
            self.submissions
        ));
        for line in [
            "cleanup unix n - n - 0 cleanup",
            "qmgr unix n - n 300 1 qmgr",
            "tlsmgr unix - - n 1000? 1 tlsmgr",
            "rewrite unix - - n - - trivial-rewrite",
            "bounce unix - - n - 0 bounce",
            "defer unix - - n - 0 bounce",
            "trace unix - - n - 0 bounce",
            "verify unix - - n - 1 verify",
            "flush unix n - n 1000? 0 flush",
            "proxymap unix - - n - - proxymap",
            "smtp unix - - n - - smtp",
            "relay unix - - n - - smtp",
            "showq unix n - n - - showq",
            "error unix - - n - - error",
            "retry unix - - n - - error",
            "discard unix - - n - - discard",
            "lmtp unix - - n - - lmtp",
            "anvil unix - - n - 1 anvil",
            "scache unix - - n - 1 scache",
            "postlog unix-dgram n - n - 1 postlogd",
        ] {
            c.push_str(line);
            c.push('\n');
        }
        c
    }

    fn diagnostics(&self, log_offset: u64) -> String {
        let stderr = fs::read_to_string(self.dir.path().join("master.stderr")).unwrap_or_default();
        let log = fs::read(self.log_path()).unwrap_or_default();
        let start = usize::try_from(log_offset).unwrap_or(0).min(log.len());
        let log = String::from_utf8_lossy(&log[start..]);
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(30)..].join("\n");
        format!(
            "--- stderr ---\n{}\n--- log tail ---\n{tail}",
            stderr.trim()
        )
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        self.stop();
    }
}

fn pick_ports() -> Result<(u16, u16)> {
    let a = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("binding 127.0.0.1:0")?;
    let b = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("binding 127.0.0.1:0")?;
    Ok((a.local_addr()?.port(), b.local_addr()?.port()))
}

/// Whether another listener holds one of `ports` now. The master can die of a port taken
/// between our pick and its bind (another server of the same test binary starting) without
/// a word: its fatal message goes to a log daemon it had not started yet.
fn taken(ports: &[u16]) -> bool {
    ports.iter().any(|&p| {
        matches!(
            TcpListener::bind((Ipv4Addr::LOCALHOST, p)),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse
        )
    })
}

fn is_root() -> Result<bool> {
    let status = fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    Ok(status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|rest| rest.split_whitespace().nth(1))
        == Some("0"))
}

fn regex_escape(s: &str) -> String {
    s.replace('.', "\\.")
}
#[cfg(test)]
mod tests {
    use super::*;

    /// The master dies of a port another listener took without a word in its log or on
    /// stderr; `start` must see the port taken to pick others instead of failing.
    #[test]
    fn a_port_taken_before_the_master_binds_is_seen_as_taken() -> Result<()> {
        let dovecot = crate::Dovecot::start(crate::DovecotOptions::default())?;
        let mut smtp = Smtp::start(&dovecot)?;
        smtp.stop();
        let _hold = TcpListener::bind((Ipv4Addr::LOCALHOST, smtp.submission))?;
        let err = match smtp.spawn() {
            Ok(()) => bail!("the master started on a port another listener holds"),
            Err(e) => format!("{e:#}"),
        };
        assert!(err.contains("exited during startup"), "{err}");
        assert!(taken(&[smtp.submission, smtp.submissions]));
        Ok(())
    }
}
