//! The two Sieve scripts Tidings writes, and reading them back.
//!
//! - `tidings-vacation` holds the VacationResponse (RFC 8621 8) as a `vacation` action
//!   (RFC 5230), limited to `fromDate`..`toDate` with `currentdate` (RFC 5260 5). Its
//!   second line is a comment with the VacationResponse as JSON: reading back parses
//!   that line only, never Sieve, so a user's script is never interpreted.
//! - `tidings-main` is the active script while the vacation response is on: it includes
//!   the vacation script and then the user's own active script (RFC 6609 `include`), so
//!   turning the vacation response on never turns the user's filters off. The vacation
//!   script comes first: a filter that files a message and says `stop` would otherwise
//!   keep it from being answered; `vacation` itself skips lists and automatic mail
//!   (RFC 5230 4.5, 4.6).

use jmap_proto::UtcDate;
use serde::{Deserialize, Serialize};

/// The script holding the vacation response.
pub(crate) const VACATION_SCRIPT: &str = "tidings-vacation";
/// The active wrapper while the vacation response is on.
pub(crate) const MAIN_SCRIPT: &str = "tidings-main";

const VACATION_MARK: &str = "# tidings-vacation ";
const MAIN_MARK: &str = "# tidings-main ";

/// The VacationResponse object's settable properties (RFC 8621 8).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Vacation {
    pub is_enabled: bool,
    pub from_date: Option<UtcDate>,
    pub to_date: Option<UtcDate>,
    pub subject: Option<String>,
    pub text_body: Option<String>,
    pub html_body: Option<String>,
}

/// What the wrapper records: the user's own script it includes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Main {
    pub user_script: Option<String>,
}

/// A Sieve quoted string (RFC 5228 2.4.2): only `"` and `\` are escaped; CR and LF
/// may stand inside.
fn quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// JSON on one comment line: serde_json escapes every control character, so the line
/// cannot end early.
fn mark(prefix: &str, v: &impl Serialize) -> String {
    format!(
        "{prefix}{}\r\n",
        serde_json::to_string(v).unwrap_or_else(|_| "{}".into())
    )
}

/// `2026-12-24T00:00:00`: compared as a string with `currentdate :zone "+0000" "iso8601"`
/// (RFC 5260 4.2 and 5), whose value is this plus `+00:00` or `Z`: the longer string sorts
/// after an equal prefix, so `ge` holds from the instant on and `lt` stops at it.
fn sieve_instant(d: UtcDate) -> String {
    let s = d.to_string();
    s.trim_end_matches('Z').to_owned()
}

