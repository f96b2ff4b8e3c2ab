//! The private PostgreSQL: it starts, a real client connects over loopback and runs
//! queries, each test database is its own, and dropping the value removes everything.

// Panicking on unexpected errors is what a test should do.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};
use testkit::Postgres;

async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
}

#[tokio::test]
async fn starts_accepts_a_client_and_runs_a_query() {
    let pg = Postgres::shared().unwrap();
    let url = pg.fresh_database().unwrap();
    assert!(url.starts_with(&format!("postgres://postgres@127.0.0.1:{}/", pg.port())));
    let client = connect(&url).await;
    let row = client
        .query_one(
            "SELECT $1::int4 + 1, current_setting('server_encoding')",
            &[&41i32],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i32>(0), 42);
    assert_eq!(row.get::<_, String>(1), "UTF8");
    // Durability is off on purpose (throw-away data), and only loopback listens.
    let row = client
        .query_one(
            "SELECT current_setting('fsync'), current_setting('listen_addresses')",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "off");
    assert_eq!(row.get::<_, String>(1), "127.0.0.1");
}

#[tokio::test]
async fn fresh_databases_are_separate() {
    let pg = Postgres::shared().unwrap();
    let a = connect(&pg.fresh_database().unwrap()).await;
    let b_url = pg.fresh_database().unwrap();
    a.batch_execute("CREATE TABLE t (x int); INSERT INTO t VALUES (1)")
        .await
        .unwrap();
    let b = connect(&b_url).await;
    let err = b.query("SELECT x FROM t", &[]).await.unwrap_err();
    assert_eq!(
        err.code(),
        Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE)
    );
}

#[test]
fn drop_stops_the_server_and_removes_its_directory() {
    let pg = Postgres::start().unwrap();
    let port = pg.port();
    let dir = pg.socket_dir().parent().unwrap().to_path_buf();
    assert_eq!(pg.psql("postgres", "SELECT 6 * 7").unwrap(), "42");
    assert!(dir.join("data/PG_VERSION").exists());
    drop(pg);
    assert!(!dir.exists(), "{} left behind", dir.display());
    // The port no longer answers (bounded: the server is already gone when drop returns).
    let deadline = Instant::now() + Duration::from_secs(5);
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    while std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
        assert!(Instant::now() < deadline, "port {port} still accepting");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_port_and_data_and_closes_clients() {
    let mut pg = Postgres::start().unwrap();
    let port = pg.port();
    let url = pg.fresh_database().unwrap();
    let before = connect(&url).await;
    before
        .batch_execute("CREATE TABLE t (x int); INSERT INTO t VALUES (7)")
        .await
        .unwrap();
    tokio::task::block_in_place(|| pg.restart()).unwrap();
    assert_eq!(pg.port(), port);
    // The old connection was closed by the shutdown.
    assert!(before.query("SELECT 1", &[]).await.is_err());
    let after = connect(&url).await;
    let x: i32 = after
        .query_one("SELECT x FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(x, 7);
    drop(after);
    // Dropped after a restart, it still removes everything and stops the server.
    let dir = pg.socket_dir().parent().unwrap().to_path_buf();
    tokio::task::block_in_place(|| drop(pg));
    assert!(!dir.exists(), "{} left behind", dir.display());
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    assert!(std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err());
}
