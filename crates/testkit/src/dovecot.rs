//! A private Dovecot instance on free loopback ports.
//!
//! Everything the instance needs (config, TLS material, users, mail, logs,
//! runtime sockets) lives in directories owned by the [`Dovecot`] value; the
//! system Dovecot and `/etc/dovecot` are never read or touched. The server runs
//! as a foreground child process (`dovecot -F`) in its own process group, so
//! dropping the value reliably takes the whole process tree down.

use std::collections::BTreeSet;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail};

/// How long any single wait (startup, shutdown, user visibility, socket I/O)
/// may take before we give up with an error instead of hanging a test run.
const DEADLINE: Duration = Duration::from_secs(10);
/// How long a new user's first authentication may take to succeed.
const AUTH_DEADLINE: Duration = Duration::from_secs(30);

/// How often a failed start caused by a port race is retried with new ports.
const START_ATTEMPTS: usize = 3;

/// The post-login capability list of Dovecot 2.3.19 with its default
/// settings. Dovecot can only hide an extension by replacing the whole list,
/// so when an option turns an extension off we start from this list.
const DEFAULT_CAPABILITIES: &[&str] = &[
    "IMAP4rev1",
    "SASL-IR",
    "LOGIN-REFERRALS",
    "ID",
    "ENABLE",
    "IDLE",
    "SORT",
    "SORT=DISPLAY",
    "THREAD=REFERENCES",
    "THREAD=REFS",
    "THREAD=ORDEREDSUBJECT",
    "MULTIAPPEND",
    "URL-PARTIAL",
    "CATENATE",
    "UNSELECT",
    "CHILDREN",
    "NAMESPACE",
    "UIDPLUS",
    "LIST-EXTENDED",
    "I18NLEVEL=1",
    "CONDSTORE",
    "QRESYNC",
    "ESEARCH",
    "ESORT",
    "SEARCHRES",
    "WITHIN",
    "CONTEXT=SEARCH",
    "LIST-STATUS",
    "BINARY",
    "MOVE",
    "SNIPPET=FUZZY",
    "PREVIEW=FUZZY",
    "PREVIEW",
    "STATUS=SIZE",
    "SAVEDATE",
    "LITERAL+",
    "NOTIFY",
    "SPECIAL-USE",
];

/// A second loopback address the plain IMAP listener also answers on with
/// `cleartext_login: false` (the certificate names it too).
pub const OTHER_LOOPBACK: &str = "127.0.0.2";

/// Special-use mailboxes that every user gets, created and subscribed by
/// Dovecot itself on first access.
const SPECIAL_USE: &[(&str, &str)] = &[
    ("Drafts", "\\Drafts"),
    ("Sent", "\\Sent"),
    ("Trash", "\\Trash"),
    ("Junk", "\\Junk"),
    ("Archive", "\\Archive"),
];

/// What kind of server to start.
#[derive(Debug, Clone)]
pub struct DovecotOptions {
    /// Advertise CONDSTORE and QRESYNC (default `true`). With `false` they are
    /// removed from the CAPABILITY list. Dovecot has no switch to refuse the
    /// commands themselves, so a client that ignores CAPABILITY can still use
    /// them; clients under test must honour the capability list.
    pub condstore: bool,
    /// Advertise NOTIFY (default `true`).
    pub notify: bool,
    /// Where config, certificates, users, mail and logs live. `None` (the
    /// default) uses a fresh temporary directory that is removed on drop;
    /// `Some(dir)` uses that directory, creates it if needed and keeps it, so a
    /// later start with the same directory sees the same users and mail.
    pub state_dir: Option<PathBuf>,
    /// `Some(n)` configures the instance for `n`
    /// simultaneous IMAP connections (Dovecot's defaults stop near 100): one long-lived
    /// imap-login process per core (`service_count = 0`) holding many clients, imap
    /// processes that serve several clients each, and process, client and per-user limits
    /// above `n`. Starting such an instance also raises the kernel's
    /// `fs.inotify.max_user_instances` to 8192 and our soft fd limit to the hard one when
    /// it can (see [`raise_os_limits`]), and says on stderr when it cannot. `None` (the
    /// default) keeps Dovecot's own limits.
    pub max_connections: Option<u32>,
    /// OAuth2: `Some` makes Dovecot (IMAP, POP3 and the SMTP SASL socket) accept bearer
    /// tokens besides passwords; see [`DovecotOAuth2`]. `None` (the default): passwords
    /// only.
    pub oauth2: Option<DovecotOAuth2>,
    /// Allow LOGIN and AUTHENTICATE PLAIN before STARTTLS on the plain ports (default
    /// `true`). With `false` the plain IMAP port says LOGINDISABLED until STARTTLS, as
    /// Outlook's port 143 does, to clients that connect to it at [`OTHER_LOOPBACK`]:
    /// Dovecot trusts a client whose address equals its own (127.0.0.1 to 127.0.0.1).
    pub cleartext_login: bool,
    /// Pigeonhole (default `false`): Sieve filtering at LMTP delivery and a ManageSieve
    /// listener (RFC 5804) on a free loopback port ([`Dovecot::managesieve_port`]). Mail
    /// the scripts send (vacation replies, redirects) goes to a sink directory that
    /// [`Dovecot::sent_by_sieve`] reads, so a test can observe it.
    pub sieve: bool,
    /// `Some(rule)` loads the quota plugins (`quota` everywhere, `imap_quota` for IMAP,
    /// which advertises QUOTA, RFC 9208) with a per-user `count` quota of that
    /// `quota_rule` (e.g. `*:storage=10M:messages=1000`). `None` (the default): no quota.
    pub quota_rule: Option<String>,
}

/// Dovecot's `oauth2` passdb: each bearer token is checked at an RFC 7662 introspection
/// URL and its `sub` must be the login name. Passwords keep working for every user.
#[derive(Debug, Clone)]
pub struct DovecotOAuth2 {
    /// With the resource server's credentials in it, e.g.
    /// [`crate::oidc::AuthServer::introspection_url`].
    pub introspection_url: String,
    /// The SASL mechanisms offered, lowercase (default `oauthbearer xoauth2`).
    pub mechanisms: Vec<String>,
}

impl DovecotOAuth2 {
    pub fn new(introspection_url: String) -> DovecotOAuth2 {
        DovecotOAuth2 {
            introspection_url,
            mechanisms: vec!["oauthbearer".into(), "xoauth2".into()],
        }
    }
}

impl Default for DovecotOptions {
    fn default() -> Self {
        DovecotOptions {
            condstore: true,
            notify: true,
            state_dir: None,
            max_connections: None,
            oauth2: None,
            cleartext_login: true,
            sieve: false,
            quota_rule: None,
        }
    }
}

/// What `fs.inotify.max_user_instances` should be for many Dovecot connections of one uid:
/// past the kernel's default of 128 Dovecot's IDLE and NOTIFY silently fall back to polling
/// every `mailbox_idle_check_interval` (30 s).
pub const INOTIFY_INSTANCES: u64 = 8192;
/// `fs.inotify.max_user_watches` wanted beside it (each watching session adds a few).
pub const INOTIFY_WATCHES: u64 = 65536;

/// Raises what the OS limits for many connections, where it can: the kernel's inotify
/// limits (root only; they are system-wide) and this process's soft `RLIMIT_NOFILE` to its
/// hard limit (Dovecot, started by us, inherits it). Returns one line per limit that is
/// still below what was wanted, each also printed on stderr, so a caller can report it.
pub fn raise_os_limits(fds_wanted: u64) -> Vec<String> {
    let mut short = Vec::new();
    for (name, want) in [
        ("max_user_instances", INOTIFY_INSTANCES),
        ("max_user_watches", INOTIFY_WATCHES),
    ] {
        let path = format!("/proc/sys/fs/inotify/{name}");
        let have: u64 = fs::read_to_string(&path)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        if have >= want {
            continue;
        }
        if let Err(e) = fs::write(&path, format!("{want}\n")) {
            short.push(format!(
                "fs.inotify.{name} is {have}, could not raise it to {want} ({e}): Dovecot's \
                 IDLE/NOTIFY fall back to 30 s polling past {have} sessions of one uid"
            ));
        }
    }
    match raise_nofile() {
        Ok(soft) if soft < fds_wanted => short.push(format!(
            "the fd limit (ulimit -n) is {soft}, below the {fds_wanted} wanted for this many \
             connections"
        )),
        Ok(_) => {}
        Err(e) => short.push(format!("cannot read or raise the fd limit: {e}")),
    }
    for s in &short {
        eprintln!("testkit: {s}");
    }
    short
}

