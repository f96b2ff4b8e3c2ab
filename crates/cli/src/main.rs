//! `tidings`: the one binary. `serve` runs the engine; `demo` runs it against a private,
//! seeded Dovecot; `user` and `account` manage a data dir, running or not.

mod admin;
mod config;
mod demo;
mod secrets;
mod serve;

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
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// --- many watched accounts (issue 4): the blocking pool is bounded. Store calls take one
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
        Command::Demo { dir, listen } => demo::run(&dir, &listen).await,
        Command::User { action, at } => admin::user(action, &at).await,
        Command::Account { action, at } => admin::account(action, &at).await,
        Command::Token { action, at } => admin::token(action, &at).await,
    }
}
