//! Push subscriptions (RFC 8620 7.2) as stored: one row per subscription of a user.

use mail_types::UserId;

/// The client's keys for RFC 8291 message encryption, base64url as the client sent them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushKeys {
    pub p256dh: String,
    pub auth: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPushSubscription {
    pub user: UserId,
    pub device_client_id: String,
    pub url: String,
    pub keys: Option<PushKeys>,
    /// The code the server sends in the PushVerification.
    pub verification_code: String,
    /// Unix seconds.
    pub expires: Option<i64>,
    /// Type names; None for all.
    pub types: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushSubscriptionRecord {
    pub id: i64,
    pub user: UserId,
    pub device_client_id: String,
    pub url: String,
    pub keys: Option<PushKeys>,
    pub verification_code: String,
    /// Whether the client has sent the verification code back.
    pub verified: bool,
    pub expires: Option<i64>,
    pub types: Option<Vec<String>>,
}

/// The updatable properties; `None` leaves one as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PushSubscriptionUpdate {
    pub verified: Option<bool>,
    pub expires: Option<Option<i64>>,
    pub types: Option<Option<Vec<String>>>,
}

/// `types` as both backends store it: a JSON array of type names, NULL for all.
pub(crate) fn types_to_json(types: &Option<Vec<String>>) -> crate::Result<Option<String>> {
    types
        .as_ref()
        .map(|t| serde_json::to_string(t).map_err(|e| crate::Error::Corrupt(e.to_string())))
        .transpose()
}

/// The stored `types` of subscription `id` back.
pub(crate) fn types_from_json(
    id: i64,
    types: Option<String>,
) -> crate::Result<Option<Vec<String>>> {
    types
        .map(|t| {
            serde_json::from_str(&t)
                .map_err(|_| crate::Error::Corrupt(format!("push subscription {id} types")))
        })
        .transpose()
}
