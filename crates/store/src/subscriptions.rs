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
