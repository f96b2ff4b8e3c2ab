//! Ids and newtypes shared by every Tidings crate. No I/O, no SQL, no tokio.
//!
//! # Layout
//! - ids: `UserId`, `AccountId`, `MailboxId`, `EmailId`, `ThreadId` (store row ids)
//! - IMAP identity: `UidValidity`, `Uid`, `ModSeq`; a UID is never meaningful without its
//!   mailbox's UIDVALIDITY, so sync state carries both together.
//! - `State`: the per-account JMAP state counter bumped by every committed change.
//! - `Role`, `Keyword`: the JMAP view of IMAP special-use attributes and flags.
//! - `SyncStatus`: what the engine last knew about an account's connection.
//! - `budget`: an account's daily download budget (bytes today against the limit).

pub mod budget;

pub use budget::DownloadBudget;
use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! row_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub struct $name(pub i64);
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }
    };
}

row_id!(
    /// A Tidings user (someone who signs in to Tidings).
    UserId
);
row_id!(
    /// One configured mail account (IMAP or POP3) of a user; one JMAP account.
    AccountId
);
row_id!(
    /// A mailbox of an account, stable across renames on the server.
    MailboxId
);
row_id!(
    /// A JMAP Email: one message, whatever mailboxes hold copies of it.
    EmailId
);
row_id!(
    /// A JMAP Thread.
    ThreadId
);

/// RFC 3501 2.3.1.1: UIDs are only unique together with the mailbox's UIDVALIDITY.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct UidValidity(pub u32);

/// An IMAP UID inside one mailbox (and one UIDVALIDITY epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Uid(pub u32);

/// RFC 7162 mod-sequence. 0 means "the server gave none".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ModSeq(pub u64);

/// The per-account change counter. Every transaction that changes an account's data bumps
/// it exactly once; JMAP state strings and push are derived from it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default,
)]
pub struct State(pub i64);

/// Mailbox roles of RFC 8621 2 (from RFC 6154 special-use attributes, or "inbox").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Inbox,
    Archive,
    Drafts,
    Sent,
    Trash,
    Junk,
    All,
    Flagged,
    Important,
}

impl Role {
    /// The JMAP role name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Inbox => "inbox",
            Role::Archive => "archive",
            Role::Drafts => "drafts",
            Role::Sent => "sent",
            Role::Trash => "trash",
            Role::Junk => "junk",
            Role::All => "all",
            Role::Flagged => "flagged",
            Role::Important => "important",
        }
    }

    /// Parses a JMAP role name.
    pub fn from_name(s: &str) -> Option<Role> {
        Some(match s {
            "inbox" => Role::Inbox,
            "archive" => Role::Archive,
            "drafts" => Role::Drafts,
            "sent" => Role::Sent,
            "trash" => Role::Trash,
            "junk" => Role::Junk,
            "all" => Role::All,
            "flagged" => Role::Flagged,
            "important" => Role::Important,
            _ => return None,
        })
    }

    /// RFC 6154 special-use attribute (with its backslash), case-insensitive.
    pub fn from_special_use(attr: &str) -> Option<Role> {
        let a = attr.trim_start_matches('\\').to_ascii_lowercase();
        Some(match a.as_str() {
            "archive" => Role::Archive,
            "drafts" => Role::Drafts,
            "sent" => Role::Sent,
            "trash" => Role::Trash,
            "junk" => Role::Junk,
            "all" => Role::All,
            "flagged" => Role::Flagged,
            "important" => Role::Important,
            _ => return None,
        })
    }
}

/// Maps an IMAP flag or keyword to its JMAP keyword (RFC 8621 4.1.1): system flags become
/// `$seen` and friends, keywords are lowercased because IMAP keywords are case-insensitive.
/// `\Recent` and `\Deleted` have no JMAP keyword and give `None`.
pub fn imap_flag_to_keyword(flag: &str) -> Option<String> {
    let lower = flag.to_ascii_lowercase();
    match lower.as_str() {
        "\\seen" => Some("$seen".into()),
        "\\flagged" => Some("$flagged".into()),
        "\\answered" => Some("$answered".into()),
        "\\draft" => Some("$draft".into()),
        "\\recent" | "\\deleted" | "\\*" => None,
        _ if lower.starts_with('\\') => None,
        _ if lower.is_empty() || lower.len() > 255 => None,
        _ => Some(lower),
    }
}

/// The IMAP flag for a JMAP keyword (inverse of [`imap_flag_to_keyword`]).
pub fn keyword_to_imap_flag(keyword: &str) -> String {
    match keyword {
        "$seen" => "\\Seen".into(),
        "$flagged" => "\\Flagged".into(),
        "$answered" => "\\Answered".into(),
        "$draft" => "\\Draft".into(),
        other => other.to_string(),
    }
}

