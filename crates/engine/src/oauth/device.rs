//! The device authorization grant (RFC 8628): signing in an OAuth2 account from a
//! terminal. The provider gives a user code and a web address; the person opens it on any
//! device with a browser, signs in and consents; meanwhile the token endpoint is polled
//! until it answers with tokens, refuses, or the code expires. What is kept is the
//! refresh token, stored exactly like one given on stdin.

use super::{OAuth, OAuthProvider, TokenError, describe, form_encode, printable, read_limited};
use std::fmt;
use std::time::Duration;
use tokio::time::Instant;

/// RFC 8628 3.4: the grant type of the polling token request.
const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";
/// RFC 8628 3.2: without `interval` the client waits 5 seconds between polls.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);
/// RFC 8628 3.5: `slow_down` adds 5 seconds to the interval, for this and later polls.
const SLOW_DOWN: Duration = Duration::from_secs(5);
/// Without `expires_in` (it is REQUIRED, but) the code is given this long.
const DEFAULT_EXPIRY: Duration = Duration::from_secs(600);
/// Bounds on what a provider may ask for: a code is not waited for longer than this,
/// and a poll not more rarely.
const MAX_EXPIRY: Duration = Duration::from_secs(3600);
const MAX_INTERVAL: Duration = Duration::from_secs(60);

/// What the person must do: open `verification_uri` and enter `user_code` (or open
/// `verification_uri_complete`, which carries the code).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceAuthorization {
    pub user_code: String,
    pub verification_uri: String,
    pub verification_uri_complete: Option<String>,
    /// How long the code is valid.
    pub expires_in: Duration,
    /// The wait between two polls the provider asked for.
    pub interval: Duration,
}

/// How a device sign-in ended without a refresh token.
#[derive(Debug, thiserror::Error)]
pub enum DeviceFlowError {
    /// RFC 8628 3.5 `access_denied`: the person declined.
    #[error("the sign-in was declined at the provider; nothing was stored")]
    Denied,
    /// RFC 8628 3.5 `expired_token`, or the code's `expires_in` passed.
    #[error(
        "the code expired before the sign-in was completed; run the command again for a new one"
    )]
    Expired,
    /// The provider answered with tokens but no refresh token (offline access not granted).
    #[error(
        "the provider issued no refresh token (is offline access among the provider's scopes?)"
    )]
    NoRefreshToken,
    /// The provider has no device flow, refused the client, or answered an error.
    #[error("{0}")]
    Provider(String),
    #[error(transparent)]
    Token(#[from] TokenError),
}

/// The device code of a started sign-in. `Debug` hides it.
pub struct DeviceCode(String);

impl fmt::Debug for DeviceCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DeviceCode(<redacted>)")
    }
}

/// A refresh token. `Debug` hides it.
pub struct RefreshToken(pub String);

impl fmt::Debug for RefreshToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RefreshToken(<redacted>)")
    }
}

