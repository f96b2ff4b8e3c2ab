//! The Session resource (RFC 8620 2) and its URL templates (RFC 6570 level 1).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::capability::{AccountCapabilities, SessionCapabilities};
use crate::id::Id;
use crate::state::State;

/// The Session object (RFC 8620 2), served at the JMAP session URL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Session {
    /// The capabilities of the server, by URI.
    pub capabilities: SessionCapabilities,
    /// The accounts the user can access, by account id.
    pub accounts: BTreeMap<Id, Account>,
    /// For each capability URI, the id of the account used by default.
    pub primary_accounts: BTreeMap<String, Id>,
    /// The username of the credentials used.
    pub username: String,
    /// The URL for JMAP API requests.
    pub api_url: String,
    /// RFC 6570 template with `{accountId}`, `{blobId}`, `{type}`, `{name}`.
    pub download_url: String,
    /// RFC 6570 template with `{accountId}`.
    pub upload_url: String,
    /// RFC 6570 template with `{types}`, `{closeafter}`, `{ping}` (RFC 8620 7.3).
    pub event_source_url: String,
    /// Changes whenever any of the above changes.
    pub state: State,
}

/// An Account in the Session (RFC 8620 1.6.2, 2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Account {
    /// A user-friendly name, e.g. the email address.
    pub name: String,
    /// Whether the account belongs to the authenticated user.
    pub is_personal: bool,
    /// Whether the whole account is read-only.
    pub is_read_only: bool,
    /// The capabilities of this account, by URI.
    pub account_capabilities: AccountCapabilities,
}

/// Expands an RFC 6570 level 1 template (`{var}`): each value is percent-encoded except
/// for the unreserved characters `A-Za-z0-9-._~`. An unknown variable expands to the
/// empty string, as RFC 6570 3.2.1 says for undefined variables; an unclosed `{` is kept
/// literally.
pub fn expand_template(template: &str, vars: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else {
            out.push_str(&rest[open..]);
            return out;
        };
        let name = &after[..close];
        if let Some((_, value)) = vars.iter().find(|(k, _)| *k == name) {
            percent_encode(value, &mut out);
        }
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    out
}

