//! The Session resource (RFC 8620 2): the caller's accounts, their capabilities, and the
//! URLs of the HTTP layer that serves this server.

use crate::{JmapServer, Principal};
use jmap_proto::capability::SessionCapabilities;
use jmap_proto::{Account, Id, Session};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// The Session could not be built: the store could not be read.
#[derive(Debug, thiserror::Error)]
#[error("the accounts could not be read")]
pub struct Unavailable;

/// JMAP account id of a store account.
pub fn account_id(id: mail_types::AccountId) -> Option<Id> {
    crate::jmap::ids::id('a', id.0)
}

/// The WebSocket URL of a server reached at `base` (http → ws, https → wss).
pub fn ws_url(base: &str) -> String {
    let ws = if let Some(rest) = base.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if let Some(rest) = base.strip_prefix("http://") {
        format!("ws://{rest}")
    } else {
        base.to_string()
    };
    format!("{ws}/jmap/ws")
}

/// RFC 8621 1.3.1.
fn mail_capability() -> jmap_proto::capability::MailCapability {
    jmap_proto::capability::MailCapability {
        max_mailboxes_per_email: None,
        max_mailbox_depth: None,
        max_size_mailbox_name: 490,
        max_size_attachments_per_email: 50_000_000,
        email_query_sort_options: crate::jmap::email::SORT_OPTIONS
            .iter()
            .map(|s| s.to_string())
            .collect(),
        may_create_top_level_mailbox: true,
    }
}

/// Account capability (in the Session's `accountCapabilities`) telling the account's sync
/// status: `{"status": "new"|"syncing"|"ok"|"retrying"|"auth_failed", "error": text,
/// "since": unix seconds, "progress": {"total", "headers", "bodies"}}` (progress summed over
/// the account's mailboxes, present while the status is `new` or `syncing`), and
/// `"download": {"usedMb": MB downloaded today (UTC), "limitMb": the daily limit or null,
/// "reached": the background pass stopped at its share, "note": text saying so,
/// "resumesAt": unix seconds}`. The Session's `state` changes with it, so a client
/// refetching the Session on a state change sees it; whole MB, so that it changes at most
/// once per MB downloaded rather than with every message.
pub const SYNC_CAPABILITY: &str = "urn:tidings:params:sync";

async fn sync_capability(server: &JmapServer, a: &store::AccountRecord) -> serde_json::Value {
    let mut v = serde_json::json!({
        "status": a.status.name(),
        "error": a.status.error(),
        "since": a.status_at,
    });
    if matches!(
        a.status,
        mail_types::SyncStatus::New | mail_types::SyncStatus::Syncing
    ) && let Ok(boxes) = server.store.mailboxes(a.id).await
    {
        let (mut total, mut headers, mut bodies) = (0u64, 0u64, 0u64);
        for b in boxes {
            total += u64::from(b.progress.total);
            headers += u64::from(b.progress.headers);
            bodies += u64::from(b.progress.bodies);
        }
        v["progress"] = serde_json::json!({"total": total, "headers": headers, "bodies": bodies});
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    if let Ok(b) = server
        .store
        .download_budget(a.id, mail_types::budget::utc_day(now))
        .await
    {
        let reached = b.background_reached();
        v["download"] = serde_json::json!({
            "usedMb": b.used / 1_000_000,
            "limitMb": b.limit_mb,
            "reached": reached,
            "note": if reached { b.describe() } else { String::new() },
            "resumesAt": b.resets_at(),
        });
    }
    v
}

impl JmapServer {
    /// The Session of `principal` (RFC 8620 2), built afresh: every API request checks
    /// its accounts against it, and its `state` tells a client when to fetch it again.
    pub async fn session(&self, principal: &Principal) -> Result<Session, Unavailable> {
        let accounts = self
            .store
            .user_accounts(principal.user)
            .await
            .map_err(|_| Unavailable)?;
        let mut map = BTreeMap::new();
        let mut digest = Sha256::new();
        for a in accounts {
            let Some(id) = account_id(a.id) else { continue };
            digest.update(id.as_str().as_bytes());
            digest.update(a.name.as_bytes());
            // The account's sync status as a Tidings capability.
            let sync = sync_capability(self, &a).await;
            digest.update(sync.to_string().as_bytes());
            let extensions = crate::jmap::extensions::account_capabilities(self, &a).await;
            digest.update(format!("{extensions:?}").as_bytes());
            map.insert(
                id,
                Account {
                    name: a.name,
                    is_personal: true,
                    is_read_only: false,
                    account_capabilities: jmap_proto::capability::AccountCapabilities {
                        mail: Some(mail_capability()),
                        submission: Some(jmap_proto::capability::SubmissionCapability {
                            max_delayed_send: u64::try_from(crate::jmap::MAX_DELAYED_SEND)
                                .unwrap_or(0),
                            submission_extensions: std::collections::BTreeMap::from([(
                                "FUTURERELEASE".to_owned(),
                                vec![crate::jmap::MAX_DELAYED_SEND.to_string()],
                            )]),
                        }),
                        other: [(SYNC_CAPABILITY.to_string(), sync)]
                            .into_iter()
                            .chain(extensions)
                            .collect(),
                    },
                },
            );
        }
        let primary = map
            .keys()
            .next()
            .map(|id| {
                let mut p = BTreeMap::new();
                p.insert(jmap_proto::capability::CORE.to_string(), id.clone());
                p.insert(jmap_proto::capability::MAIL.to_string(), id.clone());
                p.insert(jmap_proto::capability::SUBMISSION.to_string(), id.clone());
                p
            })
            .unwrap_or_default();
        let base = &self.base_url;
        let mut session = Session {
            capabilities: {
                let mut c = SessionCapabilities::core(self.core.clone());
                c.mail = Some(Default::default());
                c.submission = Some(Default::default());
                // JMAP over WebSocket with push (RFC 8887 4).
                c.websocket = Some(jmap_proto::capability::WebSocketCapability {
                    url: ws_url(base),
                    supports_push: true,
                });
                c
            },
            accounts: map,
            primary_accounts: primary,
            username: principal.name.clone(),
            api_url: format!("{base}/jmap/api"),
            download_url: format!(
                "{base}/jmap/download/{{accountId}}/{{blobId}}/{{name}}?type={{type}}"
            ),
            upload_url: format!("{base}/jmap/upload/{{accountId}}/"),
            event_source_url: format!(
                "{base}/jmap/eventsource/?types={{types}}&closeafter={{closeafter}}&ping={{ping}}"
            ),
            state: jmap_proto::State::from(hex::encode(&digest.finalize()[..8])),
        };
        crate::jmap::sieve::add_to_session(self.store.as_ref(), &mut session).await;
        crate::jmap::mdn::extend_session(self, principal, &mut session).await;
        crate::push::vapid::extend_session(&self.push, &mut session);
        crate::jmap::extensions::complete_session(&mut session);
        Ok(session)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn websocket_urls() {
        assert_eq!(
            ws_url("http://127.0.0.1:8080"),
            "ws://127.0.0.1:8080/jmap/ws"
        );
        assert_eq!(
            ws_url("https://mail.example.org"),
            "wss://mail.example.org/jmap/ws"
        );
    }
}