/// Raises the soft `RLIMIT_NOFILE` of this process to its hard limit; returns the soft
/// limit now in force.
pub fn raise_nofile() -> std::io::Result<u64> {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut lim = getrlimit(Resource::Nofile);
    // `None` is "unlimited".
    let below = match (lim.current, lim.maximum) {
        (Some(cur), Some(max)) => cur < max,
        (Some(_), None) => true,
        (None, _) => false,
    };
    if below {
        lim.current = lim.maximum;
        setrlimit(Resource::Nofile, lim)?;
    }
    Ok(lim.current.unwrap_or(u64::MAX))
}

/// One message for [`Dovecot::seed`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedMessage {
    /// The full RFC 5322 message, stored byte for byte.
    pub raw: Vec<u8>,
    /// IMAP flags and keywords, e.g. `"\\Seen"`, `"\\Flagged"`, `"$Label1"`.
    /// `\Recent` is ignored (only the server may set it).
    pub flags: Vec<String>,
    /// INTERNALDATE as Unix seconds.
    pub internal_date: i64,
}

impl From<crate::corpus::CorpusMessage> for SeedMessage {
    fn from(m: crate::corpus::CorpusMessage) -> Self {
        SeedMessage {
            raw: m.raw,
            flags: m.flags,
            internal_date: m.internal_date,
        }
    }
}

impl From<&crate::corpus::CorpusMessage> for SeedMessage {
    fn from(m: &crate::corpus::CorpusMessage) -> Self {
        SeedMessage {
            raw: m.raw.clone(),
            flags: m.flags.clone(),
            internal_date: m.internal_date,
        }
    }
}

/// The loopback ports of one instance.
#[derive(Debug, Clone, Copy)]
struct Ports {
    imap: u16,
    imaps: u16,
    pop3: u16,
    pop3s: u16,
    lmtp: u16,
    /// Picked always, listened on only with [`DovecotOptions::sieve`].
    managesieve: u16,
}

impl Ports {
    fn all(&self) -> [u16; 5] {
        [self.imap, self.imaps, self.pop3, self.pop3s, self.lmtp]
    }

    /// Finds free ports by binding 127.0.0.1:0. All five listeners are held
    /// at the same time so the kernel cannot hand out the same port twice;
    /// they are released right before Dovecot binds them (a race with other
    /// processes remains, hence the retry in [`Dovecot::start`]).
    fn pick() -> Result<Ports> {
        let mut listeners = Vec::with_capacity(6);
        for _ in 0..6 {
            listeners
                .push(TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("binding 127.0.0.1:0")?);
        }
        let mut ports = [0u16; 6];
        for (slot, l) in ports.iter_mut().zip(&listeners) {
            *slot = l
                .local_addr()
                .context("local_addr of probe listener")?
                .port();
        }
        Ok(Ports {
            imap: ports[0],
            imaps: ports[1],
            pop3: ports[2],
            pop3s: ports[3],
            lmtp: ports[4],
            managesieve: ports[5],
        })
    }
}

/// Which OS identities the instance runs as.
#[derive(Debug, Clone)]
struct Identity {
    /// uid/gid that owns all mail files (the passwd-file uid/gid fields).
    mail_uid: u32,
    mail_gid: u32,
    is_root: bool,
    /// `default_internal_user` (auth, anvil, stats, ...).
    internal_user: String,
    /// `default_login_user` (imap-login, pop3-login).
    login_user: String,
    /// `default_internal_group` (group of sockets such as stats-writer).
    internal_group: String,
}

impl Identity {
    fn detect() -> Result<Identity> {
        let status =
            fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
        // The "Uid:"/"Gid:" lines are "real effective saved fs"; the
        // effective id decides what we may do.
        let field = |name: &str| -> Result<u32> {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|rest| rest.split_whitespace().nth(1))
                .ok_or_else(|| anyhow!("no {name} line in /proc/self/status"))?
                .parse()
                .with_context(|| format!("parsing {name} in /proc/self/status"))
        };
        let uid = field("Uid:")?;
        let gid = field("Gid:")?;
        if uid == 0 {
            // Dovecot refuses to run its unprivileged services as root, so we
            // need real system users. The Debian package creates dovecot and
            // dovenull; fall back to nobody on systems without them.
            let internal_user = if user_exists("dovecot") {
                "dovecot"
            } else {
                "nobody"
            };
            let login_user = if user_exists("dovenull") {
                "dovenull"
            } else {
                "nobody"
            };
            // Dovecot also refuses mail access as root ("Mail access not
            // allowed for root", and passwd-file rejects uid 0), so mail is
            // owned by nobody:nogroup and seed() chowns what it writes.
            let (mail_uid, mail_gid) = passwd_entries()
                .into_iter()
                .find(|(n, _, _)| n == "nobody")
                .map(|(_, u, g)| (u, g))
                .unwrap_or((65534, 65534));
            Ok(Identity {
                mail_uid,
                mail_gid,
                is_root: true,
                internal_user: internal_user.to_owned(),
                login_user: login_user.to_owned(),
                // Dovecot's default; the Debian package creates it.
                internal_group: "dovecot".to_owned(),
            })
        } else {
            // A non-root master cannot switch users at all, so every service
            // and all mail runs as ourselves.
            let name = user_name(uid)?;
            // Sockets are chowned to default_internal_group, which must be
            // our own group: a non-root process cannot chown to another.
            let group = group_name(gid)?;
            Ok(Identity {
                mail_uid: uid,
                mail_gid: gid,
                is_root: false,
                internal_user: name.clone(),
                login_user: name,
                internal_group: group,
            })
        }
    }

    /// Gives a file or directory we created to the mail user (only needed,
    /// and only possible, as root).
    fn chown(&self, path: &Path) -> Result<()> {
        if self.is_root {
            std::os::unix::fs::chown(path, Some(self.mail_uid), Some(self.mail_gid))
                .with_context(|| format!("chown {}", path.display()))?;
        }
        Ok(())
    }

    /// `create_dir_all` that hands every directory it creates to the mail
    /// user.
    fn create_dirs(&self, path: &Path) -> Result<()> {
        if path.is_dir() {
            return Ok(());
        }
        if let Some(parent) = path.parent() {
            self.create_dirs(parent)?;
        }
        match fs::create_dir(path) {
            Ok(()) => self.chown(path),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(e).with_context(|| format!("creating {}", path.display())),
        }
    }
}

/// `(name, uid, gid)` of every /etc/passwd entry.
pub(crate) fn passwd_entries() -> Vec<(String, u32, u32)> {
    let Ok(text) = fs::read_to_string("/etc/passwd") else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|l| {
            let mut it = l.split(':');
            let name = it.next()?;
            let uid = it.nth(1)?.parse().ok()?;
            let gid = it.next()?.parse().ok()?;
            Some((name.to_owned(), uid, gid))
        })
        .collect()
}

fn user_exists(name: &str) -> bool {
    passwd_entries().iter().any(|(n, _, _)| n == name)
}

fn user_name(uid: u32) -> Result<String> {
    if let Some((name, _, _)) = passwd_entries().into_iter().find(|(_, u, _)| *u == uid) {
        return Ok(name);
    }
    // Users from LDAP/NSS are not in /etc/passwd; `id` asks NSS.
    let out = Command::new("id")
        .arg("-un")
        .output()
        .context("running id -un")?;
    let name = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if out.status.success() && !name.is_empty() {
        return Ok(name);
    }
    std::env::var("USER").with_context(|| format!("cannot find a user name for uid {uid}"))
}

