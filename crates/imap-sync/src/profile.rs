//! Provider profiles: what a server family is known to get wrong, as data.
//!
//! A session trusts what a server advertises only as far as its profile allows: the
//! profile names the extensions not to use even when advertised, whether the capability
//! list must be read again after login, how many connections the server tolerates, the
//! most results one SEARCH returns, and how a passing refusal is retried. The profile is
//! chosen from the host name, the greeting and the capability list, or named in the
//! account's configuration.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// A server family with known behaviour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Provider {
    /// Anything else: trust what is advertised (and verified, like QRESYNC's ENABLED).
    Generic,
    Icloud,
    Outlook,
    Yahoo,
    Gmail,
}

impl Provider {
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Generic => "generic",
            Provider::Icloud => "icloud",
            Provider::Outlook => "outlook",
            Provider::Yahoo => "yahoo",
            Provider::Gmail => "gmail",
        }
    }

    /// The family a server belongs to, from its host name first (the most reliable
    /// sign), then its greeting and capabilities.
    pub fn detect(host: &str, greeting: &str, caps: &[String]) -> Provider {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        let under = |domain: &str| host == domain || host.ends_with(&format!(".{domain}"));
        if under("mail.me.com") || under("imap.mail.me.com") {
            return Provider::Icloud;
        }
        if under("outlook.office365.com")
            || under("outlook.com")
            || under("office365.com")
            || host == "imap-mail.outlook.com"
        {
            return Provider::Outlook;
        }
        if under("mail.yahoo.com") || under("yahoo.com") || under("aol.com") {
            return Provider::Yahoo;
        }
        if under("gmail.com") || under("googlemail.com") {
            return Provider::Gmail;
        }
        // Gmail's own extension (developers.google.com/gmail/imap/imap-extensions).
        if caps.iter().any(|c| c.eq_ignore_ascii_case("X-GM-EXT-1")) {
            return Provider::Gmail;
        }
        let g = greeting.to_ascii_lowercase();
        if g.contains("microsoft exchange") || g.contains("outlook.com") {
            return Provider::Outlook;
        }
        if g.contains("gimap ready") {
            return Provider::Gmail;
        }
        Provider::Generic
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an account's configuration says: a fixed profile, or detection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProviderChoice {
    #[default]
    Auto,
    Fixed(Provider),
}

impl ProviderChoice {
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderChoice::Auto => "auto",
            ProviderChoice::Fixed(p) => p.as_str(),
        }
    }
}

impl FromStr for ProviderChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s.trim().to_ascii_lowercase().as_str() {
            "" | "auto" => ProviderChoice::Auto,
            "generic" => ProviderChoice::Fixed(Provider::Generic),
            "icloud" => ProviderChoice::Fixed(Provider::Icloud),
            "outlook" => ProviderChoice::Fixed(Provider::Outlook),
            "yahoo" => ProviderChoice::Fixed(Provider::Yahoo),
            "gmail" => ProviderChoice::Fixed(Provider::Gmail),
            other => {
                return Err(format!(
                    "unknown provider {other:?} (auto, generic, icloud, outlook, yahoo, gmail)"
                ));
            }
        })
    }
}

/// How a refusal the server calls passing (RFC 5530 `[UNAVAILABLE]`) is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// Attempts in all, the first included.
    pub attempts: u32,
    /// Wait before each new attempt.
    pub delay: Duration,
}

/// The behaviour of one provider, as data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    pub provider: Provider,
    /// Advertised extensions never to use with this provider.
    pub distrust: &'static [&'static str],
    /// Read CAPABILITY again after login even when the login's OK carried a list.
    pub recheck_capabilities: bool,
    /// Connections to open to the server at most, per account.
    pub max_connections: u32,
    /// The most results one SEARCH returns (larger answers are cut silently).
    pub search_cap: Option<u32>,
    /// Retry of `NO [UNAVAILABLE]` on commands that only read (EXAMINE, FETCH, SEARCH).
    pub unavailable: Retry,
    /// How many MB a day the provider lets one account download over IMAP before it
    /// locks the account (`None`: no known limit); the default of the account's
    /// `daily_download_mb`.
    pub daily_download_mb: Option<u64>,
}

