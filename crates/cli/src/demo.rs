//! `tidings demo`: a private Dovecot seeded with a few hundred sample messages, and
//! `tidings serve` on it with the SQLite store. Ctrl-C stops both.

use crate::config::{AccountConfig, Config, UserConfig};
use anyhow::{Context, Result};
use mail_types::{AccountKind, Security};
use std::path::Path;
use testkit::{Dovecot, DovecotOptions, corpus};

const DEMO_USER: &str = "alice";
const DEMO_PASSWORD: &str = "demo";
const MAIL_USER: &str = "alice@example.org";
const MAIL_PASSWORD: &str = "alice-imap";

pub async fn run(dir: &Path, listen: &str) -> Result<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("clearing {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let dir = dir.canonicalize()?;
    // Dovecot's state goes to a temp dir (removed when it stops): as root its mail belongs
    // to `nobody`, which cannot reach a demo dir under /root.
    let dovecot = tokio::task::spawn_blocking(move || -> Result<Dovecot> {
        // With Pigeonhole: the demo account has Sieve filters and a vacation response.
        let d = Dovecot::start(DovecotOptions {
            sieve: true,
            ..DovecotOptions::default()
        })?;
        d.add_user(MAIL_USER, MAIL_PASSWORD)?;
        d.seed_corpus(MAIL_USER, &corpus::demo_corpus())?;
        Ok(d)
    })
    .await??;

    let config = Config {
        listen: listen.to_string(),
        public_url: None,
        tls_cert: None,
        tls_key: None,
        data_dir: dir.join("data"),
        key_file: Some(dir.join("key/secret.key")),
        user: vec![UserConfig {
            name: DEMO_USER.into(),
            password: DEMO_PASSWORD.into(),
        }],
        account: vec![AccountConfig {
            user: DEMO_USER.into(),
            name: "demo".into(),
            kind: AccountKind::Imap,
            host: "127.0.0.1".into(),
            port: dovecot.imaps_port(),
            security: Security::Tls,
            username: MAIL_USER.into(),
            password: MAIL_PASSWORD.into(),
            auth: Default::default(),
            oauth_provider: None,
            refresh_token_file: None,
            ca_file: Some(dovecot.ca_file().to_path_buf()),
            smtp: None,
            delete_after_days: None,
            provider: None,
            bodies_days: None,
            daily_download_mb: None,
            sieve: None,
            sieve_host: None,
            sieve_port: dovecot.managesieve_port(),
        }],
        oauth_provider: Vec::new(),
        push_connections_per_user: None,
        push_subscription_allow_http: false,
        push_subscription_allow_private: false,
        vapid_key_file: None,
        push_vapid_subject: None,
        imap_notify_flush_ms: None,
        imap_notify_flush_always: false,
        trusted_proxies: Vec::new(),
        http_header_read_timeout_ms: None,
        http_idle_timeout_ms: None,
        http_body_idle_timeout_ms: None,
        http_max_connections_per_address: None,
        imap_background_bodies: true,
        // Accounts added from the web client may live on the demo's Dovecot too.
        setup_ca_file: Some(dovecot.ca_file().to_path_buf()),
        setup_dns_server: None,
        setup_autoconfig_base: None,
    };
    let data_dir = config.data_dir.display().to_string();
    let key_file = dir.join("key/secret.key").display().to_string();
    println!(
        "\nTidings demo\n\
         ------------\n\
         A private Dovecot runs on 127.0.0.1 (IMAPS {imaps}, IMAP+STARTTLS {imap}, POP3 {pop3}, LMTP {lmtp})\n\
         with {n} sample messages for {MAIL_USER} (password {MAIL_PASSWORD}); its CA is {ca}.\n\
         Tidings syncs it into {data_dir}.\n\n\
         Open the web client at http://{listen}/ and sign in as {DEMO_USER} / {DEMO_PASSWORD}.\n\
         Any JMAP client works too, against http://{listen}/.well-known/jmap, e.g.\n\
         \x20 curl -u {DEMO_USER}:{DEMO_PASSWORD} http://{listen}/.well-known/jmap\n\
         \x20 curl -u {DEMO_USER}:{DEMO_PASSWORD} http://{listen}/jmap/api -d '{{\"using\":[\"urn:ietf:params:jmap:core\",\n\
         \x20   \"urn:ietf:params:jmap:mail\"],\"methodCalls\":[[\"Mailbox/get\",{{\"accountId\":\"a1\"}},\"0\"]]}}'\n\
         \x20 watch the sync:   tidings account list --data-dir {data_dir} --key-file {key_file}\n\
         \x20 change the mail: with any IMAP client on port {imap} (or LMTP on {lmtp}); each\n\
         \x20 change reaches the store within milliseconds (NOTIFY) and shows in the log below.\n\n\
         Ctrl-C stops Tidings and the Dovecot it started.\n",
        imaps = dovecot.imaps_port(),
        imap = dovecot.imap_port(),
        pop3 = dovecot.pop3_port(),
        lmtp = dovecot.lmtp_port(),
        n = corpus::demo_corpus().len(),
        ca = dovecot.ca_file().display(),
    );
    let result = crate::serve::run(config, crate::serve::ctrl_c()).await;
    drop(dovecot);
    result
}