/// As root, mail processes run as the unprivileged mail user, so every
/// ancestor of the state dir must be searchable by it. We do not loosen
/// permissions of directories we did not create (such as /root); we explain.
fn check_traversable(state: &Path, id: &Identity) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    for dir in state.ancestors() {
        let meta = fs::metadata(dir).with_context(|| format!("stat {}", dir.display()))?;
        let mode = meta.mode();
        let ok = mode & 0o001 != 0
            || meta.uid() == id.mail_uid && mode & 0o100 != 0
            || meta.gid() == id.mail_gid && mode & 0o010 != 0;
        if !ok {
            bail!(
                "running as root, Dovecot accesses mail as uid {} which cannot enter {} \
                 (mode {:o}); use a state_dir outside it, e.g. under /tmp or /var/tmp",
                id.mail_uid,
                dir.display(),
                mode & 0o7777
            );
        }
    }
    Ok(())
}

fn group_name(gid: u32) -> Result<String> {
    if let Ok(text) = fs::read_to_string("/etc/group") {
        for l in text.lines() {
            let mut it = l.split(':');
            if let (Some(name), Some(id)) = (it.next(), it.nth(1))
                && id.parse() == Ok(gid)
            {
                return Ok(name.to_owned());
            }
        }
    }
    let out = Command::new("id")
        .arg("-gn")
        .output()
        .context("running id -gn")?;
    let name = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if out.status.success() && !name.is_empty() {
        return Ok(name);
    }
    bail!("cannot find a group name for gid {gid}")
}

fn find_binary(name: &str, usual: &str) -> PathBuf {
    let usual = PathBuf::from(usual);
    if usual.exists() {
        return usual;
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join(name);
            if candidate.exists() {
                return candidate;
            }
        }
    }
    PathBuf::from(name)
}

/// A running private Dovecot. Dropping it stops the server and removes its
/// temporary directories (a caller-supplied `state_dir` is kept).
#[derive(Debug)]
pub struct Dovecot {
    child: Option<Child>,
    ports: Ports,
    opts: DovecotOptions,
    identity: Identity,
    state: PathBuf,
    /// Short runtime directory under /tmp: Dovecot's `base_dir` holds unix
    /// sockets whose paths must stay below ~108 bytes, which a deep state
    /// directory could exceed. Also holds the passwd-file, because as root the
    /// auth process (user dovecot) must be able to read it and a
    /// caller-supplied state directory may not be traversable for that user.
    run: tempfile::TempDir,
    config: PathBuf,
    ca_file: PathBuf,
    dovecot_bin: PathBuf,
    doveadm_bin: PathBuf,
    /// Serialises passwd-file rewrites between threads.
    users_lock: Mutex<()>,
    // Declared last so it is removed after the server is stopped in Drop.
    _state_tmp: Option<tempfile::TempDir>,
}

impl Dovecot {
    /// Writes a config, generates TLS material and starts Dovecot in the
    /// foreground as a child process. Blocks until all five ports accept
    /// connections (at most ~10 s per attempt). If Dovecot cannot bind a port
    /// because another process grabbed it meanwhile, starts again with new
    /// ports, up to three times.
    pub fn start(opts: DovecotOptions) -> Result<Dovecot> {
        let identity = Identity::detect()?;
        if let Some(n) = opts.max_connections {
            // Dovecot's login processes hold two fds per connection (client and imap).
            raise_os_limits(4 * u64::from(n) + 1000);
        }
        let (state, state_tmp) = match &opts.state_dir {
            Some(dir) => {
                fs::create_dir_all(dir)
                    .with_context(|| format!("creating state dir {}", dir.display()))?;
                (
                    fs::canonicalize(dir)
                        .with_context(|| format!("resolving {}", dir.display()))?,
                    None,
                )
            }
            None => {
                let tmp = tempfile::Builder::new()
                    .prefix("tidings-dovecot-")
                    .tempdir()
                    .context("creating temporary state dir")?;
                (tmp.path().to_path_buf(), Some(tmp))
            }
        };
        let run = tempfile::Builder::new()
            .prefix("tdc-")
            .tempdir_in("/tmp")
            .context("creating runtime dir under /tmp")?;
        if identity.is_root {
            // Unprivileged Dovecot services must reach the sockets and the
            // passwd-file below the runtime dir, which tempfile creates 0700.
            fs::set_permissions(run.path(), fs::Permissions::from_mode(0o755))
                .context("chmod runtime dir")?;
            // Mail is owned by nobody, which must reach the homes below the
            // state dir.
            let mode = fs::metadata(&state)
                .context("stat state dir")?
                .permissions()
                .mode();
            fs::set_permissions(&state, fs::Permissions::from_mode((mode & 0o7777) | 0o711))
                .context("chmod state dir")?;
            check_traversable(&state, &identity)?;
        }
        for sub in ["home", "dovecot-state", "tls"] {
            fs::create_dir_all(state.join(sub))
                .with_context(|| format!("creating {}", state.join(sub).display()))?;
        }
        let ca_file = write_tls_material(&state.join("tls"))?;

        // Users persist in one file in the state dir. Dovecot reads one
        // passwd-file per user from the runtime dir (see render_config).
        let users_master = state.join("users");
        if !users_master.exists() {
            fs::write(&users_master, "").context("creating users file")?;
        }
        let users_live = run.path().join("users");
        fs::create_dir_all(&users_live).context("creating users dir")?;
        fs::set_permissions(&users_live, fs::Permissions::from_mode(0o755))
            .context("chmod users dir")?;
        let text = fs::read_to_string(&users_master).context("reading users file")?;
        for line in text.lines().filter(|l| !l.is_empty()) {
            if let Some((name, _)) = line.split_once(':') {
                write_atomic(
                    &users_live.join(name),
                    format!("{line}\n").as_bytes(),
                    0o644,
                )?;
            }
        }

        let mut dovecot = Dovecot {
            child: None,
            ports: Ports::pick()?,
            opts,
            identity,
            config: state.join("dovecot.conf"),
            ca_file,
            state,
            run,
            dovecot_bin: find_binary("dovecot", "/usr/sbin/dovecot"),
            doveadm_bin: find_binary("doveadm", "/usr/bin/doveadm"),
            users_lock: Mutex::new(()),
            _state_tmp: state_tmp,
        };

        let mut last_err = None;
        for attempt in 0..START_ATTEMPTS {
            if attempt > 0 {
                dovecot.ports = Ports::pick()?;
            }
            match dovecot.spawn() {
                Ok(()) => return Ok(dovecot),
                Err(e) if e.is::<PortInUse>() => {
                    tracing::warn!("dovecot port race on attempt {}: {e:#}", attempt + 1);
                    last_err = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last_err
            .unwrap_or_else(|| anyhow!("no start attempt made"))
            .context(format!(
                "dovecot did not start after {START_ATTEMPTS} attempts"
            )))
    }

    /// Plain IMAP port (STARTTLS available, LOGIN allowed without TLS).
    pub fn imap_port(&self) -> u16 {
        self.ports.imap
    }

    /// Implicit-TLS IMAP port.
    pub fn imaps_port(&self) -> u16 {
        self.ports.imaps
    }

    /// Plain POP3 port (STLS available, USER/PASS allowed without TLS).
    pub fn pop3_port(&self) -> u16 {
        self.ports.pop3
    }

    /// Implicit-TLS POP3 port.
    pub fn pop3s_port(&self) -> u16 {
        self.ports.pop3s
    }

    /// LMTP over TCP on 127.0.0.1.
    pub fn lmtp_port(&self) -> u16 {
        self.ports.lmtp
    }

    /// ManageSieve (RFC 5804) on 127.0.0.1, STARTTLS available; `None` unless started
    /// with [`DovecotOptions::sieve`].
    pub fn managesieve_port(&self) -> Option<u16> {
        self.opts.sieve.then_some(self.ports.managesieve)
    }

    fn sieve_sink(&self) -> PathBuf {
        self.state.join("sieve-sent")
    }

    /// Every message Sieve scripts have sent so far (vacation replies, redirects), oldest
    /// first, each as the raw bytes handed to `sendmail_path` (the envelope recipient is
    /// not kept). Empty without [`DovecotOptions::sieve`].
    pub fn sent_by_sieve(&self) -> Result<Vec<Vec<u8>>> {
        let dir = self.sieve_sink();
        let mut names: Vec<PathBuf> = match fs::read_dir(&dir) {
            Ok(entries) => entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "eml"))
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
        };
        names.sort();
        names
            .iter()
            .map(|p| fs::read(p).with_context(|| format!("reading {}", p.display())))
            .collect()
    }

