//! Starts a private Dovecot with one user and the demo corpus and keeps it
//! running, for poking at it by hand:
//!
//! ```text
//! cargo run -p testkit --example serve -- [seconds] [state-dir] [messages]
//! ```
//!
//! With `messages`, a generated corpus of that size (the benchmarks' 5 folders) replaces
//! the demo corpus.
//!
//! ```text
//! ```
use std::time::Instant;

use anyhow::Context;
use testkit::{Dovecot, DovecotOptions, corpus};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let secs: u64 = match args.next() {
        Some(s) => s.parse().context("seconds must be a number")?,
        None => 300,
    };
    let state_dir = args.next().filter(|s| !s.is_empty()).map(Into::into);
    let count: Option<usize> = match args.next() {
        Some(n) => Some(n.parse().context("messages must be a number")?),
        None => None,
    };
    let t = Instant::now();
    let d = Dovecot::start(DovecotOptions {
        state_dir,
        ..Default::default()
    })?;
    d.add_user("alice@example.org", "secret")?;
    let messages = match count {
        Some(n) => corpus::generate(
            42,
            n,
            &["INBOX", "Archive", "Sent", "Work", "Lists/rust-users"],
        ),
        None => corpus::demo_corpus(),
    };
    d.seed_corpus("alice@example.org", &messages)?;
    drop(messages);
    println!("ready in {:?}", t.elapsed());
    println!("user alice@example.org / secret");
    println!(
        "imap {} imaps {} pop3 {} pop3s {} lmtp {}",
        d.imap_port(),
        d.imaps_port(),
        d.pop3_port(),
        d.pop3s_port(),
        d.lmtp_port()
    );
    println!("ca {}", d.ca_file().display());
    println!("state {}", d.state_dir().display());
    std::thread::sleep(std::time::Duration::from_secs(secs));
    Ok(())
}
