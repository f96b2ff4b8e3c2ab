//! `tidings`: the one binary. `serve` runs the engine; `demo` runs it against a private,
//! seeded Dovecot; `user` and `account` manage a data dir, running or not; `migrate`
//! copies a stopped data dir's store into PostgreSQL.

mod admin;
mod config;
mod migrate;
// The demo starts a Dovecot through the test harness, which a release binary does not
// carry: it is built with `--features demo` (scripts/demo does).
#[cfg(feature = "demo")]
mod demo;
mod secrets;
mod serve;
mod vapid;

use anyhow::Result;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "tidings",
    version,
    about = "Email sync engine, push server and JMAP API"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where the data dir (and key file) are: from a config file, or given directly.
#[derive(clap::Args, Clone)]
pub struct Location {
    /// Configuration file (its `data_dir` and `key_file` are used).
    #[arg(long, short, global = true)]
    pub config: Option<PathBuf>,
    /// Data dir, when there is no configuration file.
    #[arg(long, env = "TIDINGS_DATA_DIR", global = true)]
    pub data_dir: Option<PathBuf>,
    /// Key file for stored passwords (default: $XDG_CONFIG_HOME/tidings/secret.key).
    #[arg(long, env = "TIDINGS_KEY_FILE", global = true)]
    pub key_file: Option<PathBuf>,
}

// Parsed once at start: the size of the largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Run the sync engine (and, as they land, the JMAP API and push) from a config file.
    Serve {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Start a private Dovecot seeded with sample mail and serve it. Ctrl-C stops it all.
    Demo {
        /// Where the demo keeps its state (wiped at each start).
        #[arg(long, default_value = "tidings-demo")]
        dir: PathBuf,
        /// Address for the HTTP listener.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
        /// Three nodes on a private PostgreSQL instead of one on SQLite (ports 8081-8083).
        #[arg(long)]
        cluster: bool,
    },
    /// Manage Tidings users.
    User {
        #[command(subcommand)]
        action: admin::UserAction,
        #[command(flatten)]
        at: Location,
    },
    /// Manage API tokens (Bearer authentication).
    Token {
        #[command(subcommand)]
        action: admin::TokenAction,
        #[command(flatten)]
        at: Location,
    },
    /// Manage mail accounts.
    Account {
        #[command(subcommand)]
        action: admin::AccountAction,
        #[command(flatten)]
        at: Location,
    },
    /// The VAPID key pair that signs Web Push (RFC 8292).
    Vapid {
        #[command(subcommand)]
        action: vapid::VapidAction,
        #[command(flatten)]
        at: Location,
    },
    /// Copy the data dir's SQLite store into an empty PostgreSQL database (ids, states
    /// and credentials kept; `tidings serve` on the data dir must be stopped).
    Migrate {
        /// The database: postgres://user:password@host:port/database (or from the
        /// environment, which keeps the password out of the process list).
        #[arg(long, env = "TIDINGS_MIGRATE_TO", hide_env_values = true)]
        to: String,
        #[command(flatten)]
        at: Location,
    },
}

/// The crates of this workspace (tracing targets are module paths). Mail content is never
/// logged by them at any level.
const OWN_TARGETS: &[&str] = &[
    "tidings",
    "api",
    "jmap_server",
    "engine",
    "imap_sync",
    "pop3_sync",
    "store",
    "submit",
    "mail_types",
    "mime",
    "jmap_proto",
    "testkit",
];

/// RUST_LOG with its plain levels ("debug") applied to our own crates only: every other target
/// stays at WARN unless RUST_LOG names it. Third-party crates do log what they handle at
/// debug and trace (html5ever the text of the mail the sanitiser parses, the HTTP and
/// WebSocket stacks their frames), and mail content must never reach a log by accident.
fn log_directives(rust_log: Option<&str>) -> String {
    use tracing_subscriber::filter::LevelFilter;
    let mut out = Vec::new();
    let mut others = LevelFilter::WARN;
    let mut own = Some(LevelFilter::INFO);
    for d in rust_log.unwrap_or("").split(',').map(str::trim) {
        if d.is_empty() {
            continue;
        }
        match d.parse::<LevelFilter>() {
            Ok(level) => {
                own = Some(level);
                others = level.min(LevelFilter::WARN);
            }
            Err(_) => out.push(d.to_string()),
        }
    }
    let mut directives = vec![others.to_string()];
    if let Some(level) = own {
        directives.extend(OWN_TARGETS.iter().map(|t| format!("{t}={level}")));
    }
    // Named targets last: RUST_LOG's own words win over the defaults above.
    directives.extend(out);
    directives.join(",")
}

fn init_tracing() {
    let rust_log = std::env::var("RUST_LOG").ok();
    let filter = tracing_subscriber::EnvFilter::try_new(log_directives(rust_log.as_deref()))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(log_directives(None)));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// The blocking pool is bounded. Store calls take one
/// SQLite connection behind a mutex, so more threads than this only wait on it; tokio's
/// default (512) would let 1,000 accounts syncing at start hold a thread each.
const BLOCKING_THREADS: usize = 32;

fn main() -> Result<()> {
    init_tracing();
    let cli = Cli::parse();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(BLOCKING_THREADS)
        .build()?
        .block_on(run(cli))
}

async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Serve { config } => {
            let config = config::Config::load(&config)?;
            serve::run(config, serve::ctrl_c()).await
        }
        Command::Demo {
            dir,
            listen,
            cluster,
        } => demo(&dir, &listen, cluster).await,
        Command::User { action, at } => admin::user(action, &at).await,
        Command::Account { action, at } => admin::account(action, &at).await,
        Command::Token { action, at } => admin::token(action, &at).await,
        Command::Vapid { action, at } => vapid::vapid(action, &at).await,
        Command::Migrate { to, at } => migrate::run(&to, &at).await,
    }
}

#[cfg(feature = "demo")]
async fn demo(dir: &std::path::Path, listen: &str, cluster: bool) -> Result<()> {
    if cluster {
        demo::cluster(dir).await
    } else {
        demo::run(dir, listen).await
    }
}

#[cfg(not(feature = "demo"))]
async fn demo(_dir: &std::path::Path, _listen: &str, _cluster: bool) -> Result<()> {
    anyhow::bail!(
        "this tidings was built without the demo (it needs the test harness's Dovecot): \
         run ./scripts/demo, or build with `cargo build -p cli --features demo`"
    )
}

#[cfg(test)]
mod tests {
    use super::log_directives;

    #[test]
    fn plain_levels_reach_only_our_crates() {
        let d = log_directives(Some("debug"));
        assert!(d.starts_with("warn,"), "{d}");
        assert!(
            d.contains("api=debug") && d.contains("imap_sync=debug"),
            "{d}"
        );
        assert!(!d.contains("html5ever"), "{d}");
        let d = log_directives(Some("error,html5ever=trace"));
        assert!(
            d.starts_with("error,") && d.ends_with(",html5ever=trace"),
            "{d}"
        );
        let d = log_directives(None);
        assert!(d.starts_with("warn,") && d.contains("engine=info"), "{d}");
    }
}