    /// Dovecot's SASL authentication socket for an MTA (`smtpd_sasl_type = dovecot`).
    pub fn auth_socket(&self) -> PathBuf {
        self.run.path().join("run").join("auth-smtp")
    }

    /// The server certificate chain and key (PEM) that Dovecot presents, for another
    /// server of the harness to present too.
    pub fn tls_cert_and_key(&self) -> (PathBuf, PathBuf) {
        let tls = self.state.join("tls");
        (tls.join("server.pem"), tls.join("server.key"))
    }

    /// PEM file of the generated CA that signed the server certificate
    /// (SANs 127.0.0.1, ::1 and localhost).
    pub fn ca_file(&self) -> &Path {
        &self.ca_file
    }

    /// The directory holding config, users, mail homes and logs.
    pub fn state_dir(&self) -> &Path {
        &self.state
    }

    /// Path of the generated `dovecot.conf`.
    pub fn config_path(&self) -> &Path {
        &self.config
    }

    /// Path of the Dovecot log file (errors and info).
    pub fn log_path(&self) -> PathBuf {
        self.state.join("dovecot.log")
    }

    /// Whether the server process is currently running.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// The home directory Dovecot uses for `user` (mail is in `Maildir/`).
    pub fn user_home(&self, user: &str) -> PathBuf {
        self.state.join("home").join(user.to_lowercase())
    }