/// How an account authenticates to its servers. With `OAuth2` the stored secret is the
/// refresh token (encrypted like a password), and the access token that logs in is
/// obtained from the named provider's token endpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum AccountAuth {
    /// PLAIN or LOGIN with the stored password.
    #[default]
    Password,
    /// OAUTHBEARER or XOAUTH2 with a token of `provider` (a configured `oauth_provider`).
    OAuth2 { provider: String },
}

impl AccountAuth {
    /// The stored and configured name: `password` or `oauth2`.
    pub fn as_str(&self) -> &'static str {
        match self {
            AccountAuth::Password => "password",
            AccountAuth::OAuth2 { .. } => "oauth2",
        }
    }

    /// From the stored name and provider; `None` for an unknown name or an OAuth2 account
    /// without a provider.
    pub fn from_parts(name: &str, provider: &str) -> Option<Self> {
        match name {
            "password" => Some(AccountAuth::Password),
            "oauth2" if !provider.is_empty() => Some(AccountAuth::OAuth2 {
                provider: provider.to_string(),
            }),
            _ => None,
        }
    }

    /// The provider's name (empty for passwords).
    pub fn provider(&self) -> &str {
        match self {
            AccountAuth::Password => "",
            AccountAuth::OAuth2 { provider } => provider,
        }
    }
}

/// What kind of server an account talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccountKind {
    Imap,
    Pop3,
}

impl AccountKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AccountKind::Imap => "imap",
            AccountKind::Pop3 => "pop3",
        }
    }
    pub fn from_name(s: &str) -> Option<Self> {
        match s {
            "imap" => Some(AccountKind::Imap),
            "pop3" => Some(AccountKind::Pop3),
            _ => None,
        }
    }
}

/// Transport security of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Security {
    /// Implicit TLS from the first byte (IMAPS 993, POP3S 995, SMTPS 465).
    Tls,
    /// Plain connection upgraded with STARTTLS/STLS before authentication.
    Starttls,
    /// No TLS at all. Only sensible on loopback.
    None,
}

impl Security {
    pub fn as_str(self) -> &'static str {
        match self {
            Security::Tls => "tls",
            Security::Starttls => "starttls",
            Security::None => "none",
        }
    }
    pub fn from_name(s: &str) -> Option<Self> {
        match s {
            "tls" => Some(Security::Tls),
            "starttls" => Some(Security::Starttls),
            "none" => Some(Security::None),
            _ => None,
        }
    }
}

/// The sync status of an account as the engine last saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", content = "error", rename_all = "snake_case")]
pub enum SyncStatus {
    /// Never connected yet.
    New,
    /// Initial sync or a resync is running.
    Syncing,
    /// Connected and in step with the server.
    Ok,
    /// The last attempt failed for a reason that may pass; the engine retries with backoff.
    Retrying(String),
    /// The server refused the credentials; retried slowly until they change.
    AuthFailed(String),
}

impl SyncStatus {
    /// The short name stored and shown: `new`, `syncing`, `ok`, `retrying`, `auth_failed`.
    pub fn name(&self) -> &'static str {
        match self {
            SyncStatus::New => "new",
            SyncStatus::Syncing => "syncing",
            SyncStatus::Ok => "ok",
            SyncStatus::Retrying(_) => "retrying",
            SyncStatus::AuthFailed(_) => "auth_failed",
        }
    }
    /// The error text, if any.
    pub fn error(&self) -> &str {
        match self {
            SyncStatus::Retrying(e) | SyncStatus::AuthFailed(e) => e,
            _ => "",
        }
    }
    /// Rebuilds a status from its stored name and error text.
    pub fn from_parts(name: &str, error: &str) -> SyncStatus {
        match name {
            "syncing" => SyncStatus::Syncing,
            "ok" => SyncStatus::Ok,
            "retrying" => SyncStatus::Retrying(error.to_string()),
            "auth_failed" => SyncStatus::AuthFailed(error.to_string()),
            _ => SyncStatus::New,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_map_to_keywords_and_back() {
        assert_eq!(imap_flag_to_keyword("\\Seen").as_deref(), Some("$seen"));
        assert_eq!(imap_flag_to_keyword("\\DELETED"), None);
        assert_eq!(imap_flag_to_keyword("\\Recent"), None);
        assert_eq!(imap_flag_to_keyword("$Label1").as_deref(), Some("$label1"));
        assert_eq!(keyword_to_imap_flag("$flagged"), "\\Flagged");
        assert_eq!(keyword_to_imap_flag("work"), "work");
    }

    #[test]
    fn roles_from_special_use() {
        assert_eq!(Role::from_special_use("\\Sent"), Some(Role::Sent));
        assert_eq!(Role::from_special_use("\\JUNK"), Some(Role::Junk));
        assert_eq!(Role::from_special_use("\\HasNoChildren"), None);
        for r in [Role::Inbox, Role::Trash, Role::Important] {
            assert_eq!(Role::from_name(r.as_str()), Some(r));
        }
    }

    #[test]
    fn status_round_trips() {
        let s = SyncStatus::AuthFailed("bad password".into());
        assert_eq!(SyncStatus::from_parts(s.name(), s.error()), s);
    }
}
