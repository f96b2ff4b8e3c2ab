//! The big providers' server settings, as data: what a user of one of these domains needs
//! is known without asking DNS or the network. Sources: each provider's published IMAP/SMTP
//! settings (Gmail, Outlook.com/Microsoft 365, iCloud, Yahoo, AOL, GMX, Fastmail, Zoho,
//! mailbox.org, Proton Bridge is local and left out).

use super::{Found, Server, Settings, Source};
use mail_types::Security;

/// One provider: the mail domains it serves and where its servers are.
pub struct Provider {
    pub name: &'static str,
    pub domains: &'static [&'static str],
    pub imap: (&'static str, u16, Security),
    pub smtp: (&'static str, u16, Security),
    /// The `[[oauth_provider]]` name its "Sign in with …" button uses, when it has one.
    pub oauth: Option<&'static str>,
    /// It refuses the account's own password over IMAP: an app password is needed
    /// (or OAuth2 where `oauth` is set).
    pub app_password: bool,
}

pub const PROVIDERS: &[Provider] = &[
    Provider {
        name: "Gmail",
        domains: &["gmail.com", "googlemail.com"],
        imap: ("imap.gmail.com", 993, Security::Tls),
        smtp: ("smtp.gmail.com", 465, Security::Tls),
        oauth: Some("google"),
        app_password: true,
    },
    Provider {
        name: "Outlook.com",
        domains: &[
            "outlook.com",
            "hotmail.com",
            "live.com",
            "msn.com",
            "outlook.fr",
            "outlook.de",
            "hotmail.fr",
            "hotmail.co.uk",
            "live.fr",
            "live.co.uk",
            "onmicrosoft.com",
        ],
        imap: ("outlook.office365.com", 993, Security::Tls),
        smtp: ("smtp.office365.com", 587, Security::Starttls),
        oauth: Some("microsoft"),
        app_password: false,
    },
    Provider {
        name: "iCloud",
        domains: &["icloud.com", "me.com", "mac.com"],
        imap: ("imap.mail.me.com", 993, Security::Tls),
        smtp: ("smtp.mail.me.com", 587, Security::Starttls),
        oauth: None,
        app_password: true,
    },
    Provider {
        name: "Yahoo",
        domains: &[
            "yahoo.com",
            "ymail.com",
            "rocketmail.com",
            "yahoo.co.uk",
            "yahoo.fr",
            "yahoo.de",
        ],
        imap: ("imap.mail.yahoo.com", 993, Security::Tls),
        smtp: ("smtp.mail.yahoo.com", 465, Security::Tls),
        oauth: None,
        app_password: true,
    },
    Provider {
        name: "AOL",
        domains: &["aol.com", "aim.com"],
        imap: ("imap.aol.com", 993, Security::Tls),
        smtp: ("smtp.aol.com", 465, Security::Tls),
        oauth: None,
        app_password: true,
    },
    Provider {
        name: "GMX",
        domains: &["gmx.com", "gmx.net", "gmx.de", "gmx.at", "gmx.ch"],
        imap: ("imap.gmx.net", 993, Security::Tls),
        smtp: ("mail.gmx.net", 587, Security::Starttls),
        oauth: None,
        app_password: false,
    },
    Provider {
        name: "Fastmail",
        domains: &["fastmail.com", "fastmail.fm", "messagingengine.com"],
        imap: ("imap.fastmail.com", 993, Security::Tls),
        smtp: ("smtp.fastmail.com", 465, Security::Tls),
        oauth: None,
        app_password: true,
    },
    Provider {
        name: "Zoho",
        domains: &["zoho.com", "zohomail.com"],
        imap: ("imap.zoho.com", 993, Security::Tls),
        smtp: ("smtp.zoho.com", 465, Security::Tls),
        oauth: None,
        app_password: false,
    },
    Provider {
        name: "mailbox.org",
        domains: &["mailbox.org"],
        imap: ("imap.mailbox.org", 993, Security::Tls),
        smtp: ("smtp.mailbox.org", 465, Security::Tls),
        oauth: None,
        app_password: false,
    },
];

/// The provider serving `domain` (lower case), if it is one of the table's.
pub fn lookup(domain: &str) -> Option<&'static Provider> {
    PROVIDERS.iter().find(|p| p.domains.contains(&domain))
}

/// The provider whose server `host` is (for messages after a refused login, whatever way
/// the settings were found).
pub fn by_host(host: &str) -> Option<&'static Provider> {
    let host = host.to_ascii_lowercase();
    PROVIDERS.iter().find(|p| {
        host == p.imap.0
            || host == p.smtp.0
            || p.domains.iter().any(|d| host.ends_with(&format!(".{d}")))
    })
}

pub(super) fn found(p: &Provider, email: &str) -> Found {
    let server = |(host, port, security): (&str, u16, Security)| Server {
        host: host.to_string(),
        port,
        security,
    };
    Found {
        source: Source::Table,
        provider: Some(p.name.to_string()),
        settings: Settings {
            kind: mail_types::AccountKind::Imap,
            incoming: server(p.imap),
            smtp: Some(server(p.smtp)),
            username: email.to_string(),
        },
        oauth: p.oauth.map(str::to_string),
        app_password: p.app_password,
        foreign: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_big_providers_are_in_the_table() {
        let gmail = lookup("googlemail.com").map(|p| (p.imap.0, p.smtp.1, p.oauth));
        assert_eq!(gmail, Some(("imap.gmail.com", 465, Some("google"))));
        let ms = lookup("hotmail.com").map(|p| (p.imap.0, p.smtp, p.oauth));
        assert_eq!(
            ms,
            Some((
                "outlook.office365.com",
                ("smtp.office365.com", 587, Security::Starttls),
                Some("microsoft")
            ))
        );
        assert!(lookup("me.com").is_some_and(|p| p.app_password));
        assert!(lookup("example.org").is_none());
        assert!(by_host("imap.mail.yahoo.com").is_some_and(|p| p.app_password));
        assert_eq!(
            by_host("smtp.office365.com").map(|p| p.name),
            Some("Outlook.com")
        );
        assert!(by_host("imap.example.org").is_none());
    }

    #[test]
    fn no_domain_is_claimed_twice() {
        let mut all: Vec<&str> = PROVIDERS
            .iter()
            .flat_map(|p| p.domains.iter().copied())
            .collect();
        let n = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), n);
    }
}
