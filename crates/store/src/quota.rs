//! The account's quotas as learnt from its IMAP server (RFC 9208), served as JMAP Quota
//! objects (RFC 9425). One row per quota root and resource type; each row's id is the
//! Quota's JMAP id for good (a root that goes away is destroyed, never renamed).

use crate::Result;
use async_trait::async_trait;
use mail_types::AccountId;

/// RFC 9425 2: what a quota counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QuotaResource {
    /// Octets (IMAP STORAGE, which the server counts in KiB).
    Octets,
    /// Messages (IMAP MESSAGE).
    Count,
}

impl QuotaResource {
    /// The JMAP `resourceType` value.
    pub fn as_str(self) -> &'static str {
        match self {
            QuotaResource::Octets => "octets",
            QuotaResource::Count => "count",
        }
    }

    pub fn from_name(s: &str) -> Option<Self> {
        match s {
            "octets" => Some(QuotaResource::Octets),
            "count" => Some(QuotaResource::Count),
            _ => None,
        }
    }
}

/// One quota as the server reports it, in JMAP units.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaValue {
    /// The IMAP quota root's name.
    pub root: String,
    pub resource: QuotaResource,
    pub used: u64,
    pub hard_limit: u64,
}

/// A stored quota and its permanent id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaRecord {
    pub id: i64,
    pub value: QuotaValue,
}

/// JMAP Quota (RFC 9425), as last learnt from the account's IMAP server (QUOTA).
#[async_trait]
pub trait Quotas: Send + Sync + 'static {
    /// The account's quotas as last learnt from its server; none when it has no QUOTA.
    async fn quotas(&self, account: AccountId) -> Result<Vec<QuotaRecord>>;

    /// Makes the account's quotas exactly `values` (bumping the state and logging each
    /// change as type Quota); true when anything changed.
    async fn apply_quotas(&self, account: AccountId, values: &[QuotaValue]) -> Result<bool>;
}
