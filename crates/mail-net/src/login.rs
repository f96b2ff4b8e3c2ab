//! Who logs in, and with what secret. `Debug` never shows the password or the token.

use std::fmt;

/// Login credentials. `Debug` never shows the password.
#[derive(Clone)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// How to authenticate: a password (PLAIN, else LOGIN) or an OAuth 2.0 access token
/// (OAUTHBEARER, else XOAUTH2). `Debug` never shows the secret.
#[derive(Clone)]
pub enum Login {
    Password(Credentials),
    OAuth2 {
        username: String,
        access_token: String,
    },
}

impl Login {
    pub fn username(&self) -> &str {
        match self {
            Login::Password(c) => &c.username,
            Login::OAuth2 { username, .. } => username,
        }
    }
}

impl From<Credentials> for Login {
    fn from(c: Credentials) -> Login {
        Login::Password(c)
    }
}

impl fmt::Debug for Login {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Login::Password(c) => c.fmt(f),
            Login::OAuth2 { username, .. } => f
                .debug_struct("OAuth2")
                .field("username", username)
                .field("access_token", &"<redacted>")
                .finish(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_secrets() {
        let c = Credentials {
            username: "alice".into(),
            password: "hunter2".into(),
        };
        let t = Login::OAuth2 {
            username: "alice".into(),
            access_token: "ya29.secret".into(),
        };
        for shown in [
            format!("{c:?}"),
            format!("{:?}", Login::from(c)),
            format!("{t:?}"),
        ] {
            assert!(shown.contains("alice"), "{shown}");
            assert!(
                !shown.contains("hunter2") && !shown.contains("ya29"),
                "{shown}"
            );
        }
    }
}