impl OAuth {
    /// The provider's device authorization endpoint: configured (`device_url`), or from
    /// its OpenID discovery document (`device_authorization_endpoint`, RFC 8628 4).
    async fn device_url(&self, p: &OAuthProvider) -> Result<String, DeviceFlowError> {
        if let Some(u) = &p.device_url {
            return Ok(u.clone());
        }
        let issuer = p.issuer.as_deref().ok_or_else(|| {
            DeviceFlowError::Provider(format!(
                "oauth_provider {} has neither an issuer nor a device_url",
                p.name
            ))
        })?;
        let url = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        let resp = self
            .http()?
            .get(&url)
            .send()
            .await
            .map_err(|e| TokenError::Unavailable(format!("discovery: {}", describe(e))))?;
        let status = resp.status();
        let body = read_limited(resp).await?;
        if !status.is_success() {
            return Err(TokenError::Unavailable(format!("discovery: HTTP {status}")).into());
        }
        let v: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|_| TokenError::Unavailable("discovery: not JSON".into()))?;
        // OpenID Connect Discovery 4.3: the document must name the issuer we asked.
        if v["issuer"].as_str().map(|s| s.trim_end_matches('/'))
            != Some(issuer.trim_end_matches('/'))
        {
            return Err(
                TokenError::Config(format!("discovery at {issuer} names another issuer")).into(),
            );
        }
        v["device_authorization_endpoint"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| {
                DeviceFlowError::Provider(format!(
                    "oauth_provider {} offers no device sign-in (its discovery document names \
                     no device_authorization_endpoint; set device_url if it has one)",
                    p.name
                ))
            })
    }

    fn named(&self, provider: &str) -> Result<&OAuthProvider, DeviceFlowError> {
        self.provider(provider).ok_or_else(|| {
            TokenError::Config(format!("no oauth_provider {provider:?} configured")).into()
        })
    }

    /// RFC 8628 3.1-3.2: asks the provider for a device code and a user code.
    pub async fn device_authorize(
        &self,
        provider: &str,
    ) -> Result<(DeviceAuthorization, DeviceCode), DeviceFlowError> {
        let p = self.named(provider)?;
        let url = self.device_url(p).await?;
        let scope = p.scopes.join(" ");
        let mut form = vec![("client_id", p.client_id.as_str())];
        if !scope.is_empty() {
            form.push(("scope", scope.as_str()));
        }
        // RFC 8628 3.1: a confidential client authenticates as at the token endpoint.
        if let Some(secret) = &p.client_secret {
            form.push(("client_secret", secret.as_str()));
        }
        let (status, v) = self.post_form(&url, &form).await?;
        if !status.is_success() {
            return Err(provider_error(
                "the device authorization request",
                status,
                &v,
            ));
        }
        let text = |k: &str| {
            v[k].as_str()
                .filter(|s| !s.is_empty() && s.len() <= 2048)
                .map(str::to_string)
        };
        let (Some(device_code), Some(user_code), Some(verification_uri)) = (
            text("device_code"),
            text("user_code"),
            // Some providers (Google) say `verification_url`.
            text("verification_uri").or_else(|| text("verification_url")),
        ) else {
            return Err(DeviceFlowError::Provider(
                "the device authorization answer lacks device_code, user_code or \
                 verification_uri"
                    .into(),
            ));
        };
        let secs = |k: &str| match &v[k] {
            serde_json::Value::Number(n) => n.as_u64(),
            serde_json::Value::String(s) => s.parse().ok(),
            _ => None,
        };
        let auth = DeviceAuthorization {
            user_code: shown(&user_code),
            verification_uri: shown(&verification_uri),
            verification_uri_complete: text("verification_uri_complete").map(|u| shown(&u)),
            expires_in: secs("expires_in")
                .map_or(DEFAULT_EXPIRY, Duration::from_secs)
                .min(MAX_EXPIRY),
            interval: secs("interval")
                .map_or(DEFAULT_INTERVAL, |s| Duration::from_secs(s.max(1)))
                .min(MAX_INTERVAL),
        };
        Ok((auth, DeviceCode(device_code)))
    }

    /// RFC 8628 3.4-3.5: polls the token endpoint every `interval` until the person has
    /// signed in (the refresh token), declined, or the code expired; never past
    /// `expires_in`.
    pub async fn device_poll(
        &self,
        provider: &str,
        auth: &DeviceAuthorization,
        code: &DeviceCode,
    ) -> Result<RefreshToken, DeviceFlowError> {
        let p = self.named(provider)?;
        let token_url = self.token_url(p).await?;
        let deadline = Instant::now() + auth.expires_in;
        let mut interval = auth.interval;
        let mut form = vec![
            ("grant_type", DEVICE_GRANT),
            ("device_code", code.0.as_str()),
            ("client_id", p.client_id.as_str()),
        ];
        if let Some(secret) = &p.client_secret {
            form.push(("client_secret", secret.as_str()));
        }
        loop {
            if Instant::now() + interval > deadline {
                // The next poll would come after the code's end.
                tokio::time::sleep_until(deadline).await;
                return Err(DeviceFlowError::Expired);
            }
            tokio::time::sleep(interval).await;
            let (status, v) = match self.post_form(&token_url, &form).await {
                Ok(a) => a,
                // A passing network failure: RFC 8628 3.5 asks to back off, not to give up.
                Err(DeviceFlowError::Token(e)) if e.is_transient() => {
                    tracing::debug!(error = %e, "device sign-in: polling failed; retrying");
                    interval = (interval * 2).min(MAX_INTERVAL);
                    continue;
                }
                Err(e) => return Err(e),
            };
            if status.is_success() {
                return v["refresh_token"]
                    .as_str()
                    .filter(|t| !t.is_empty())
                    .map(|t| RefreshToken(t.to_string()))
                    .ok_or(DeviceFlowError::NoRefreshToken);
            }
            match v["error"].as_str().unwrap_or("") {
                "authorization_pending" => {}
                "slow_down" => interval = (interval + SLOW_DOWN).min(MAX_INTERVAL),
                "access_denied" => return Err(DeviceFlowError::Denied),
                "expired_token" => return Err(DeviceFlowError::Expired),
                _ => return Err(provider_error("the token request", status, &v)),
            }
        }
    }

    /// POSTs a form and reads the JSON answer (any status).
    async fn post_form(
        &self,
        url: &str,
        form: &[(&str, &str)],
    ) -> Result<(reqwest::StatusCode, serde_json::Value), DeviceFlowError> {
        let body = form
            .iter()
            .map(|(k, v)| format!("{k}={}", form_encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let resp = self
            .http()?
            .post(url)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| TokenError::Unavailable(describe(e)))?;
        let status = resp.status();
        let bytes = read_limited(resp).await?;
        if status.is_server_error() {
            return Err(TokenError::Unavailable(format!("HTTP {status}")).into());
        }
        let v = serde_json::from_slice(&bytes).map_err(|_| {
            TokenError::Unavailable(format!("HTTP {status} with an answer that is not JSON"))
        })?;
        Ok((status, v))
    }
}

/// RFC 6749 5.2 error of a request, for the person at the terminal.
fn provider_error(
    what: &str,
    status: reqwest::StatusCode,
    v: &serde_json::Value,
) -> DeviceFlowError {
    let code = printable(v["error"].as_str().unwrap_or(""));
    let description = printable(v["error_description"].as_str().unwrap_or(""));
    DeviceFlowError::Provider(match (code.is_empty(), description.is_empty()) {
        (true, _) => format!("the provider refused {what}: HTTP {status}"),
        (false, true) => format!("the provider refused {what}: {code}"),
        (false, false) => format!("the provider refused {what}: {code} ({description})"),
    })
}

/// Text from the provider fit for a terminal: no control characters (escape sequences).
fn shown(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(2048).collect()
}
