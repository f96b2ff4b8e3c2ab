//! State strings (RFC 8620 1.2 / 5.1: "a (preferably short) string representing the state
//! on the server").

use std::fmt;

use serde::{Deserialize, Serialize};

/// An opaque state string: the session state, a type's state of `/get`, the query state
/// of `/query`. Clients only compare it for equality, so any string is accepted.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct State(String);

impl State {
    /// Wraps a state string.
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    /// The state as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The state as an owned `String`.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<String> for State {
    fn from(s: String) -> Self {
        Self(s)
    }
}

impl From<&str> for State {
    fn from(s: &str) -> Self {
        Self(s.to_string())
    }
}

impl From<u64> for State {
    /// A counter-based state, as the store keeps it, in decimal.
    fn from(n: u64) -> Self {
        Self(n.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transparent_string() {
        let s = State::from(42u64);
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"42\"");
        let back: State = serde_json::from_str("\"abc\"").unwrap();
        assert_eq!(back.as_str(), "abc");
        assert!(serde_json::from_str::<State>("1").is_err());
    }
}