fn percent_encode(s: &str, out: &mut String) {
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            const HEX: &[u8; 16] = b"0123456789ABCDEF";
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 15)]));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capability::{CORE, EmptyCapability, MAIL, MailCapability, SessionCapabilities};
    use serde_json::{Value, json};

    /// The RFC 8620 2.1 example, trimmed to the capabilities Tidings types (the vendor
    /// one goes through `other`).
    const EXAMPLE: &str = r#"{
      "capabilities": {
        "urn:ietf:params:jmap:core": {
          "maxSizeUpload": 50000000,
          "maxConcurrentUpload": 8,
          "maxSizeRequest": 10000000,
          "maxConcurrentRequests": 8,
          "maxCallsInRequest": 32,
          "maxObjectsInGet": 256,
          "maxObjectsInSet": 128,
          "collationAlgorithms": [
            "i;ascii-numeric",
            "i;ascii-casemap",
            "i;unicode-casemap"
          ]
        },
        "urn:ietf:params:jmap:mail": {},
        "urn:ietf:params:jmap:contacts": {},
        "https://example.com/apis/foobar": {
          "maxFoosFinangled": 42
        }
      },
      "accounts": {
        "A13824": {
          "name": "john@example.com",
          "isPersonal": true,
          "isReadOnly": false,
          "accountCapabilities": {
            "urn:ietf:params:jmap:mail": {
              "maxMailboxesPerEmail": null,
              "maxMailboxDepth": 10,
              "maxSizeMailboxName": 490,
              "maxSizeAttachmentsPerEmail": 50000000,
              "emailQuerySortOptions": ["receivedAt", "from", "to", "subject", "size"],
              "mayCreateTopLevelMailbox": true
            },
            "urn:ietf:params:jmap:contacts": {}
          }
        },
        "A97813": {
          "name": "jane@example.com",
          "isPersonal": false,
          "isReadOnly": true,
          "accountCapabilities": {
            "urn:ietf:params:jmap:mail": {
              "maxMailboxesPerEmail": 1,
              "maxMailboxDepth": 10,
              "maxSizeMailboxName": 490,
              "maxSizeAttachmentsPerEmail": 50000000,
              "emailQuerySortOptions": ["receivedAt", "from", "to", "subject", "size"],
              "mayCreateTopLevelMailbox": false
            }
          }
        }
      },
      "primaryAccounts": {
        "urn:ietf:params:jmap:mail": "A13824",
        "urn:ietf:params:jmap:contacts": "A13824"
      },
      "username": "john@example.com",
      "apiUrl": "https://jmap.example.com/api/",
      "downloadUrl": "https://jmap.example.com/download/{accountId}/{blobId}/{name}?accept={type}",
      "uploadUrl": "https://jmap.example.com/upload/{accountId}/",
      "eventSourceUrl": "https://jmap.example.com/eventsource/?types={types}&closeafter={closeafter}&ping={ping}",
      "state": "75128aab4b1b"
    }"#;

    #[test]
    fn rfc_example_round_trips() {
        let s: Session = serde_json::from_str(EXAMPLE).unwrap();
        assert_eq!(s.capabilities.core.max_calls_in_request, 32);
        assert_eq!(s.capabilities.mail, Some(EmptyCapability {}));
        assert_eq!(
            s.capabilities.other["https://example.com/apis/foobar"]["maxFoosFinangled"],
            42
        );
        let a = &s.accounts["A13824"];
        assert!(a.is_personal && !a.is_read_only);
        let mail = a.account_capabilities.mail.as_ref().unwrap();
        assert_eq!(mail.max_mailboxes_per_email, None);
        assert_eq!(mail.max_mailbox_depth, Some(10));
        assert_eq!(s.primary_accounts[MAIL], "A13824");
        assert_eq!(s.state.as_str(), "75128aab4b1b");
        let back = serde_json::to_value(&s).unwrap();
        assert_eq!(back, serde_json::from_str::<Value>(EXAMPLE).unwrap());
        let again: Session = serde_json::from_value(back).unwrap();
        assert_eq!(again, s);
    }

    #[test]
    fn built_session_has_rfc_names() {
        let mut accounts = BTreeMap::new();
        accounts.insert(
            Id::new("A1").unwrap(),
            Account {
                name: "me@example.com".into(),
                is_personal: true,
                is_read_only: false,
                account_capabilities: AccountCapabilities {
                    mail: Some(MailCapability {
                        max_mailboxes_per_email: None,
                        max_mailbox_depth: None,
                        max_size_mailbox_name: 255,
                        max_size_attachments_per_email: 0,
                        email_query_sort_options: vec![],
                        may_create_top_level_mailbox: true,
                    }),
                    ..AccountCapabilities::default()
                },
            },
        );
        let mut caps = SessionCapabilities::core(Default::default());
        caps.mail = Some(EmptyCapability {});
        let s = Session {
            capabilities: caps,
            accounts,
            primary_accounts: BTreeMap::from([(MAIL.to_string(), Id::new("A1").unwrap())]),
            username: "me".into(),
            api_url: "/jmap/api".into(),
            download_url: "/jmap/download/{accountId}/{blobId}/{name}?type={type}".into(),
            upload_url: "/jmap/upload/{accountId}".into(),
            event_source_url: "/jmap/eventsource?types={types}&closeafter={closeafter}&ping={ping}"
                .into(),
            state: State::from("1"),
        };
        let v = serde_json::to_value(&s).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        for k in [
            "capabilities",
            "accounts",
            "primaryAccounts",
            "username",
            "apiUrl",
            "downloadUrl",
            "uploadUrl",
            "eventSourceUrl",
            "state",
        ] {
            assert!(keys.contains(&k), "{k}");
        }
        assert_eq!(keys.len(), 9);
        assert_eq!(v["accounts"]["A1"]["isReadOnly"], json!(false));
        assert!(v["capabilities"][CORE].is_object());
        assert_eq!(serde_json::from_value::<Session>(v).unwrap(), s);
    }

    #[test]
    fn templates() {
        let t = "https://h/download/{accountId}/{blobId}/{name}?accept={type}";
        assert_eq!(
            expand_template(
                t,
                &[
                    ("accountId", "A1"),
                    ("blobId", "B2"),
                    ("name", "a b/ü.txt"),
                    ("type", "text/plain")
                ]
            ),
            "https://h/download/A1/B2/a%20b%2F%C3%BC.txt?accept=text%2Fplain"
        );
        assert_eq!(expand_template("/x/{nope}/y", &[]), "/x//y");
        assert_eq!(expand_template("/x/{open", &[("open", "v")]), "/x/{open");
        assert_eq!(expand_template("plain", &[]), "plain");
    }
}
