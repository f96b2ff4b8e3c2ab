//! JMAP for Sieve scripts (RFC 9661) and the VacationResponse (RFC 8621 8), both over
//! the account's ManageSieve server (RFC 5804); offered in the Session only for accounts
//! whose server was found to have it.
//!
//! Every call opens one ManageSieve connection (through `engine::sieve::Sieve`, with the
//! account's IMAP credentials) and reads the scripts: the server stays the source of
//! truth, and another ManageSieve client's changes are seen at once. The two scripts
//! Tidings writes for the VacationResponse (see `generate`) are not SieveScript objects:
//! they are changed through VacationResponse/set only, and while the vacation wrapper is
//! the server's active script, the user script it includes is the one reported active.

pub(crate) mod generate;
mod script;
mod vacation;

pub(crate) use script::{changes, get, query, set, validate};
pub(crate) use vacation::{get as vacation_get, set as vacation_set};

use super::Ctx;
use generate::{MAIN_SCRIPT, Main, VACATION_SCRIPT, Vacation};
use jmap_proto::{MethodError, MethodErrorType};
use mail_types::{AccountId, AccountKind};
use managesieve::{Capabilities, Client};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use store::AccountRecord;

use jmap_proto::capability::SIEVE;

/// Longest script name accepted (RFC 9661 `maxSizeScriptName`): Pigeonhole's limit.
const MAX_NAME: usize = 512;
/// Every call reads every script (ManageSieve has no way to ask what changed), so a
/// server with more, or more bytes, is refused rather than trusted with our memory; a
/// person's filters are a handful of small scripts.
const MAX_SCRIPTS: usize = 256;
const MAX_TOTAL_BYTES: usize = 16 * 1024 * 1024;

/// The account's ManageSieve capabilities as last found, if it has ManageSieve.
async fn found(store: &dyn store::Store, account: &AccountRecord) -> Option<Capabilities> {
    if account.kind != AccountKind::Imap {
        return None;
    }
    let s = store.sieve_settings(account.id).await.ok()?;
    if !s.enabled {
        return None;
    }
    serde_json::from_str(s.capabilities.as_deref()?).ok()
}

/// Whether the server can run the VacationResponse scripts.
fn vacation_possible(c: &Capabilities) -> bool {
    c.has_extension("vacation") && c.has_extension("include")
}

/// RFC 9661 2: the account capability.
fn account_capability(c: &Capabilities) -> Value {
    json!({
        "implementation": c.implementation,
        "maxSizeScriptName": MAX_NAME,
        "maxSizeScript": managesieve::Limits::default().max_literal,
        "maxNumberScripts": null,
        "maxNumberRedirects": c.max_redirects,
        "sieveExtensions": c.sieve,
        "notificationMethods": if c.notify.is_empty() { Value::Null } else { json!(c.notify) },
        "externalLists": null,
    })
}

/// Adds Sieve and VacationResponse to the Session for the accounts that have them, as
/// primary for the first such account, and folds them into the Session state.
pub(crate) async fn add_to_session(store: &dyn store::Store, session: &mut jmap_proto::Session) {
    let mut digest = Sha256::new();
    digest.update(session.state.as_str().as_bytes());
    let mut any = (false, false);
    for (id, account) in session.accounts.iter_mut() {
        let Some(n) = super::ids::parse('a', id.as_str()) else {
            continue;
        };
        let Ok(Some(record)) = store.account(AccountId(n)).await else {
            continue;
        };
        let Some(caps) = found(store, &record).await else {
            continue;
        };
        let other = &mut account.account_capabilities.other;
        other.insert(SIEVE.into(), account_capability(&caps));
        digest.update(id.as_str().as_bytes());
        digest.update(caps.sieve.join(" ").as_bytes());
        if !any.0 {
            session.primary_accounts.insert(SIEVE.into(), id.clone());
        }
        any.0 = true;
        if vacation_possible(&caps) {
            other.insert(jmap_proto::capability::VACATION_RESPONSE.into(), json!({}));
            if !any.1 {
                session
                    .primary_accounts
                    .insert(jmap_proto::capability::VACATION_RESPONSE.into(), id.clone());
            }
            any.1 = true;
            digest.update(b"v");
        }
    }
    if any.0 {
        session.capabilities.other.insert(SIEVE.into(), json!({}));
    }
    if any.1 {
        session
            .capabilities
            .other
            .insert(jmap_proto::capability::VACATION_RESPONSE.into(), json!({}));
    }
    if any.0 {
        session.state = jmap_proto::State::from(hex::encode(&digest.finalize()[..8]));
    }
}