/// The vacation script for `v` (written also when disabled, to keep its fields).
pub(crate) fn vacation_script(v: &Vacation) -> String {
    let mut s = String::new();
    s.push_str("# Written by Tidings for the JMAP VacationResponse; changed there, not here.\r\n");
    s.push_str(&mark(VACATION_MARK, v));
    let dated = v.from_date.is_some() || v.to_date.is_some();
    let html = v.html_body.as_deref().is_some_and(|h| !h.is_empty());
    let mut require = vec!["vacation"];
    if dated {
        require.extend(["date", "relational"]);
    }
    s.push_str(&format!(
        "require [{}];\r\n",
        require
            .iter()
            .map(|r| quoted(r))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    let mut tests = Vec::new();
    if let Some(from) = v.from_date {
        tests.push(format!(
            "currentdate :zone \"+0000\" :value \"ge\" \"iso8601\" {}",
            quoted(&sieve_instant(from))
        ));
    }
    if let Some(to) = v.to_date {
        tests.push(format!(
            "currentdate :zone \"+0000\" :value \"lt\" \"iso8601\" {}",
            quoted(&sieve_instant(to))
        ));
    }
    let mut action = String::from("vacation");
    if let Some(subject) = v.subject.as_deref().filter(|s| !s.is_empty()) {
        action.push_str(&format!(" :subject {}", quoted(subject)));
    }
    let text = v.text_body.clone().unwrap_or_default();
    if html {
        // RFC 5230 5.8: with :mime the reason is a MIME part; both bodies as alternatives.
        let boundary = "tidings-vacation-alternative";
        let reason = format!(
            "Content-Type: multipart/alternative; boundary=\"{boundary}\"\r\n\r\n\
             --{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{text}\r\n\
             --{boundary}\r\nContent-Type: text/html; charset=utf-8\r\n\r\n{}\r\n\
             --{boundary}--\r\n",
            v.html_body.as_deref().unwrap_or_default()
        );
        action.push_str(&format!(" :mime {}", quoted(&reason)));
    } else {
        action.push_str(&format!(" {}", quoted(&text)));
    }
    action.push(';');
    if tests.is_empty() {
        s.push_str(&action);
        s.push_str("\r\n");
    } else {
        s.push_str(&format!(
            "if allof({}) {{\r\n  {action}\r\n}}\r\n",
            tests.join(", ")
        ));
    }
    s
}

/// The active wrapper: the vacation script, then the user's script if there is one
/// (`:optional`, so a user script renamed or deleted by another client does not break
/// delivery).
pub(crate) fn main_script(m: &Main) -> String {
    let mut s = String::new();
    s.push_str("# Written by Tidings: the vacation response beside the active script.\r\n");
    s.push_str(&mark(MAIN_MARK, m));
    s.push_str("require [\"include\"];\r\n");
    s.push_str(&format!(
        "include :personal {};\r\n",
        quoted(VACATION_SCRIPT)
    ));
    if let Some(user) = &m.user_script {
        s.push_str(&format!(
            "include :personal :optional {};\r\n",
            quoted(user)
        ));
    }
    s
}

fn read_mark<T: for<'de> Deserialize<'de>>(script: &[u8], prefix: &str) -> Option<T> {
    let text = std::str::from_utf8(script).ok()?;
    let line = text.lines().nth(1)?;
    serde_json::from_str(line.strip_prefix(prefix)?).ok()
}

/// The VacationResponse the vacation script was written for; `None` when the script is
/// not one Tidings wrote.
pub(crate) fn read_vacation(script: &[u8]) -> Option<Vacation> {
    read_mark(script, VACATION_MARK)
}

pub(crate) fn read_main(script: &[u8]) -> Option<Main> {
    read_mark(script, MAIN_MARK)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_through_the_marker() {
        let v = Vacation {
            is_enabled: true,
            from_date: Some("2026-12-20T08:00:00Z".parse().unwrap()),
            to_date: Some("2027-01-06T00:00:00Z".parse().unwrap()),
            subject: Some("Away \"until\" January\r\n# not a comment".into()),
            text_body: Some("Back on the 6th.\r\nrequire \"x\";\\".into()),
            html_body: None,
        };
        let script = vacation_script(&v);
        assert_eq!(read_vacation(script.as_bytes()), Some(v));
        assert!(script.contains(
            "currentdate :zone \"+0000\" :value \"ge\" \"iso8601\" \"2026-12-20T08:00:00\""
        ));
        assert!(script.contains(":subject \"Away \\\"until\\\" January"));
        // Only the marker line is JSON; the rest is Sieve.
        assert_eq!(
            script
                .lines()
                .filter(|l| l.starts_with(VACATION_MARK))
                .count(),
            1
        );
    }

    #[test]
    fn a_script_not_ours_is_not_read() {
        assert_eq!(
            read_vacation(b"require \"vacation\";\r\nvacation \"x\";\r\n"),
            None
        );
        assert_eq!(
            read_vacation(b"# a\r\n# tidings-vacation {not json\r\n"),
            None
        );
        assert_eq!(read_vacation(&[0xff, 0xfe, b'\n', b'#']), None);
        assert_eq!(read_main(b""), None);
    }

    #[test]
    fn wrapper_includes_vacation_then_the_user_script() {
        let m = Main {
            user_script: Some("my \"filters\"".into()),
        };
        let s = main_script(&m);
        let vac = s.find("include :personal \"tidings-vacation\"").unwrap();
        let user = s
            .find("include :personal :optional \"my \\\"filters\\\"\"")
            .unwrap();
        assert!(vac < user);
        assert_eq!(read_main(s.as_bytes()), Some(m));
        assert!(!main_script(&Main::default()).contains(":optional"));
    }

    #[test]
    fn html_goes_as_mime_alternative() {
        let v = Vacation {
            is_enabled: true,
            text_body: Some("plain".into()),
            html_body: Some("<p>html</p>".into()),
            ..Default::default()
        };
        let s = vacation_script(&v);
        assert!(s.contains("vacation :mime \"Content-Type: multipart/alternative"));
        assert!(!s.contains("currentdate"));
        assert!(s.contains("require [\"vacation\"];"));
    }
}
