//! The `Id` data type (RFC 8620 1.2) and creation-id references (RFC 8620 5.3).

use std::borrow::Borrow;
use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

/// Longest id RFC 8620 1.2 allows, in octets (all allowed characters are one octet).
pub const MAX_ID_LEN: usize = 255;

/// Why a string is not a valid [`Id`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// RFC 8620 1.2: an id is at least one octet long.
    #[error("an Id must not be empty")]
    Empty,
    /// RFC 8620 1.2: an id is at most 255 octets long.
    #[error("an Id must be at most 255 octets, this one has {0}")]
    TooLong(usize),
    /// RFC 8620 1.2: only `A-Za-z0-9-_` (the URL-safe base64 alphabet without `=`).
    #[error("an Id may only contain A-Z, a-z, 0-9, '-' and '_', found {0:?}")]
    InvalidChar(char),
}

/// A JMAP `Id` (RFC 8620 1.2): 1 to 255 characters of `A-Za-z0-9-_`.
///
/// The field is private and every constructor validates, so an `Id` in hand is always
/// valid; deserializing a bad id fails. The RFC's further SHOULDs for ids a server mints
/// (not starting with `-`, not all digits, not `NIL`) are not enforced here: they govern
/// how ids are generated, not which ids a server must accept from a client.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Id(String);

impl Id {
    /// Validates `s` as an Id (RFC 8620 1.2).
    pub fn new(s: impl Into<String>) -> Result<Self, IdError> {
        let s = s.into();
        validate(&s)?;
        Ok(Self(s))
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id as an owned `String`.
    pub fn into_string(self) -> String {
        self.0
    }
}

/// Checks the RFC 8620 1.2 syntax without allocating.
pub fn validate(s: &str) -> Result<(), IdError> {
    if s.is_empty() {
        return Err(IdError::Empty);
    }
    if s.len() > MAX_ID_LEN {
        return Err(IdError::TooLong(s.len()));
    }
    match s.chars().find(|c| !is_id_char(*c)) {
        Some(c) => Err(IdError::InvalidChar(c)),
        None => Ok(()),
    }
}

/// True when `s` is a valid Id (RFC 8620 1.2).
pub fn is_valid(s: &str) -> bool {
    validate(s).is_ok()
}

fn is_id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Id {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

// Borrow<str> lets maps keyed by Id be looked up with a &str; sound because Eq, Ord and
// Hash of Id are those of the inner String.
impl Borrow<str> for Id {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl FromStr for Id {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Id::new(s)
    }
}

impl TryFrom<String> for Id {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Id::new(s)
    }
}

impl TryFrom<&str> for Id {
    type Error = IdError;
    fn try_from(s: &str) -> Result<Self, Self::Error> {
        Id::new(s)
    }
}

impl From<Id> for String {
    fn from(id: Id) -> String {
        id.0
    }
}

impl PartialEq<str> for Id {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for Id {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl Serialize for Id {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Id::new(s).map_err(de::Error::custom)
    }
}

/// An id where RFC 8620 5.3 lets a client name an object created earlier in the same
/// request by its creation id: `"#" + creationId` (used as the keys of `update` and the
/// items of `destroy`, and in any Id-typed property value).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum IdRef {
    /// A server-assigned id.
    Id(Id),
    /// A creation id, written `#creationId` on the wire; the `#` is not stored.
    Creation(Id),
}

impl IdRef {
    /// Parses `id` or `#creationId`; the creation id must itself be a valid Id
    /// (RFC 8620 5.3 types creation ids as `Id`).
    pub fn parse(s: &str) -> Result<Self, IdError> {
        match s.strip_prefix('#') {
            Some(creation) => Id::new(creation).map(IdRef::Creation),
            None => Id::new(s).map(IdRef::Id),
        }
    }

    /// The server id this stands for: itself, or the creation id looked up in the
    /// request's `createdIds` (RFC 8620 3.3). `None` when the creation id is unknown.
    pub fn resolve(&self, created_ids: &HashMap<String, Id>) -> Option<Id> {
        match self {
            IdRef::Id(id) => Some(id.clone()),
            IdRef::Creation(c) => created_ids.get(c.as_str()).cloned(),
        }
    }
}

impl fmt::Display for IdRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdRef::Id(id) => f.write_str(id.as_str()),
            IdRef::Creation(c) => write!(f, "#{c}"),
        }
    }
}

impl From<Id> for IdRef {
    fn from(id: Id) -> Self {
        IdRef::Id(id)
    }
}

impl Serialize for IdRef {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for IdRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        IdRef::parse(&s).map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_every_allowed_character() {
        let all = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        assert_eq!(Id::new(all).unwrap().as_str(), all);
        assert!(Id::new("a").is_ok());
        // Discouraged for minted ids but valid syntax (RFC 8620 1.2 SHOULDs).
        assert!(Id::new("-leading").is_ok());
        assert!(Id::new("12345").is_ok());
        assert!(Id::new("NIL").is_ok());
    }

    #[test]
    fn length_edges() {
        assert_eq!(Id::new(""), Err(IdError::Empty));
        assert!(Id::new("x".repeat(255)).is_ok());
        assert_eq!(Id::new("x".repeat(256)), Err(IdError::TooLong(256)));
    }

    #[test]
    fn rejects_other_characters() {
        for bad in [
            "a=", "a b", "a/b", "a+b", "a.b", "#a", "é", "a\u{0}", "a\n", "a~",
        ] {
            assert!(Id::new(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(Id::new("ab=c"), Err(IdError::InvalidChar('=')));
        // A multi-byte character is reported as itself, not as a byte.
        assert_eq!(Id::new("aé"), Err(IdError::InvalidChar('é')));
    }

    #[test]
    fn serde_validates() {
        let id: Id = serde_json::from_str("\"M1a_-\"").unwrap();
        assert_eq!(id, "M1a_-");
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"M1a_-\"");
        assert!(serde_json::from_str::<Id>("\"\"").is_err());
        assert!(serde_json::from_str::<Id>("\"a b\"").is_err());
        assert!(serde_json::from_str::<Id>("5").is_err());
        assert!(serde_json::from_str::<Id>("null").is_err());
        let long = format!("\"{}\"", "a".repeat(256));
        assert!(serde_json::from_str::<Id>(&long).is_err());
    }

    #[test]
    fn borrow_lookup() {
        let mut m = std::collections::BTreeMap::new();
        m.insert(Id::new("abc").unwrap(), 1);
        assert_eq!(m.get("abc"), Some(&1));
    }

    #[test]
    fn id_ref() {
        assert_eq!(
            IdRef::parse("abc").unwrap(),
            IdRef::Id(Id::new("abc").unwrap())
        );
        let c = IdRef::parse("#k1").unwrap();
        assert_eq!(c, IdRef::Creation(Id::new("k1").unwrap()));
        assert_eq!(c.to_string(), "#k1");
        assert!(IdRef::parse("#").is_err());
        assert!(IdRef::parse("##k").is_err());
        let mut created = HashMap::new();
        created.insert("k1".to_string(), Id::new("M9").unwrap());
        assert_eq!(c.resolve(&created), Some(Id::new("M9").unwrap()));
        assert_eq!(IdRef::parse("#k2").unwrap().resolve(&created), None);
        let v: Vec<IdRef> = serde_json::from_str(r##"["a","#b"]"##).unwrap();
        assert_eq!(serde_json::to_string(&v).unwrap(), r##"["a","#b"]"##);
    }
}
