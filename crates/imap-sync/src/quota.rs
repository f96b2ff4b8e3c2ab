//! IMAP QUOTA (RFC 2087, RFC 9208): the account's storage and message limits, asked with
//! GETQUOTAROOT INBOX (and GETQUOTA for a root the server named without its figures), and
//! kept in the store for JMAP Quota (RFC 9425).
//!
//! The untagged QUOTA and QUOTAROOT responses are parsed here, not by `imap-proto`: every
//! figure is checked (RFC 9208 4.1 `number64` is at most 2^63-1, and JMAP carries at most
//! 2^53-1, RFC 8620 1.3), names are bounded, and a line that does not parse is dropped
//! whole rather than half believed.

use crate::response::Response;
use crate::session::Session;
use crate::sync::AccountSync;
use crate::{Error, Result};

/// `* QUOTAROOT <mailbox> <root>...` (RFC 9208 5.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaRoot {
    pub mailbox: String,
    pub roots: Vec<String>,
}

/// One resource of a quota root: its name (upper case, e.g. `STORAGE` in KiB, `MESSAGE`
/// as a count), usage and limit as the server sent them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaResource {
    pub name: String,
    pub usage: u64,
    pub limit: u64,
}

/// `* QUOTA <root> (<resource> <usage> <limit>...)` (RFC 9208 5.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quota {
    pub root: String,
    pub resources: Vec<QuotaResource>,
}

/// Longest root or resource name kept; real ones are a few words.
const MAX_NAME: usize = 1024;
/// Most resources per root kept; RFC 9208 defines six.
const MAX_RESOURCES: usize = 16;
/// Most quota roots asked for one mailbox.
const MAX_ROOTS: usize = 8;
/// RFC 9208 4.1: `number64` is a signed 63-bit number.
const MAX_NUMBER64: u64 = i64::MAX as u64;

/// A cursor over one response line.
struct Tokens<'a> {
    rest: &'a [u8],
}

impl<'a> Tokens<'a> {
    fn skip_space(&mut self) {
        while let [b' ', tail @ ..] = self.rest {
            self.rest = tail;
        }
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        self.skip_space();
        match self.rest {
            [first, tail @ ..] if *first == c => {
                self.rest = tail;
                Some(())
            }
            _ => None,
        }
    }

    fn at_end(&mut self) -> bool {
        self.skip_space();
        self.rest.iter().all(|b| matches!(b, b'\r' | b'\n'))
    }

    /// An astring (RFC 3501 9): atom, quoted string or literal.
    fn astring(&mut self) -> Option<String> {
        self.skip_space();
        let out = match self.rest.first()? {
            b'"' => {
                let mut out = Vec::new();
                let mut i = 1;
                loop {
                    match self.rest.get(i)? {
                        b'"' => break,
                        b'\\' => {
                            out.push(*self.rest.get(i + 1)?);
                            i += 2;
                        }
                        b'\r' | b'\n' => return None,
                        b => {
                            out.push(*b);
                            i += 1;
                        }
                    }
                    if out.len() > MAX_NAME {
                        return None;
                    }
                }
                self.rest = &self.rest[i + 1..];
                out
            }
            b'{' => {
                let close = self.rest.iter().position(|b| *b == b'}')?;
                let digits = std::str::from_utf8(&self.rest[1..close]).ok()?;
                let n: usize = digits.trim_end_matches('+').parse().ok()?;
                if n > MAX_NAME {
                    return None;
                }
                let body = self.rest.get(close + 1..)?.strip_prefix(b"\r\n")?;
                let out = body.get(..n)?.to_vec();
                self.rest = &body[n..];
                out
            }
            _ => {
                let end = self
                    .rest
                    .iter()
                    .position(|b| matches!(b, b' ' | b'(' | b')' | b'\r' | b'\n' | b'"' | b'{'))
                    .unwrap_or(self.rest.len());
                if end == 0
                    || end > MAX_NAME
                    || !self.rest[..end].iter().all(|b| (0x21..0x7f).contains(b))
                {
                    return None;
                }
                let out = self.rest[..end].to_vec();
                self.rest = &self.rest[end..];
                out
            }
        };
        String::from_utf8(out).ok()
    }

    /// A `number64`: digits only, at most 2^63-1.
    fn number64(&mut self) -> Option<u64> {
        self.skip_space();
        let end = self
            .rest
            .iter()
            .position(|b| !b.is_ascii_digit())
            .unwrap_or(self.rest.len());
        if end == 0 || end > 19 {
            return None;
        }
        let n: u64 = std::str::from_utf8(&self.rest[..end]).ok()?.parse().ok()?;
        self.rest = &self.rest[end..];
        (n <= MAX_NUMBER64).then_some(n)
    }
}