impl Profile {
    pub fn of(provider: Provider) -> Profile {
        let generic = Profile {
            provider,
            distrust: &[],
            recheck_capabilities: false,
            // The engine's worker, watcher, outbox and priority lane.
            max_connections: 4,
            search_cap: None,
            unavailable: Retry {
                attempts: 2,
                delay: Duration::from_millis(200),
            },
            daily_download_mb: None,
        };
        match provider {
            Provider::Generic => generic,
            // iCloud advertises QRESYNC but answers ENABLE QRESYNC with no untagged
            // ENABLED (RFC 5161 3.2 requires it), so QRESYNC cannot be relied on; CONDSTORE
            // works. Its CAPABILITY differs before and after login, and it drops clients
            // with more than a few parallel connections (widely reported, e.g. the
            // Thunderbird and K-9/Thunderbird-Android issue trackers, and mbsync's and
            // offlineimap's "iCloud" notes).
            Provider::Icloud => Profile {
                distrust: &["QRESYNC"],
                recheck_capabilities: true,
                max_connections: 3,
                ..generic
            },
            // Exchange Online has no CONDSTORE or QRESYNC (learn.microsoft.com, "IMAP
            // extensions supported by Exchange"); flags are resynced by FETCH. Port 143
            // says LOGINDISABLED until STARTTLS, which the session handles like RFC 3501
            // 6.2.1 asks: STARTTLS, then a new CAPABILITY.
            Provider::Outlook => Profile {
                distrust: &["CONDSTORE", "QRESYNC"],
                ..generic
            },
            // Yahoo has no working CONDSTORE, answers `NO [UNAVAILABLE]` now and then
            // under load, cuts SEARCH results at 1,000 and allows few connections per
            // account (reported by the mbsync, offlineimap and Thunderbird communities).
            // Three is the fewest the engine can work with (worker, outbox, priority lane).
            Provider::Yahoo => Profile {
                distrust: &["CONDSTORE", "QRESYNC"],
                max_connections: 3,
                search_cap: Some(1000),
                unavailable: Retry {
                    attempts: 4,
                    delay: Duration::from_millis(500),
                },
                ..generic
            },
            // Gmail has CONDSTORE without QRESYNC (developers.google.com/gmail/imap);
            // never trust a QRESYNC it might show one day without ENABLED either.
            // Downloading more than 2,500 MB a day over IMAP locks the account for up to
            // a day (support.google.com/a/answer/1071518, "Gmail bandwidth limits").
            Provider::Gmail => Profile {
                distrust: &["QRESYNC"],
                daily_download_mb: Some(2500),
                ..generic
            },
        }
    }

    /// Whether this profile lets the session use an advertised capability.
    pub fn trusts(&self, cap: &str) -> bool {
        !self.distrust.iter().any(|d| d.eq_ignore_ascii_case(cap))
    }
}

impl Default for Profile {
    fn default() -> Self {
        Profile::of(Provider::Generic)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(list: &str) -> Vec<String> {
        list.split(' ').map(String::from).collect()
    }

    #[test]
    fn detected_from_host_names() {
        let none = caps("IMAP4rev1");
        for (host, p) in [
            ("imap.mail.me.com", Provider::Icloud),
            ("p12-imap.mail.me.com", Provider::Icloud),
            ("outlook.office365.com", Provider::Outlook),
            ("imap-mail.outlook.com", Provider::Outlook),
            ("imap.mail.yahoo.com", Provider::Yahoo),
            ("export.imap.aol.com", Provider::Yahoo),
            ("imap.gmail.com", Provider::Gmail),
            ("IMAP.GMAIL.COM.", Provider::Gmail),
            ("mail.example.org", Provider::Generic),
            ("notgmail.com", Provider::Generic),
            ("gmail.com.evil.example", Provider::Generic),
        ] {
            assert_eq!(Provider::detect(host, "", &none), p, "{host}");
        }
    }

    #[test]
    fn detected_from_greeting_and_capabilities() {
        let none = caps("IMAP4rev1");
        assert_eq!(
            Provider::detect("10.0.0.1", "", &caps("IMAP4rev1 X-GM-EXT-1 CONDSTORE")),
            Provider::Gmail
        );
        assert_eq!(
            Provider::detect(
                "mx",
                "The Microsoft Exchange IMAP4 service is ready.",
                &none
            ),
            Provider::Outlook
        );
        assert_eq!(
            Provider::detect("mx", "Gimap ready for requests from 1.2.3.4", &none),
            Provider::Gmail
        );
        assert_eq!(
            Provider::detect("mx", "Dovecot ready.", &none),
            Provider::Generic
        );
    }

    #[test]
    fn choices_parse() {
        assert_eq!("auto".parse(), Ok(ProviderChoice::Auto));
        assert_eq!("".parse(), Ok(ProviderChoice::Auto));
        assert_eq!(
            "iCloud".parse(),
            Ok(ProviderChoice::Fixed(Provider::Icloud))
        );
        assert!("hotmail".parse::<ProviderChoice>().is_err());
        for p in ["generic", "icloud", "outlook", "yahoo", "gmail", "auto"] {
            let c: ProviderChoice = p.parse().unwrap_or_default();
            assert_eq!(c.as_str(), p);
        }
    }

    #[test]
    fn trust_rules() {
        assert!(!Profile::of(Provider::Icloud).trusts("qresync"));
        assert!(Profile::of(Provider::Icloud).trusts("CONDSTORE"));
        assert!(!Profile::of(Provider::Outlook).trusts("CONDSTORE"));
        assert!(!Profile::of(Provider::Yahoo).trusts("CONDSTORE"));
        assert!(Profile::of(Provider::Gmail).trusts("CONDSTORE"));
        assert!(!Profile::of(Provider::Gmail).trusts("QRESYNC"));
        assert!(Profile::of(Provider::Generic).trusts("QRESYNC"));
        assert_eq!(Profile::of(Provider::Yahoo).search_cap, Some(1000));
        assert!(Profile::of(Provider::Icloud).max_connections <= 3);
    }

    #[test]
    fn only_gmail_has_a_daily_download_limit() {
        assert_eq!(Profile::of(Provider::Gmail).daily_download_mb, Some(2500));
        for p in [
            Provider::Generic,
            Provider::Icloud,
            Provider::Outlook,
            Provider::Yahoo,
        ] {
            assert_eq!(Profile::of(p).daily_download_mb, None, "{p}");
        }
    }
}
