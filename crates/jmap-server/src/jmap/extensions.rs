//! Where JMAP Quota (RFC 9425) and Blob (RFC 9404) appear in the Session: each in an
//! account's `accountCapabilities` only where it works (Quota only for accounts whose
//! server reported a quota), and in the Session's `capabilities` and `primaryAccounts`
//! when some account has it (RFC 9425 3.1 and RFC 9404 3: a capability of an account is
//! also one of the Session).

use crate::JmapServer;
use jmap_proto::Session;
use jmap_proto::capability::{BLOB, QUOTA};
use serde_json::{Map, Value};

/// The account's capabilities of these extensions, by URI.
pub(crate) async fn account_capabilities(
    state: &JmapServer,
    account: &store::AccountRecord,
) -> Vec<(String, Value)> {
    let mut out = vec![(
        BLOB.to_string(),
        super::blob::account_capability(&state.core),
    )];
    if super::quota::has_quota(state.store.as_ref(), account.id).await {
        out.push((QUOTA.to_string(), super::quota::capability_value()));
    }
    out
}

/// Adds the Session-level capability, and its primary account (the first that has it),
/// for each extension some account has.
pub(crate) fn complete_session(session: &mut Session) {
    for uri in [QUOTA, BLOB] {
        let first = session
            .accounts
            .iter()
            .find(|(_, a)| a.account_capabilities.other.contains_key(uri))
            .map(|(id, _)| id.clone());
        if let Some(id) = first {
            session
                .capabilities
                .other
                .insert(uri.to_string(), Value::Object(Map::new()));
            session.primary_accounts.insert(uri.to_string(), id);
        }
    }
}
