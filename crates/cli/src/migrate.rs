//! `tidings migrate --to postgres://...`: moving a data dir's SQLite store up to an empty
//! PostgreSQL database, without a resync from the mail servers and without clients
//! noticing (every id and state kept; docs/design/postgres.md, "Moving up").
//!
//! The URL may carry a password: it is never printed or logged (the advice at the end
//! shows it with the password masked).

use crate::Location;
use crate::config::Config;
use crate::serve::STORE_FILE;
use anyhow::{Context, Result, bail};
use std::io::Write;
use std::path::PathBuf;

pub async fn run(to: &str, at: &Location) -> Result<()> {
    if !(to.starts_with("postgres://") || to.starts_with("postgresql://")) {
        bail!("--to takes a postgres:// URL");
    }
    let data_dir = data_dir(at)?;
    let file = data_dir.join(STORE_FILE);
    eprintln!("Copying {} into {} ...", file.display(), masked(to));
    let started = std::time::Instant::now();
    let mut err = std::io::stderr();
    let mut progress = |p: &store::migrate::Progress| {
        // A line per table once done; a running count for the large ones.
        let _ = if p.done {
            writeln!(err, "\r  {:<18} {:>10} rows", p.table, p.rows)
        } else {
            write!(err, "\r  {:<18} {:>10} rows", p.table, p.rows)
        };
        let _ = err.flush();
    };
    let report = store::migrate::sqlite_to_postgres(&file, to, &mut progress)
        .await
        .context("the copy failed and was rolled back: the database is as it was")?;
    if report.blobs_missing > 0 {
        eprintln!(
            "  {} raw messages were missing or cut short in {}: not copied \
             (their bodies are fetched again from the server when needed)",
            report.blobs_missing,
            data_dir.join("blobs").display()
        );
    }
    let rows: u64 = report.tables.iter().map(|(_, n)| n).sum();
    eprintln!(
        "Done: {rows} rows in {} tables, {:.1} s. The SQLite store is unchanged.",
        report.tables.len(),
        started.elapsed().as_secs_f64()
    );
    println!(
        "To serve from PostgreSQL, put this in the configuration (with the URL's password):\n\
         \n    store = \"{}\"\n\n\
         and keep key_file: the accounts' credentials are copied encrypted with it.",
        masked(to)
    );
    Ok(())
}

fn data_dir(at: &Location) -> Result<PathBuf> {
    if let Some(c) = &at.config {
        return Ok(Config::load(c)?.data_dir);
    }
    match &at.data_dir {
        Some(d) => Ok(d.clone()),
        None => bail!("give --config FILE or --data-dir DIR"),
    }
}

/// The URL with its password (in the user info or a `password=` parameter) masked.
fn masked(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let (authority, tail) = match rest.find(['/', '?']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let authority = match authority.rsplit_once('@') {
        Some((user, host)) => match user.split_once(':') {
            Some((name, _)) => format!("{name}:****@{host}"),
            None => format!("{user}@{host}"),
        },
        None => authority.to_string(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|kv| match kv.split_once('=') {
                    Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=****"),
                    _ => kv.to_string(),
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => tail.to_string(),
    };
    format!("{scheme}://{authority}{tail}")
}

#[cfg(test)]
mod tests {
    use super::masked;

    #[test]
    fn passwords_are_masked() {
        assert_eq!(
            masked("postgres://tid:s3cret@db:5432/mail?sslmode=disable"),
            "postgres://tid:****@db:5432/mail?sslmode=disable"
        );
        assert_eq!(
            masked("postgres://db/mail?user=tid&password=s3cret"),
            "postgres://db/mail?user=tid&password=****"
        );
        assert_eq!(masked("postgres://tid@db/mail"), "postgres://tid@db/mail");
    }
}
