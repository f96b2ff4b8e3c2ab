//! `tidings demo`: a private Dovecot seeded with a few hundred sample messages, and
//! `tidings serve` on it with the SQLite store. Ctrl-C stops both. `--cluster`: three
//! `tidings serve` nodes on a private PostgreSQL instead (docs/cluster.md).

use crate::config::{AccountConfig, Config, UserConfig};
use anyhow::{Context, Result};
use mail_types::{AccountKind, Security};
use std::path::Path;
use testkit::{Dovecot, DovecotOptions, Postgres, corpus};

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
        store: None,
        node_name: None,
        lease_ttl_ms: None,
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

/// Mail accounts of the cluster demo: enough for each node to hold a few.
const CLUSTER_ACCOUNTS: usize = 6;
/// The nodes' ports (127.0.0.1).
const CLUSTER_PORTS: [u16; 3] = [8081, 8082, 8083];

/// Three `tidings serve` processes on one private PostgreSQL, syncing six accounts of a
/// private Dovecot between them. Each node is a child process, so that one can be killed
/// (`kill -9`) to watch its accounts move; Ctrl-C stops them all.
pub async fn cluster(dir: &Path) -> Result<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("clearing {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let dir = dir.canonicalize()?;
    let (dovecot, pg) = tokio::task::spawn_blocking(move || -> Result<(Dovecot, Postgres)> {
        let d = Dovecot::start(DovecotOptions::default())?;
        let corpus = corpus::demo_corpus();
        for i in 0..CLUSTER_ACCOUNTS {
            let user = format!("user{i}@example.org");
            d.add_user(&user, MAIL_PASSWORD)?;
            d.seed_corpus(&user, &corpus)?;
        }
        Ok((d, Postgres::start()?))
    })
    .await??;
    let url = pg.fresh_database()?;
    let mut accounts = String::new();
    for i in 0..CLUSTER_ACCOUNTS {
        accounts.push_str(&format!(
            "[[account]]\nuser = \"{DEMO_USER}\"\nname = \"user{i}\"\nkind = \"imap\"\n\
             host = \"127.0.0.1\"\nport = {port}\nsecurity = \"tls\"\n\
             username = \"user{i}@example.org\"\npassword = \"{MAIL_PASSWORD}\"\n\
             ca_file = \"{ca}\"\n",
            port = dovecot.imaps_port(),
            ca = dovecot.ca_file().display(),
        ));
    }
    let exe = std::env::current_exe().context("the tidings binary")?;
    let mut nodes = Vec::new();
    for (i, port) in CLUSTER_PORTS.iter().enumerate() {
        let own = dir.join(format!("node{}", i + 1));
        std::fs::create_dir_all(&own)?;
        let config = own.join("tidings.toml");
        std::fs::write(
            &config,
            format!(
                "listen = \"127.0.0.1:{port}\"\nstore = \"{url}\"\n\
                 node_name = \"node{n}\"\ndata_dir = \"{data}\"\n\
                 key_file = \"{key}\"\nvapid_key_file = \"{vapid}\"\n\
                 [[user]]\nname = \"{DEMO_USER}\"\npassword = \"{DEMO_PASSWORD}\"\n{accounts}",
                n = i + 1,
                data = own.join("data").display(),
                key = dir.join("key/secret.key").display(),
                vapid = dir.join("key/vapid.pem").display(),
            ),
        )?;
        let child = tokio::process::Command::new(&exe)
            .args(["serve", "--config"])
            .arg(&config)
            .kill_on_drop(true)
            .spawn()
            .context("starting a node")?;
        println!(
            "node{} (pid {}) on http://127.0.0.1:{port}/",
            i + 1,
            child.id().unwrap_or(0)
        );
        nodes.push(child);
        if i == 0 {
            // The first node makes the users and accounts of the configuration; the
            // others find them.
            tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        }
    }
    println!(
        "\nTidings cluster demo\n\
         --------------------\n\
         Three nodes share one PostgreSQL (port {pgport}) and {CLUSTER_ACCOUNTS} accounts of a private\n\
         Dovecot (IMAPS {imaps}). Sign in on any node as {DEMO_USER} / {DEMO_PASSWORD}.\n\
         Who holds which account:\n\
         \x20 psql -h {socket} -p {pgport} -U postgres {db} -c 'SELECT * FROM account_lease'\n\
         Kill a node (kill -9 <pid>): its accounts move to the others within seconds.\n\
         Ctrl-C stops everything.\n",
        pgport = pg.port(),
        imaps = dovecot.imaps_port(),
        socket = pg.socket_dir().display(),
        db = url.rsplit('/').next().unwrap_or_default(),
    );
    crate::serve::ctrl_c().await;
    for mut n in nodes {
        let _ = n.start_kill();
        let _ = n.wait().await;
    }
    drop(pg);
    drop(dovecot);
    Ok(())
}