    /// Adds a user (or changes the password of an existing one) in the
    /// passwd-file and waits until Dovecot's auth process sees the change, so
    /// the user can log in as soon as this returns. The name is lowercased,
    /// as Dovecot's default `auth_username_format = %Lu` does on login.
    pub fn add_user(&self, user: &str, password: &str) -> Result<()> {
        let user = user.to_lowercase();
        let bad = |s: &str| s.is_empty() || s.chars().any(|c| c == ':' || c.is_control());
        if bad(&user) || user.contains('/') || user.starts_with('.') {
            bail!("invalid user name {user:?}");
        }
        if password.chars().any(|c| c == ':' || c.is_control()) {
            bail!("password must not contain ':' or control characters");
        }
        let home = self.user_home(&user);
        self.identity.create_dirs(&home)?;
        {
            let _guard = self
                .users_lock
                .lock()
                .map_err(|_| anyhow!("users lock poisoned"))?;
            let master = self.state.join("users");
            let text = fs::read_to_string(&master).context("reading users file")?;
            let prefix = format!("{user}:");
            let mut out: String = text
                .lines()
                .filter(|l| !l.starts_with(&prefix) && !l.is_empty())
                .map(|l| format!("{l}\n"))
                .collect();
            // passwd-file: user:password:uid:gid:gecos:home:shell:extra
            let entry = format!(
                "{user}:{{PLAIN}}{password}:{}:{}::{}::\n",
                self.identity.mail_uid,
                self.identity.mail_gid,
                home.display()
            );
            out.push_str(&entry);
            write_atomic(&master, out.as_bytes(), 0o600)?;
            write_atomic(
                &self.run.path().join("users").join(&user),
                entry.as_bytes(),
                0o644,
            )?;
        }
        // A new user's file is read on first lookup, but Dovecot re-stats a
        // known passwd-file at most once per second, so a changed password
        // may take up to a second to count. Poll a real authentication until
        // it succeeds (auth_failure_delay = 0 keeps each poll fast).
        //
        // Longer than the other waits: on a loaded 2-core machine Dovecot's auth process
        // has been seen refusing its socket for over 10 s after a start (its first spawn
        // throttled); the log tail says why when even this is not enough.
        let deadline = Instant::now() + AUTH_DEADLINE;
        loop {
            let res = self.doveadm(&["auth", "test", &user, password]);
            match res {
                Ok(_) => return Ok(()),
                Err(e) if Instant::now() >= deadline => {
                    let diag = self.diagnostics(0);
                    return Err(e.context(format!(
                        "user {user} not usable after {AUTH_DEADLINE:?}\n{diag}"
                    )));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// Adds many new users at once (one rewrite of the users file instead of one per user,
    /// and one authentication check instead of one per user: a new user's passwd-file is
    /// read on its first lookup). For changing passwords use [`Dovecot::add_user`].
    pub fn add_users(&self, users: &[(String, String)]) -> Result<()> {
        let bad = |s: &str| s.is_empty() || s.chars().any(|c| c == ':' || c.is_control());
        let mut entries = Vec::with_capacity(users.len());
        for (user, password) in users {
            let user = user.to_lowercase();
            if bad(&user) || user.contains('/') || user.starts_with('.') {
                bail!("invalid user name {user:?}");
            }
            if password.chars().any(|c| c == ':' || c.is_control()) {
                bail!("password must not contain ':' or control characters");
            }
            let home = self.user_home(&user);
            self.identity.create_dirs(&home)?;
            let entry = format!(
                "{user}:{{PLAIN}}{password}:{}:{}::{}::\n",
                self.identity.mail_uid,
                self.identity.mail_gid,
                home.display()
            );
            entries.push((user, entry));
        }
        {
            let _guard = self
                .users_lock
                .lock()
                .map_err(|_| anyhow!("users lock poisoned"))?;
            let master = self.state.join("users");
            let mut out = fs::read_to_string(&master).context("reading users file")?;
            for (user, entry) in &entries {
                if out.lines().any(|l| l.starts_with(&format!("{user}:"))) {
                    bail!("user {user} exists already (use add_user to change a password)");
                }
                out.push_str(entry);
                write_atomic(
                    &self.run.path().join("users").join(user),
                    entry.as_bytes(),
                    0o644,
                )?;
            }
            write_atomic(&master, out.as_bytes(), 0o600)?;
        }
        if let (Some((user, password)), Some(_)) = (users.last(), entries.last()) {
            self.doveadm(&["auth", "test", &user.to_lowercase(), password])
                .context("the last added user cannot log in")?;
        }
        Ok(())
    }

    /// Delivers one message to `rcpt` over real LMTP on the TCP port
    /// (LHLO, MAIL FROM, RCPT TO, DATA with dot-stuffing). Bare LF line ends
    /// are turned into CRLF as an MTA would. Fails unless every reply is
    /// positive.
    pub fn deliver(&self, rcpt: &str, raw: &[u8]) -> Result<()> {
        self.deliver_from("testkit@localhost", rcpt, raw)
    }

    /// [`Dovecot::deliver`] with `sender` as the envelope sender (MAIL FROM), which is
    /// whom a Sieve vacation reply goes to.
    pub fn deliver_from(&self, sender: &str, rcpt: &str, raw: &[u8]) -> Result<()> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.ports.lmtp));
        let stream = TcpStream::connect_timeout(&addr, DEADLINE).context("connecting to LMTP")?;
        stream.set_read_timeout(Some(DEADLINE))?;
        stream.set_write_timeout(Some(DEADLINE))?;
        let mut reader = BufReader::new(stream.try_clone()?);
        let mut writer = stream;
        let expect = |reader: &mut BufReader<TcpStream>, code: &str, what: &str| -> Result<()> {
            let reply = read_smtp_reply(reader).with_context(|| format!("LMTP {what}"))?;
            if !reply.starts_with(code) {
                bail!("LMTP {what}: expected {code}, got {reply:?}");
            }
            Ok(())
        };
        expect(&mut reader, "220", "greeting")?;
        writer.write_all(b"LHLO localhost\r\n")?;
        expect(&mut reader, "250", "LHLO")?;
        writer.write_all(format!("MAIL FROM:<{sender}>\r\n").as_bytes())?;
        expect(&mut reader, "250", "MAIL FROM")?;
        writer.write_all(format!("RCPT TO:<{rcpt}>\r\n").as_bytes())?;
        expect(&mut reader, "250", "RCPT TO")?;
        writer.write_all(b"DATA\r\n")?;
        expect(&mut reader, "354", "DATA")?;
        writer.write_all(&dot_stuff(raw))?;
        writer.flush()?;
        // LMTP answers once per accepted recipient after the final dot.
        expect(&mut reader, "250", "end of DATA")?;
        writer.write_all(b"QUIT\r\n")?;
        // The QUIT reply does not matter; the message is already stored.
        let _ = read_smtp_reply(&mut reader);
        Ok(())
    }

    /// Loads messages straight into `user`'s Maildir `mailbox` (created and
    /// subscribed if missing), much faster than APPEND or LMTP. Each message
    /// becomes a file in `cur/` whose name carries the flags, keywords are
    /// registered in `dovecot-keywords`, and the file mtime is the
    /// INTERNALDATE. UIDs are assigned in slice order. At most 26 distinct
    /// keywords per mailbox (a Maildir limit). Do not seed a mailbox while
    /// another client is creating new keywords in it.
    pub fn seed(&self, user: &str, mailbox: &str, messages: &[SeedMessage]) -> Result<()> {
        let user = user.to_lowercase();
        let mailbox = normalize_mailbox(mailbox);
        if mailbox != "INBOX"
            && let Err(e) = self.doveadm(&["mailbox", "create", "-s", "-u", &user, &mailbox])
            // "Mailbox already exists" is fine; anything else is not.
            && !format!("{e:#}").contains("exists")
        {
            return Err(e.context(format!("creating mailbox {mailbox}")));
        }
        let dir = self.maildir_path(&user, &mailbox);
        for sub in ["cur", "new", "tmp"] {
            self.identity.create_dirs(&dir.join(sub))?;
        }

        let keyword_names: BTreeSet<&str> = messages
            .iter()
            .flat_map(|m| m.flags.iter())
            .filter(|f| !f.starts_with('\\'))
            .map(String::as_str)
            .collect();
        let letters = update_keywords_file(&dir, &keyword_names, &self.identity)?;

        let pid = std::process::id();
        for (i, msg) in messages.iter().enumerate() {
            let mut system = String::new();
            let mut kw = String::new();
            for f in &msg.flags {
                match f.to_ascii_lowercase().as_str() {
                    "\\seen" => system.push('S'),
                    "\\answered" => system.push('R'),
                    "\\flagged" => system.push('F'),
                    "\\deleted" => system.push('T'),
                    "\\draft" => system.push('D'),
                    "\\recent" => {}
                    other if other.starts_with('\\') => {
                        bail!("unknown system flag {f:?} in message {i}")
                    }
                    _ => {
                        if let Some(letter) = letters.iter().find(|(n, _)| n == f).map(|(_, l)| *l)
                        {
                            kw.push(letter);
                        }
                    }
                }
            }
            // Maildir wants the info flags in ASCII order, system flags
            // (upper case) before keywords (lower case).
            let mut info: Vec<char> = system.chars().chain(kw.chars()).collect();
            info.sort_unstable();
            info.dedup();
            let info: String = info.into_iter().collect();

            let base = unique_base(pid);
            let tmp_path = dir.join("tmp").join(&base);
            let cur_path = dir
                .join("cur")
                .join(format!("{base},S={}:2,{info}", msg.raw.len()));
            let mut file = fs::File::create(&tmp_path)
                .with_context(|| format!("creating {}", tmp_path.display()))?;
            file.write_all(&msg.raw)
                .with_context(|| format!("writing {}", tmp_path.display()))?;
            // Dovecot's Maildir uses the file mtime as INTERNALDATE.
            file.set_modified(unix_to_system_time(msg.internal_date))
                .context("setting mtime")?;
            drop(file);
            self.identity.chown(&tmp_path)?;
            fs::rename(&tmp_path, &cur_path)
                .with_context(|| format!("moving {} into cur/", tmp_path.display()))?;
        }
        // Let Dovecot index the new files now, so UIDs follow slice order and
        // the first SELECT does not pay for the sync.
        // Indexing 10,000 new files takes a few seconds, more on a slow disk.
        self.doveadm_with_deadline(
            &["mailbox", "status", "-u", &user, "messages", &mailbox],
            Duration::from_secs(120),
        )
        .with_context(|| format!("syncing {mailbox} after seeding"))?;
        Ok(())
    }

    /// Seeds corpus messages into their folders (see [`Dovecot::seed`]),
    /// keeping the corpus order within each folder.
    pub fn seed_corpus(&self, user: &str, messages: &[crate::corpus::CorpusMessage]) -> Result<()> {
        let mut folders: Vec<&str> = Vec::new();
        for m in messages {
            if !folders.contains(&m.folder.as_str()) {
                folders.push(&m.folder);
            }
        }
        for folder in folders {
            let batch: Vec<SeedMessage> = messages
                .iter()
                .filter(|m| m.folder == folder)
                .map(SeedMessage::from)
                .collect();
            self.seed(user, folder, &batch)?;
        }
        Ok(())
    }

    /// Runs `doveadm -c <private config> args...` and returns its stdout.
    /// Fails with stderr in the message when doveadm exits non-zero.
    pub fn doveadm(&self, args: &[&str]) -> Result<String> {
        self.doveadm_with_deadline(args, DEADLINE)
    }

    fn doveadm_with_deadline(&self, args: &[&str], limit: Duration) -> Result<String> {
        let mut cmd = Command::new(&self.doveadm_bin);
        cmd.arg("-c").arg(&self.config).args(args);
        cmd.stdin(Stdio::null());
        let out = run_with_deadline(cmd, limit)
            .with_context(|| format!("running doveadm {}", args.join(" ")))?;
        if !out.status.success() {
            bail!(
                "doveadm {} failed ({}): {}{}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim(),
                String::from_utf8_lossy(&out.stdout).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Stops the server and all its processes and waits (at most ~10 s)
    /// until they are gone. Idempotent. Ports and state are kept for
    /// [`Dovecot::restart`].
    ///
    /// The whole process group is killed with SIGKILL: a SIGTERM shutdown
    /// of Dovecot 2.3 takes 1-2.5 s, which adds up over a test suite, and
    /// nothing is lost by killing it. Everything Dovecot acknowledged
    /// (an LMTP 250, an IMAP OK) has already been written, and Dovecot
    /// recovers its indexes after a crash anyway.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pgid = child.id();
        let group = format!("-{pgid}");
        signal(&group, "KILL");
        let _ = child.kill();
        let _ = child.wait();
        // Children that outlive the master would keep the listening sockets
        // open and break a restart on the same ports: wait for the group to
        // be empty.
        let deadline = Instant::now() + DEADLINE;
        while group_alive(pgid) && Instant::now() < deadline {
            signal(&group, "KILL");
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = fs::remove_file(self.run.path().join("run").join("master.pid"));
    }

    /// Stops and starts the server again with the same ports, config and
    /// state. For "server unreachable for a while" tests.
    pub fn restart(&mut self) -> Result<()> {
        self.stop();
        // The ports were ours a moment ago; if someone grabbed one meanwhile
        // there is nothing better to do than to report it.
        let deadline = Instant::now() + DEADLINE;
        loop {
            match self.spawn() {
                Ok(()) => return Ok(()),
                Err(e) if e.is::<PortInUse>() && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => return Err(e.context("restarting dovecot")),
            }
        }
    }

    fn maildir_path(&self, user: &str, mailbox: &str) -> PathBuf {
        let root = self.user_home(user).join("Maildir");
        if mailbox == "INBOX" {
            return root.join("INBOX");
        }
        // LAYOUT=fs: one directory level per hierarchy level, names on disk
        // in modified UTF-7 like IMAP.
        let mut path = root;
        for part in mailbox.split('/') {
            path.push(crate::mutf7::encode(part));
        }
        path
    }

    fn spawn(&mut self) -> Result<()> {
        let config = render_config(
            &self.identity,
            &self.ports,
            &self.opts,
            &self.state,
            self.run.path(),
        );
        write_atomic(&self.config, config.as_bytes(), 0o644)?;
        if let Some(o) = &self.opts.oauth2 {
            let url = &o.introspection_url;
            // The auth process reads it; the URL carries only a throw-away test secret.
            let text = format!(
                "introspection_mode = post\nintrospection_url = {url}\n\
                 username_attribute = sub\nactive_attribute = active\nactive_value = true\n"
            );
            write_atomic(
                &self.run.path().join("dovecot-oauth2.conf.ext"),
                text.as_bytes(),
                0o644,
            )?;
        }
        let log = self.log_path();
        let log_len_before = fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
        let stderr_path = self.state.join("dovecot.stderr");
        let stderr = fs::File::create(&stderr_path).context("creating dovecot.stderr")?;
        let mut cmd = Command::new(&self.dovecot_bin);
        cmd.arg("-F")
            .arg("-c")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            // Own process group, so stop() can sweep stray children.
            .process_group(0);
        let child = cmd
            .spawn()
            .with_context(|| format!("spawning {}", self.dovecot_bin.display()))?;
        self.child = Some(child);

        let deadline = Instant::now() + DEADLINE;
        let mut pending: Vec<u16> = self.ports.all().to_vec();
        if self.opts.sieve {
            pending.push(self.ports.managesieve);
            // The sink of the sendmail_path script (see render_config): written by the
            // mail user, which as root is not us.
            let sink = self.sieve_sink();
            fs::create_dir_all(&sink).context("creating the sieve mail sink")?;
            fs::set_permissions(&sink, fs::Permissions::from_mode(0o777))
                .context("chmod sieve mail sink")?;
            let script = format!(
                "#!/bin/sh\n# Writes each message Sieve sends to its own file (testkit).\n\
                 f={}/$(date +%s%N).$$\ncat > \"$f.tmp\" && mv \"$f.tmp\" \"$f.eml\"\n",
                sink.display()
            );
            let path = self.run.path().join("sieve-sendmail");
            write_atomic(&path, script.as_bytes(), 0o755)?;
        }
        loop {
            let exited = match self.child.as_mut() {
                Some(c) => c.try_wait().context("waiting for dovecot")?,
                None => None,
            };
            if let Some(status) = exited {
                self.child = None;
                let diag = self.diagnostics(log_len_before);
                if diag.contains("Address already in use") {
                    return Err(
                        anyhow!(PortInUse).context(format!("dovecot exited ({status}):\n{diag}"))
                    );
                }
                bail!("dovecot exited during startup ({status}):\n{diag}");
            }
            pending.retain(|&port| {
                let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
                TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err()
            });
            if pending.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let diag = self.diagnostics(log_len_before);
                self.stop();
                bail!("dovecot ports {pending:?} not accepting after {DEADLINE:?}:\n{diag}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// stderr of the master plus the tail of the log written since
    /// `log_offset`, for error messages.
    fn diagnostics(&self, log_offset: u64) -> String {
        let stderr = fs::read_to_string(self.state.join("dovecot.stderr")).unwrap_or_default();
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

impl Drop for Dovecot {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Marker error: Dovecot could not bind one of its ports.
#[derive(Debug)]
struct PortInUse;

impl std::fmt::Display for PortInUse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a port was taken by another process")
    }
}

impl std::error::Error for PortInUse {}

pub(crate) fn signal(target: &str, sig: &str) {
    // std can only SIGKILL a child; `kill` also reaches process groups.
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg("--")
        .arg(target)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Whether any live (non-zombie) process is in process group `pgid`.
/// Zombies are ignored: they hold no sockets, and an init that reaps
/// orphans only every few seconds (as in some containers) would otherwise
/// make every stop wait for it.
pub(crate) fn group_alive(pgid: u32) -> bool {
    let Ok(entries) = fs::read_dir("/proc") else {
        return false;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // "pid (comm) state ppid pgrp ..."; comm may contain anything, so
        // parse after the last ')'.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next();
        let pgrp = fields.nth(1).and_then(|p| p.parse::<u32>().ok());
        if pgrp == Some(pgid) && state != Some("Z") && state != Some("X") {
            return true;
        }
    }
    false
}

/// Runs a command, collecting output, and kills it if it takes longer than
/// `limit`.
fn run_with_deadline(mut cmd: Command, limit: Duration) -> Result<std::process::Output> {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().context("spawning")?;
    let mut stdout = child.stdout.take().context("no stdout pipe")?;
    let mut stderr = child.stderr.take().context("no stderr pipe")?;
    // Read both pipes on threads so a chatty process cannot block on a full
    // pipe while we wait for it.
    let out_thread = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stdout.read_to_end(&mut buf);
        buf
    });
    let err_thread = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stderr.read_to_end(&mut buf);
        buf
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("timed out after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let stdout = out_thread
        .join()
        .map_err(|_| anyhow!("stdout reader panicked"))?;
    let stderr = err_thread
        .join()
        .map_err(|_| anyhow!("stderr reader panicked"))?;
    Ok(std::process::Output {
        status,
        stdout,
        stderr,
    })
}

pub(crate) fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    let tmp = path.with_extension("tmp-write");
    fs::write(&tmp, data).with_context(|| format!("writing {}", tmp.display()))?;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(())
}

/// Generates (once per state dir) a CA and a server certificate for
/// 127.0.0.1, ::1 and localhost. Returns the CA file path. Existing files are
/// reused so a kept state dir keeps a stable CA.
fn write_tls_material(dir: &Path) -> Result<PathBuf> {
    let ca_path = dir.join("ca.pem");
    let cert_path = dir.join("server.pem");
    let key_path = dir.join("server.key");
    if ca_path.exists() && cert_path.exists() && key_path.exists() {
        return Ok(ca_path);
    }
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    };
    let ca_key = KeyPair::generate().context("generating CA key")?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).context("CA params")?;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Tidings testkit CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params.self_signed(&ca_key).context("self-signing CA")?;
    let issuer = Issuer::new(ca_params, ca_key);

    let server_key = KeyPair::generate().context("generating server key")?;
    let mut params = CertificateParams::new(vec![
        "127.0.0.1".to_owned(),
        OTHER_LOOPBACK.to_owned(),
        "::1".to_owned(),
        "localhost".to_owned(),
    ])
    .context("server params")?;
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    let cert = params
        .signed_by(&server_key, &issuer)
        .context("signing server certificate")?;

    fs::write(&ca_path, ca_cert.pem()).context("writing ca.pem")?;
    // Dovecot sends the chain in ssl_cert; include the CA for completeness.
    fs::write(&cert_path, format!("{}{}", cert.pem(), ca_cert.pem()))
        .context("writing server.pem")?;
    write_atomic(&key_path, server_key.serialize_pem().as_bytes(), 0o600)?;
    fs::set_permissions(&ca_path, fs::Permissions::from_mode(0o644)).context("chmod ca.pem")?;
    Ok(ca_path)
}

fn render_config(
    id: &Identity,
    ports: &Ports,
    opts: &DovecotOptions,
    state: &Path,
    run: &Path,
) -> String {
    let state = state.display();
    let run = run.display();
    let mut c = String::new();
    // `writeln!` into a String cannot fail; collect lines with push_str.
    let mut line = |s: &str| {
        c.push_str(s);
        c.push('\n');
    };
    line("# Generated by the Tidings testkit for a private, throw-away instance.");
    line("# Nothing here refers to /etc/dovecot or the system instance.");
    line(&format!("base_dir = {run}/run"));
    line(&format!("state_dir = {state}/dovecot-state"));
    line(&format!("instance_name = tidings-testkit-{}", ports.imap));
    if opts.sieve {
        line("protocols = imap pop3 lmtp sieve");
    } else {
        line("protocols = imap pop3 lmtp");
    }
    line("listen = 127.0.0.1");
    line(&format!("log_path = {state}/dovecot.log"));
    line(&format!("info_log_path = {state}/dovecot.log"));
    line("auth_verbose = yes");
    line(&format!("default_internal_user = {}", id.internal_user));
    line(&format!("default_login_user = {}", id.login_user));
    line(&format!("default_internal_group = {}", id.internal_group));
    // Exactly the one mail uid/gid we use is valid (default range starts
    // at 500, which would reject nobody or a low-uid CI user).
    line(&format!("first_valid_uid = {}", id.mail_uid));
    line(&format!("last_valid_uid = {}", id.mail_uid));
    line(&format!("first_valid_gid = {}", id.mail_gid));
    line(&format!("last_valid_gid = {}", id.mail_gid));
    if opts.cleartext_login {
        line("disable_plaintext_auth = no");
    } else {
        line("disable_plaintext_auth = yes");
    }
    if let Some(o) = &opts.oauth2 {
        line(&format!(
            "auth_mechanisms = plain login {}",
            o.mechanisms.join(" ")
        ));
    } else {
        line("auth_mechanisms = plain login");
    }
    line("ssl = yes");
    line(&format!("ssl_cert = <{state}/tls/server.pem"));
    line(&format!("ssl_key = <{state}/tls/server.key"));
    line("ssl_min_protocol = TLSv1.2");
    line("mail_location = maildir:~/Maildir:LAYOUT=fs:INBOX=~/Maildir/INBOX");
    line("mailbox_list_index = yes");
    // Test data is disposable; fsync only slows tests down.
    line("mail_fsync = never");
    line("postmaster_address = postmaster@example.org");
    line("hostname = localhost");
    line("login_greeting = Tidings testkit Dovecot ready.");
    // One passwd-file per user (the path has a variable): Dovecot re-reads
    // a passwd-file at most once per second, so with a single shared file a
    // user added right after another lookup would stay unknown for up to a
    // second; a new per-user file is read on its first lookup.
    line(&format!(
        "passdb {{\n  driver = passwd-file\n  args = scheme=PLAIN username_format=%u {run}/users/%Lu\n}}"
    ));
    if let Some(o) = &opts.oauth2 {
        // Only for the bearer mechanisms, so a password login never costs an
        // introspection; the file is written by `spawn`.
        line(&format!(
            "passdb {{\n  driver = oauth2\n  mechanisms = {}\n  \
             args = {run}/dovecot-oauth2.conf.ext\n}}",
            o.mechanisms.join(" ")
        ));
    }
    line(&format!(
        "userdb {{\n  driver = passwd-file\n  args = username_format=%u {run}/users/%Lu\n}}"
    ));
    // Failed logins are answered at once, and a failed login must not slow
    // down the next ones from 127.0.0.1: tests try wrong passwords on
    // purpose. Anvil's auth penalty (2-15 s per earlier failure) has no
    // switch; the auth process turns it off when it cannot connect to the
    // anvil-auth-penalty socket, so that socket gets mode 0.
    line("auth_failure_delay = 0");
    line("service anvil {\n  unix_listener anvil-auth-penalty {\n    mode = 0\n  }\n}");
    // Postfix (testkit::smtp) authenticates submissions against these users
    // through Dovecot's SASL socket; smtpd runs as the postfix user, hence mode 0666
    // (the socket lives in the private runtime dir of this throw-away instance).
    line("service auth {\n  unix_listener auth-smtp {\n    mode = 0666\n  }\n}");
    line("namespace inbox {\n  inbox = yes\n  separator = /\n  prefix =");
    for (name, use_) in SPECIAL_USE {
        line(&format!(
            "  mailbox {name} {{\n    special_use = {use_}\n    auto = subscribe\n  }}"
        ));
    }
    line("}");
    let imap_address = if opts.cleartext_login {
        "127.0.0.1".to_string()
    } else {
        format!("127.0.0.1 {OTHER_LOOPBACK}")
    };
    line(&format!(
        "service imap-login {{\n  inet_listener imap {{\n    address = {imap_address}\n    port = {}\n  }}\n  inet_listener imaps {{\n    address = 127.0.0.1\n    port = {}\n    ssl = yes\n  }}\n}}",
        ports.imap, ports.imaps
    ));
    line(&format!(
        "service pop3-login {{\n  inet_listener pop3 {{\n    address = 127.0.0.1\n    port = {}\n  }}\n  inet_listener pop3s {{\n    address = 127.0.0.1\n    port = {}\n    ssl = yes\n  }}\n}}",
        ports.pop3, ports.pop3s
    ));
    line(&format!(
        "service lmtp {{\n  inet_listener lmtp {{\n    address = 127.0.0.1\n    port = {}\n  }}\n}}",
        ports.lmtp
    ));
    if !id.is_root {
        // A non-root master can neither chroot nor switch to root.
        for svc in [
            "imap-login",
            "pop3-login",
            "imap-urlauth-login",
            "ipc",
            "old-stats",
            "aggregator",
            "director",
        ] {
            line(&format!("service {svc} {{\n  chroot =\n}}"));
        }
        line("service anvil {\n  chroot =\n}");
        if opts.sieve {
            line("service managesieve-login {\n  chroot =\n}");
        }
    }
    let mut imap = String::from("protocol imap {\n  mail_max_userip_connections = 1000\n");
    if let Some(rule) = &opts.quota_rule {
        // The `count` backend keeps usage in the index (Dovecot 2.3 docs: it needs
        // quota_vsizes, so STORAGE is the messages' virtual, CRLF size).
        line("mail_plugins = $mail_plugins quota");
        line(&format!(
            "plugin {{\n  quota = count:User quota\n  quota_rule = {rule}\n  quota_vsizes = yes\n}}"
        ));
        imap.push_str("  mail_plugins = $mail_plugins imap_quota\n");
    }
    // After the global mail_plugins above: `$mail_plugins` in sieve's `protocol lmtp`
    // expands to what is set so far, and deliveries must count against the quota too.
    if opts.sieve {
        for l in sieve_config(ports, &run) {
            line(&l);
        }
    }
    if !opts.condstore || !opts.notify {
        let caps: Vec<&str> = DEFAULT_CAPABILITIES
            .iter()
            .copied()
            .filter(|cap| {
                !(!opts.condstore && (*cap == "CONDSTORE" || *cap == "QRESYNC")
                    || !opts.notify && *cap == "NOTIFY")
            })
            .collect();
        imap.push_str(&format!("  imap_capability = {}\n", caps.join(" ")));
    }
    imap.push('}');
    line(&imap);
    line("protocol pop3 {\n  mail_max_userip_connections = 1000\n}");
    if let Some(n) = opts.max_connections {
        for l in many_connections_config(n) {
            line(&l);
        }
    }
    c
}

/// Pigeonhole: the ManageSieve listener, Sieve at LMTP delivery, and a `sendmail_path`
/// that drops what scripts send into the sink (see [`Dovecot::sent_by_sieve`]).
fn sieve_config(ports: &Ports, run: &std::path::Display<'_>) -> Vec<String> {
    vec![
        format!(
            "service managesieve-login {{\n  inet_listener sieve {{\n    address = 127.0.0.1\n    \
             port = {}\n  }}\n}}",
            ports.managesieve
        ),
        "protocol lmtp {\n  mail_plugins = $mail_plugins sieve\n}".to_string(),
        // The user's scripts live in ~/sieve, the active one is linked from ~/.dovecot.sieve
        // (Pigeonhole's usual layout); `include` (RFC 6609) finds personal scripts there.
        "plugin {\n  sieve = file:~/sieve;active=~/.dovecot.sieve\n}".to_string(),
        format!("sendmail_path = {run}/sieve-sendmail"),
    ]
}

/// Clients per imap process when configured for many connections: the processes are
/// event-driven, and 2,000 one-client processes would cost gigabytes. (Dovecot's default
/// `service_count = 1` ends a process with its one client; 0 lets it take more.)
const IMAP_CLIENTS_PER_PROCESS: u32 = 25;

/// The config lines for `n` simultaneous IMAP connections (see
/// [`DovecotOptions::max_connections`]).
fn many_connections_config(n: u32) -> Vec<String> {
    let n = n.max(100);
    let imap_processes = n / IMAP_CLIENTS_PER_PROCESS + 20;
    // Every connection is counted by anvil and passes through auth; login processes hold
    // TLS connections for their whole life (Dovecot proxies TLS in imap-login).
    let clients = 2 * n + 1000;
    vec![
        format!("default_process_limit = {}", imap_processes + 100),
        format!("default_client_limit = {clients}"),
        // High-performance mode: a few long-lived login processes, one per core, each
        // holding up to `clients` connections, instead of one process per connection.
        format!(
            "service imap-login {{\n  service_count = 0\n  process_min_avail = 2\n  \
             client_limit = {clients}\n  vsz_limit = 1G\n}}"
        ),
        format!(
            "service imap {{\n  service_count = 0\n  process_limit = {imap_processes}\n  \
             client_limit = {IMAP_CLIENTS_PER_PROCESS}\n}}"
        ),
        format!("service anvil {{\n  client_limit = {}\n}}", clients + 100),
        format!("service auth {{\n  client_limit = {}\n}}", clients + 100),
        format!("protocol imap {{\n  mail_max_userip_connections = {n}\n}}"),
    ]
}

fn read_smtp_reply(reader: &mut BufReader<TcpStream>) -> Result<String> {
    let mut all = String::new();
    loop {
        let mut line = String::new();
        let n = reader.read_line(&mut line).context("reading reply")?;
        if n == 0 {
            bail!("connection closed; got so far: {all:?}");
        }
        all.push_str(&line);
        // "250-..." continues, "250 ..." ends a reply.
        if line.len() < 4 || line.as_bytes()[3] != b'-' {
            return Ok(all);
        }
    }
}

/// Converts to CRLF line ends, doubles leading dots and appends the final
/// ".\r\n" (RFC 5321 section 4.5.2).
fn dot_stuff(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 50 + 5);
    let mut at_line_start = true;
    let mut prev = 0u8;
    for &b in raw {
        if at_line_start && b == b'.' {
            out.push(b'.');
        }
        if b == b'\n' && prev != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        at_line_start = b == b'\n';
        prev = b;
    }
    if !raw.is_empty() && !raw.ends_with(b"\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

fn normalize_mailbox(name: &str) -> String {
    let name = name.trim_matches('/');
    if name.eq_ignore_ascii_case("INBOX") {
        "INBOX".to_owned()
    } else {
        name.to_owned()
    }
}

/// A Maildir base file name that sorts after every earlier one, because
/// Dovecot assigns UIDs to new files in file-name order. The "time" part is
/// virtual: it never goes backwards and steps by one microsecond per file.
fn unique_base(pid: u32) -> String {
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0);
    let mut prev = LAST.load(Ordering::Relaxed);
    let stamp = loop {
        let next = now.max(prev + 1);
        match LAST.compare_exchange(prev, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => break next,
            Err(actual) => prev = actual,
        }
    };
    format!(
        "{:010}.M{:06}P{pid}.testkit",
        stamp / 1_000_000,
        stamp % 1_000_000
    )
}

fn unix_to_system_time(secs: i64) -> SystemTime {
    if secs >= 0 {
        UNIX_EPOCH + Duration::from_secs(secs.unsigned_abs())
    } else {
        UNIX_EPOCH
            .checked_sub(Duration::from_secs(secs.unsigned_abs()))
            .unwrap_or(UNIX_EPOCH)
    }
}

/// Makes sure every keyword in `names` has a letter in the mailbox's
/// `dovecot-keywords` file and returns the name -> letter map.
fn update_keywords_file(
    dir: &Path,
    names: &BTreeSet<&str>,
    id: &Identity,
) -> Result<Vec<(String, char)>> {
    let path = dir.join("dovecot-keywords");
    let existing = fs::read_to_string(&path).unwrap_or_default();
    // Format: one "<index> <name>" per line, index 0..25 = letters a..z.
    let mut slots: Vec<Option<String>> = vec![None; 26];
    for l in existing.lines() {
        if let Some((idx, name)) = l.split_once(' ')
            && let Ok(idx) = idx.parse::<usize>()
            && idx < 26
        {
            slots[idx] = Some(name.to_owned());
        }
    }
    let mut changed = false;
    for name in names {
        if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
            bail!("invalid keyword {name:?}");
        }
        if slots.iter().flatten().any(|n| n == name) {
            continue;
        }
        let free = slots
            .iter()
            .position(Option::is_none)
            .ok_or_else(|| anyhow!("more than 26 keywords in {}", dir.display()))?;
        slots[free] = Some((*name).to_owned());
        changed = true;
    }
    if changed {
        let mut text = String::new();
        for (i, s) in slots.iter().enumerate() {
            if let Some(name) = s {
                text.push_str(&format!("{i} {name}\n"));
            }
        }
        write_atomic(&path, text.as_bytes(), 0o600)?;
        id.chown(&path)?;
    }
    Ok(slots
        .into_iter()
        .enumerate()
        .filter_map(|(i, s)| {
            let letter = char::from(b'a' + u8::try_from(i).ok()?);
            s.map(|n| (n, letter))
        })
        .collect())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn dot_stuffing() {
        assert_eq!(
            dot_stuff(b"a\n.b\r\n..c"),
            b"a\r\n..b\r\n...c\r\n.\r\n".to_vec()
        );
        assert_eq!(dot_stuff(b".\r\n"), b"..\r\n.\r\n".to_vec());
    }

    #[test]
    fn unique_names_sort_in_creation_order() {
        let names: Vec<String> = (0..1000).map(|_| unique_base(1)).collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted);
    }

    #[test]
    fn capability_filter() {
        let id = Identity {
            mail_uid: 1000,
            mail_gid: 1000,
            is_root: false,
            internal_user: "u".into(),
            login_user: "u".into(),
            internal_group: "g".into(),
        };
        let ports = Ports {
            imap: 1,
            imaps: 2,
            pop3: 3,
            pop3s: 4,
            lmtp: 5,
            managesieve: 6,
        };
        let opts = DovecotOptions {
            condstore: false,
            ..Default::default()
        };
        let conf = render_config(&id, &ports, &opts, Path::new("/s"), Path::new("/r"));
        let cap = conf
            .lines()
            .find(|l| l.contains("imap_capability"))
            .unwrap_or_default();
        assert!(cap.contains("IDLE") && cap.contains("NOTIFY"));
        assert!(!cap.contains("CONDSTORE") && !cap.contains("QRESYNC"));
        let default = render_config(
            &id,
            &ports,
            &DovecotOptions::default(),
            Path::new("/s"),
            Path::new("/r"),
        );
        assert!(!default.contains("imap_capability"));
        // OAuth2 is opt-in: by default neither the mechanisms nor the passdb.
        assert!(default.contains("auth_mechanisms = plain login\n"));
        assert!(!default.contains("oauth2"));
        // Sieve is opt-in too.
        assert!(!default.contains("sieve"));
        let oauth = render_config(
            &id,
            &ports,
            &DovecotOptions {
                oauth2: Some(DovecotOAuth2::new("http://c:s@127.0.0.1:9/i".into())),
                ..Default::default()
            },
            Path::new("/s"),
            Path::new("/r"),
        );
        assert!(oauth.contains("auth_mechanisms = plain login oauthbearer xoauth2\n"));
        assert!(oauth.contains("driver = oauth2"));
        // The credentials in the URL live in the separate file, not in dovecot.conf.
        assert!(!oauth.contains("c:s@"));
    }
}
