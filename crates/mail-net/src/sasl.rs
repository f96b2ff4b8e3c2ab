//! The SASL messages IMAP, POP3 and ManageSieve send (no I/O here): PLAIN (RFC 4616), the
//! OAuth 2.0 mechanisms OAUTHBEARER (RFC 7628) and Google's and Microsoft's older XOAUTH2,
//! and the JSON error challenge a server answers a refused token with. Each protocol
//! base64-encodes them its own way (RFC 3501 6.2.2, RFC 5034 4, RFC 5804 2.1).

use std::fmt;

/// RFC 4616 2: PLAIN's one message, `authzid NUL authcid NUL passwd`, with an empty
/// authzid (act as the user who logs in).
pub fn plain(user: &str, password: &str) -> Vec<u8> {
    let mut msg = Vec::with_capacity(user.len() + password.len() + 2);
    msg.push(0);
    msg.extend_from_slice(user.as_bytes());
    msg.push(0);
    msg.extend_from_slice(password.as_bytes());
    msg
}

/// Which bearer mechanism to speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OAuthMechanism {
    /// RFC 7628.
    OAuthBearer,
    /// `user=...^Aauth=Bearer ...^A^A` (developers.google.com/gmail/imap/xoauth2-protocol).
    XOAuth2,
}

impl OAuthMechanism {
    /// The SASL name, as in `AUTH=<name>` and `AUTHENTICATE <name>`.
    pub fn name(self) -> &'static str {
        match self {
            OAuthMechanism::OAuthBearer => "OAUTHBEARER",
            OAuthMechanism::XOAuth2 => "XOAUTH2",
        }
    }

    /// The mechanism to use given what the server advertises: OAUTHBEARER, the standard
    /// one, when offered, else XOAUTH2; `None` when neither is.
    pub fn choose(offers: impl Fn(&str) -> bool) -> Option<OAuthMechanism> {
        if offers("OAUTHBEARER") {
            Some(OAuthMechanism::OAuthBearer)
        } else if offers("XOAUTH2") {
            Some(OAuthMechanism::XOAuth2)
        } else {
            None
        }
    }

    /// The client's first message (before base64) for `user` with `token`, connecting
    /// to `host`:`port`.
    pub fn initial_response(self, user: &str, token: &str, host: &str, port: u16) -> Vec<u8> {
        match self {
            OAuthMechanism::OAuthBearer => oauthbearer(user, token, host, port),
            OAuthMechanism::XOAuth2 => xoauth2(user, token),
        }
    }
}

/// XOAUTH2's initial client response.
pub fn xoauth2(user: &str, token: &str) -> Vec<u8> {
    format!("user={user}\x01auth=Bearer {token}\x01\x01").into_bytes()
}

/// RFC 7628 3.1: the gs2 header (no channel binding, the user as authzid), then the
/// key/value pairs separated by ^A; host and port are optional but servers that check the
/// token's audience use them.
pub fn oauthbearer(user: &str, token: &str, host: &str, port: u16) -> Vec<u8> {
    format!(
        "n,a={},\x01host={host}\x01port={port}\x01auth=Bearer {token}\x01\x01",
        gs2_escape(user)
    )
    .into_bytes()
}

/// RFC 5801 5.1: in a gs2 authzid `=` and `,` are written `=3D` and `=2C`.
fn gs2_escape(s: &str) -> String {
    s.replace('=', "=3D").replace(',', "=2C")
}

/// RFC 7628 3.2.3: the client's answer to an error challenge, a single ^A, after which
/// the server sends its final failure.
pub const ERROR_ACK: &[u8] = b"\x01";

/// What a server said when it refused a token (RFC 7628 3.2.2), decoded from the JSON of
/// its error challenge.
#[derive(Clone, PartialEq, Eq)]
pub struct OAuthFailure {
    /// The error code: `invalid_token`, `insufficient_scope`, ... (RFC 6750 3.1), or an
    /// HTTP status such as `401` (XOAUTH2).
    pub status: String,
    /// The scope the server wants, when it says.
    pub scope: Option<String>,
}

impl OAuthFailure {
    /// Whether the token itself was refused (expired, revoked, malformed), so a fresh one
    /// may work, as opposed to a refusal that a new token of the same grant cannot cure.
    pub fn token_invalid(&self) -> bool {
        // RFC 6750 3.1 names `invalid_token`; XOAUTH2 servers send HTTP statuses (Google:
        // "401" for an expired or revoked token, "400" for a malformed request).
        matches!(self.status.as_str(), "invalid_token" | "401" | "400")
    }
}

impl fmt::Debug for OAuthFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthFailure")
            .field("status", &self.status)
            .field("scope", &self.scope)
            .finish()
    }
}