/// The capability URIs a request may name in `using`.
pub(crate) const URIS: [&str; 2] = [SIEVE, jmap_proto::capability::VACATION_RESPONSE];

fn unavailable(e: impl std::fmt::Display) -> MethodError {
    MethodError::with_description(MethodErrorType::ServerUnavailable, e.to_string())
}

fn fail(e: impl std::fmt::Display) -> MethodError {
    MethodError::server_fail(e.to_string())
}

/// A logged-in connection to the account's ManageSieve server, and what it offers.
pub(super) struct Conn {
    pub account: AccountId,
    pub client: Client,
    pub caps: Capabilities,
}

/// Connects for a method of `account` (a caller's account: see `Ctx::account`).
async fn connect(
    ctx: &Ctx<'_>,
    account: &jmap_proto::Id,
    vacation: bool,
) -> Result<Conn, MethodError> {
    let id = ctx.account(account)?;
    let record = ctx
        .store
        .account(id)
        .await
        .map_err(fail)?
        .ok_or_else(|| MethodError::new(MethodErrorType::AccountNotFound))?;
    let not_supported = || MethodError::new(MethodErrorType::AccountNotSupportedByMethod);
    let caps = found(ctx.store.as_ref(), &record)
        .await
        .ok_or_else(not_supported)?;
    if vacation && !vacation_possible(&caps) {
        return Err(not_supported());
    }
    let sieve = ctx
        .sieve
        .ok_or_else(|| unavailable("ManageSieve is not reachable from this server"))?;
    let client = sieve.connect(&record).await.map_err(|e| {
        tracing::warn!(account = %id, error = %e, "ManageSieve connection failed");
        unavailable(e)
    })?;
    let caps = client.capabilities().clone();
    Ok(Conn {
        account: id,
        client,
        caps,
    })
}

/// One user-visible script.
#[derive(Debug, Clone)]
pub(super) struct Script {
    pub id: i64,
    pub name: String,
    /// Active on the server, or included by the active vacation wrapper.
    pub active: bool,
    pub content: Vec<u8>,
}

/// The account's scripts as JMAP sees them.
#[derive(Debug, Clone)]
pub(super) struct View {
    pub scripts: Vec<Script>,
    /// The vacation wrapper, when it is the server's active script.
    pub main: Option<Main>,
    /// Tidings' vacation script, if there is one.
    pub vacation: Option<Vacation>,
    /// The name of the script the server runs (the wrapper included).
    pub server_active: Option<String>,
    /// Every name on the server, ours included.
    pub all_names: Vec<String>,
}

impl View {
    pub(super) async fn load(ctx: &Ctx<'_>, conn: &mut Conn) -> Result<View, MethodError> {
        let list = conn.client.list_scripts().await.map_err(fail)?;
        if list.len() > MAX_SCRIPTS {
            return Err(fail(format!(
                "the server lists {} scripts; at most {MAX_SCRIPTS} are read",
                list.len()
            )));
        }
        let mut total = 0usize;
        let mut scripts = Vec::new();
        let mut main = None;
        let mut vacation = None;
        let mut server_active = None;
        for s in &list {
            if s.active {
                server_active = Some(s.name.clone());
            }
            let content = conn.client.get_script(&s.name).await.map_err(fail)?;
            total += content.len();
            if total > MAX_TOTAL_BYTES {
                return Err(fail("the scripts on the server are too large to read"));
            }
            match s.name.as_str() {
                MAIN_SCRIPT => {
                    if s.active {
                        main = Some(generate::read_main(&content).unwrap_or_default());
                    }
                }
                VACATION_SCRIPT => vacation = generate::read_vacation(&content),
                _ => scripts.push(Script {
                    id: 0,
                    name: s.name.clone(),
                    active: s.active,
                    content,
                }),
            }
        }
        if let Some(user) = main.as_ref().and_then(|m| m.user_script.as_ref()) {
            for s in &mut scripts {
                s.active = &s.name == user;
            }
        }
        let names: Vec<String> = scripts.iter().map(|s| s.name.clone()).collect();
        let ids = ctx
            .store
            .sieve_script_ids(conn.account, &names)
            .await
            .map_err(fail)?;
        for (s, id) in scripts.iter_mut().zip(ids) {
            s.id = id;
        }
        Ok(View {
            scripts,
            main,
            vacation,
            server_active,
            all_names: list.into_iter().map(|s| s.name).collect(),
        })
    }

