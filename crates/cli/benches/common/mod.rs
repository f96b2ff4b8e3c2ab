//! What the bench binaries share (each includes this module with `mod common;` and uses
//! the parts it needs): a keep-alive JMAP client over plain HTTP/1.1, the way a JMAP
//! client talks to its server, and the environment knobs.
#![allow(dead_code)]

use anyhow::{Result, bail};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// `name` from the environment as a number, else `default`.
pub fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A keep-alive HTTP/1.1 connection to `/jmap/api`, signed in as the benches' user
/// `bench` (password `x`).
pub struct Http {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Http {
    pub fn connect(port: u16, read_timeout: Duration) -> Result<Http> {
        let s = TcpStream::connect(("127.0.0.1", port))?;
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(read_timeout))?;
        Ok(Http {
            reader: BufReader::new(s.try_clone()?),
            writer: s,
        })
    }

    /// POSTs a JMAP request and returns the response object (an error unless 200).
    pub fn post(&mut self, body: &str) -> Result<serde_json::Value> {
        write!(
            self.writer,
            "POST /jmap/api HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Basic YmVuY2g6eA==\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )?;
        let mut status = String::new();
        self.reader.read_line(&mut status)?;
        if !status.contains(" 200 ") {
            bail!("HTTP status {status}");
        }
        let mut len = 0usize;
        loop {
            let mut line = String::new();
            self.reader.read_line(&mut line)?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some(v) = l.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse()?;
            }
        }
        let mut buf = vec![0u8; len];
        self.reader.read_exact(&mut buf)?;
        Ok(serde_json::from_slice(&buf)?)
    }
}