impl fmt::Display for OAuthFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "status {}", self.status)?;
        if let Some(s) = &self.scope {
            write!(f, ", scope {s}")?;
        }
        Ok(())
    }
}

/// Longest error challenge we look at; the RFC's are a few dozen bytes.
const MAX_CHALLENGE: usize = 4096;

/// Parses the JSON of an error challenge (already base64-decoded). `Err` says what is
/// wrong with it, in words fit for a status line (never the bytes themselves).
pub fn parse_error_challenge(json: &[u8]) -> Result<OAuthFailure, String> {
    if json.len() > MAX_CHALLENGE {
        return Err(format!(
            "an OAuth error challenge of {} bytes (at most {MAX_CHALLENGE})",
            json.len()
        ));
    }
    let v: serde_json::Value = serde_json::from_slice(json)
        .map_err(|_| "an OAuth error challenge that is not JSON".to_string())?;
    let obj = v
        .as_object()
        .ok_or("an OAuth error challenge that is not a JSON object")?;
    let status = match obj.get("status") {
        Some(serde_json::Value::String(s)) if !s.is_empty() && s.len() <= 100 => s.clone(),
        // Some servers send the HTTP status as a number.
        Some(serde_json::Value::Number(n)) => n.to_string(),
        _ => return Err("an OAuth error challenge without a status".into()),
    };
    let scope = obj
        .get("scope")
        .and_then(|s| s.as_str())
        .filter(|s| s.len() <= 1000)
        .map(str::to_string);
    Ok(OAuthFailure { status, scope })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_is_rfc_4616_format() {
        assert_eq!(plain("tim", "tanstaaftanstaaf"), b"\0tim\0tanstaaftanstaaf");
    }

    #[test]
    fn xoauth2_is_googles_format() {
        assert_eq!(
            xoauth2("someuser@example.com", "ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg"),
            b"user=someuser@example.com\x01auth=Bearer ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg\x01\x01"
        );
    }

    #[test]
    fn oauthbearer_is_rfc_7628_format() {
        // RFC 7628 4.1's example, with our authzid.
        assert_eq!(
            oauthbearer("user@example.com", "vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==", "server.example.com", 143),
            b"n,a=user@example.com,\x01host=server.example.com\x01port=143\x01auth=Bearer vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==\x01\x01"
        );
        assert!(oauthbearer("a,b=c", "t", "h", 1).starts_with(b"n,a=a=2Cb=3Dc,\x01"));
    }

    #[test]
    fn prefers_oauthbearer() {
        assert_eq!(
            OAuthMechanism::choose(|m| m == "XOAUTH2" || m == "OAUTHBEARER"),
            Some(OAuthMechanism::OAuthBearer)
        );
        assert_eq!(
            OAuthMechanism::choose(|m| m == "XOAUTH2"),
            Some(OAuthMechanism::XOAuth2)
        );
        assert_eq!(OAuthMechanism::choose(|m| m == "PLAIN"), None);
    }

    #[test]
    fn parses_error_challenges() {
        // RFC 7628 3.2.2 example.
        let f = parse_error_challenge(
            br#"{"status":"invalid_token","scope":"example_scope","openid-configuration":"https://example.com/.well-known/openid-configuration"}"#,
        )
        .unwrap();
        assert_eq!(f.status, "invalid_token");
        assert_eq!(f.scope.as_deref(), Some("example_scope"));
        assert!(f.token_invalid());
        // Google's XOAUTH2 error.
        let g = parse_error_challenge(
            br#"{"status":"401","schemes":"bearer","scope":"https://mail.google.com/"}"#,
        )
        .unwrap();
        assert!(g.token_invalid());
        let s = parse_error_challenge(br#"{"status":"insufficient_scope"}"#).unwrap();
        assert!(!s.token_invalid());
        assert_eq!(
            parse_error_challenge(br#"{"status":401}"#).unwrap().status,
            "401"
        );
    }

    #[test]
    fn malformed_error_challenges_are_errors() {
        for bad in [
            &b""[..],
            b"not json",
            b"[1,2]",
            b"{}",
            br#"{"status":""}"#,
            br#"{"status":{"x":1}}"#,
            b"\xff\xfe{",
            br#"{"status":"invalid_token""#,
        ] {
            assert!(parse_error_challenge(bad).is_err(), "{bad:?}");
        }
        let huge = format!(r#"{{"status":"{}"}}"#, "x".repeat(10_000));
        assert!(parse_error_challenge(huge.as_bytes()).is_err());
        let deep = "[".repeat(100_000);
        assert!(parse_error_challenge(deep.as_bytes()).is_err());
    }
}