    /// SieveScript state: changes with any script's id, name, activity or content.
    pub(super) fn script_state(&self) -> String {
        let mut d = Sha256::new();
        for (id, digest) in self.snapshot() {
            d.update(id.to_be_bytes());
            d.update(digest.as_bytes());
        }
        format!("s{}", hex::encode(&d.finalize()[..8]))
    }

    /// Each script's id and a digest of what JMAP shows of it (name, activity, content).
    pub(super) fn snapshot(&self) -> Vec<(i64, String)> {
        let mut out: Vec<(i64, String)> = self
            .scripts
            .iter()
            .map(|s| {
                let mut d = Sha256::new();
                d.update(s.name.as_bytes());
                d.update([0, u8::from(s.active)]);
                d.update(Sha256::digest(&s.content));
                (s.id, hex::encode(&d.finalize()[..12]))
            })
            .collect();
        out.sort();
        out
    }

    /// Remembers the scripts under the current state, for SieveScript/changes.
    pub(super) async fn record(
        &self,
        ctx: &Ctx<'_>,
        account: AccountId,
    ) -> Result<String, MethodError> {
        let state = self.script_state();
        let json = serde_json::to_string(&self.snapshot()).map_err(fail)?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        ctx.store
            .put_sieve_snapshot(account, &state, &json, now)
            .await
            .map_err(fail)?;
        Ok(state)
    }

    /// VacationResponse state.
    pub(super) fn vacation_state(&self) -> String {
        let mut d = Sha256::new();
        d.update(serde_json::to_vec(&self.effective_vacation()).unwrap_or_default());
        format!("v{}", hex::encode(&d.finalize()[..8]))
    }

    /// The VacationResponse as the server runs it: enabled only while the wrapper that
    /// includes it is active.
    pub(super) fn effective_vacation(&self) -> Vacation {
        let mut v = self.vacation.clone().unwrap_or_default();
        v.is_enabled = v.is_enabled && self.main.is_some();
        v
    }

    /// A script PUTSCRIPT just stored: listed, with its permanent id.
    pub(super) async fn added(
        &mut self,
        ctx: &Ctx<'_>,
        account: AccountId,
        name: String,
        content: Vec<u8>,
    ) -> Result<Script, MethodError> {
        self.all_names.push(name.clone());
        self.scripts.push(Script {
            id: 0,
            name,
            active: false,
            content,
        });
        let names: Vec<String> = self.scripts.iter().map(|s| s.name.clone()).collect();
        let ids = ctx
            .store
            .sieve_script_ids(account, &names)
            .await
            .map_err(fail)?;
        for (s, id) in self.scripts.iter_mut().zip(ids) {
            s.id = id;
        }
        self.scripts
            .last()
            .cloned()
            .ok_or_else(|| fail("no script"))
    }

    pub(super) fn renamed(&mut self, old: &str, new: &str) {
        for n in self.all_names.iter_mut().filter(|n| *n == old) {
            *n = new.to_owned();
        }
        for s in self.scripts.iter_mut().filter(|s| s.name == old) {
            s.name = new.to_owned();
        }
    }

    pub(super) fn removed(&mut self, name: &str) {
        self.all_names.retain(|n| n != name);
        self.scripts.retain(|s| s.name != name);
    }

    pub(super) fn active_user_script(&self) -> Option<&Script> {
        self.scripts.iter().find(|s| s.active)
    }
}