/// A QUOTA or QUOTAROOT line as a response; `Some(Response::Other)` for one that does not
/// parse (it is then ignored, never half used); `None` for any other line.
pub(crate) fn parse_frame(frame: &[u8]) -> Option<Response> {
    let line = frame.strip_prefix(b"* ")?;
    let word_end = line
        .iter()
        .position(|b| matches!(b, b' ' | b'\r' | b'\n'))
        .unwrap_or(line.len());
    let word = &line[..word_end];
    let mut t = Tokens {
        rest: &line[word_end..],
    };
    if word.eq_ignore_ascii_case(b"QUOTAROOT") {
        return Some(quota_root(&mut t).map_or(Response::Other, Response::QuotaRoot));
    }
    if word.eq_ignore_ascii_case(b"QUOTA") {
        return Some(quota(&mut t).map_or(Response::Other, Response::Quota));
    }
    None
}

fn quota_root(t: &mut Tokens<'_>) -> Option<QuotaRoot> {
    let mailbox = t.astring()?;
    let mut roots = Vec::new();
    while !t.at_end() {
        let root = t.astring()?;
        if roots.len() < MAX_ROOTS {
            roots.push(root);
        }
    }
    Some(QuotaRoot { mailbox, roots })
}

fn quota(t: &mut Tokens<'_>) -> Option<Quota> {
    let root = t.astring()?;
    t.eat(b'(')?;
    let mut resources = Vec::new();
    loop {
        if t.eat(b')').is_some() {
            break;
        }
        let name = t.astring()?.to_ascii_uppercase();
        let usage = t.number64()?;
        let limit = t.number64()?;
        if resources.len() >= MAX_RESOURCES {
            return None;
        }
        resources.push(QuotaResource { name, usage, limit });
    }
    t.at_end().then_some(Quota { root, resources })
}

/// RFC 9208 5.1: STORAGE is counted in units of 1024 octets.
pub const STORAGE_UNIT: u64 = 1024;
/// RFC 8620 1.3: a JMAP UnsignedInt is at most 2^53-1; larger figures are not believed.
pub const MAX_JMAP_INT: u64 = (1 << 53) - 1;

/// The quota figures of an account, as JMAP Quota (RFC 9425 2) wants them: STORAGE in
/// octets, MESSAGE as a count; other resources (MAILBOX, ANNOTATION-STORAGE) have no
/// JMAP resource type and are left out, and so is a figure too large to be true.
pub fn to_store(quotas: &[Quota]) -> Vec<store::QuotaValue> {
    let mut out = Vec::new();
    for q in quotas {
        for r in &q.resources {
            let (resource, unit) = match r.name.as_str() {
                "STORAGE" => (store::QuotaResource::Octets, STORAGE_UNIT),
                "MESSAGE" => (store::QuotaResource::Count, 1),
                _ => continue,
            };
            let (Some(used), Some(limit)) = (r.usage.checked_mul(unit), r.limit.checked_mul(unit))
            else {
                continue;
            };
            if used > MAX_JMAP_INT || limit > MAX_JMAP_INT {
                continue;
            }
            if out
                .iter()
                .any(|v: &store::QuotaValue| v.root == q.root && v.resource == resource)
            {
                continue;
            }
            out.push(store::QuotaValue {
                root: q.root.clone(),
                resource,
                used,
                hard_limit: limit,
            });
        }
    }
    out
}

impl Session {
    /// The quotas that apply to INBOX (RFC 9208 4.3 GETQUOTAROOT, and 4.2 GETQUOTA for a
    /// root named without its figures); `None` when the server does not advertise QUOTA.
    /// A refusal (`NO`: no quota, or not allowed to see it) is an empty list.
    pub async fn quota(&mut self) -> Result<Option<Vec<Quota>>> {
        if !self.has("QUOTA") {
            return Ok(None);
        }
        let mut roots: Vec<String> = Vec::new();
        let mut quotas: Vec<Quota> = Vec::new();
        let untagged = match self.run("GETQUOTAROOT INBOX").await {
            Ok((untagged, _)) => untagged,
            Err(Error::Refused { .. }) => return Ok(Some(Vec::new())),
            Err(e) => return Err(e),
        };
        self.collect(untagged, &mut roots, &mut quotas);
        for root in roots {
            if quotas.iter().any(|q| q.root == root) {
                continue;
            }
            // A root that cannot be sent as a quoted string is not asked for.
            let Some(arg) = crate::conn::quote(&root) else {
                continue;
            };
            match self.run(&format!("GETQUOTA {arg}")).await {
                Ok((untagged, _)) => self.collect(untagged, &mut Vec::new(), &mut quotas),
                Err(Error::Refused { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(Some(quotas))
    }

    fn collect(&mut self, untagged: Vec<Response>, roots: &mut Vec<String>, out: &mut Vec<Quota>) {
        for r in untagged {
            match r {
                Response::QuotaRoot(qr) if qr.mailbox.eq_ignore_ascii_case("INBOX") => {
                    for root in qr.roots {
                        if !roots.contains(&root) && roots.len() < MAX_ROOTS {
                            roots.push(root);
                        }
                    }
                }
                Response::Quota(q) => {
                    if !out.iter().any(|o| o.root == q.root) && out.len() < MAX_ROOTS {
                        out.push(q);
                    }
                }
                Response::QuotaRoot(_) | Response::Other => {}
                other => self.unsolicited.push(other),
            }
        }
    }
}

impl AccountSync {
    /// Brings the account's quota in the store in line with the server's (cheap: one
    /// round trip, two when the server names a root without its figures). A server without
    /// QUOTA has none, and loses any it had.
    pub async fn sync_quota(&self, s: &mut Session) -> Result<()> {
        let values = match s.quota().await? {
            Some(q) => to_store(&q),
            None => Vec::new(),
        };
        // The common case, nothing moved, is answered from a read: the writer (which the
        // sync's own batches queue for) is only taken for a change.
        let stored = self.store.quotas(self.account).await?;
        if stored.len() == values.len() && stored.iter().all(|r| values.contains(&r.value)) {
            return Ok(());
        }
        if self.store.apply_quotas(self.account, &values).await? {
            tracing::debug!(account = %self.account, quotas = values.len(), "quota changed");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Option<Response> {
        parse_frame(s.as_bytes())
    }

    #[test]
    fn dovecot_lines() {
        let Some(Response::QuotaRoot(r)) = parse("* QUOTAROOT \"INBOX\" \"User quota\"\r\n") else {
            panic!("no quota root");
        };
        assert_eq!(r.mailbox, "INBOX");
        assert_eq!(r.roots, vec!["User quota".to_string()]);
        let Some(Response::Quota(q)) =
            parse("* QUOTA \"User quota\" (STORAGE 12 10240 MESSAGE 3 1000)\r\n")
        else {
            panic!("no quota");
        };
        assert_eq!(q.root, "User quota");
        assert_eq!(
            q.resources,
            vec![
                QuotaResource {
                    name: "STORAGE".into(),
                    usage: 12,
                    limit: 10240
                },
                QuotaResource {
                    name: "MESSAGE".into(),
                    usage: 3,
                    limit: 1000
                },
            ]
        );
        let v = to_store(&[q]);
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].resource, store::QuotaResource::Octets);
        assert_eq!((v[0].used, v[0].hard_limit), (12 * 1024, 10240 * 1024));
        assert_eq!(v[1].resource, store::QuotaResource::Count);
        assert_eq!((v[1].used, v[1].hard_limit), (3, 1000));
    }

    #[test]
    fn other_forms() {
        // A root with no quota, an atom root, a literal root, lower-case names.
        assert!(matches!(
            parse("* QUOTAROOT INBOX\r\n"),
            Some(Response::QuotaRoot(QuotaRoot { roots, .. })) if roots.is_empty()
        ));
        assert!(matches!(
            parse("* quota \"\" ()\r\n"),
            Some(Response::Quota(Quota { resources, .. })) if resources.is_empty()
        ));
        let Some(Response::Quota(q)) = parse("* QUOTA {4}\r\nr\"ot (storage 1 2)\r\n") else {
            panic!("literal root");
        };
        assert_eq!(q.root, "r\"ot");
        assert_eq!(q.resources[0].name, "STORAGE");
        assert!(parse("* OK fine\r\n").is_none());
        assert!(parse("* QUOTAS x\r\n").is_none());
    }

    #[test]
    fn garbage_is_dropped_whole() {
        for bad in [
            "* QUOTA \"r\" (STORAGE 1)\r\n",
            "* QUOTA \"r\" (STORAGE x 2)\r\n",
            "* QUOTA \"r\" (STORAGE -1 2)\r\n",
            "* QUOTA \"r\" (STORAGE 1 2\r\n",
            "* QUOTA \"r\" STORAGE 1 2\r\n",
            "* QUOTA \"r\" (STORAGE 9223372036854775808 2)\r\n",
            "* QUOTA \"r\" (STORAGE 99999999999999999999999999 2)\r\n",
            "* QUOTA \"r\" (STORAGE 1 2) trailing\r\n",
            "* QUOTA \"unterminated (STORAGE 1 2)\r\n",
            "* QUOTA {999999999}\r\nx (STORAGE 1 2)\r\n",
            "* QUOTA {5}\r\nab",
            "* QUOTAROOT\r\n",
            "* QUOTA \u{e9}\u{e9} (STORAGE 1 2)\r\n",
        ] {
            assert!(matches!(parse(bad), Some(Response::Other)), "{bad:?}");
        }
        let many = format!("* QUOTA r ({})\r\n", "STORAGE 1 2 ".repeat(100));
        assert!(matches!(parse(&many), Some(Response::Other)));
    }

    #[test]
    fn huge_figures_are_not_believed() {
        // Valid number64, but as octets beyond what JMAP can carry (2^53-1).
        let q = Quota {
            root: "r".into(),
            resources: vec![
                QuotaResource {
                    name: "STORAGE".into(),
                    usage: 1,
                    limit: MAX_NUMBER64,
                },
                QuotaResource {
                    name: "MESSAGE".into(),
                    usage: MAX_JMAP_INT + 1,
                    limit: 5,
                },
                QuotaResource {
                    name: "MAILBOX".into(),
                    usage: 1,
                    limit: 5,
                },
            ],
        };
        assert!(to_store(&[q]).is_empty());
    }
}
