//! JMAP ids and state strings of store objects.
//!
//! Ids are the store's row ids behind a one-letter type prefix (`a1`, `m12`, `e345`,
//! `t67`): valid JMAP ids (RFC 8620 1.2), and an id of one type can never be taken for
//! another. A state is the account's change counter, `17`, or a position inside one
//! transaction's changes, `17.4242`, when a `/changes` page had to stop there.

use jmap_proto::{Id, MethodError, MethodErrorType, State};
use store::ChangePosition;

pub fn id(prefix: char, n: i64) -> Option<Id> {
    Id::new(format!("{prefix}{n}")).ok()
}

/// The row id of a JMAP id with the given prefix; None for anything else.
pub fn parse(prefix: char, id: &str) -> Option<i64> {
    let rest = id.strip_prefix(prefix)?;
    if rest.is_empty() || rest.len() > 18 || !rest.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    rest.parse().ok()
}

pub(crate) fn state(s: mail_types::State) -> State {
    State::from(s.0.to_string())
}

pub(crate) fn position_state(p: ChangePosition) -> State {
    if p.row == i64::MAX {
        State::from(p.state.to_string())
    } else {
        State::from(format!("{}.{}", p.state, p.row))
    }
}

/// RFC 8620 5.2: a state we cannot read is `cannotCalculateChanges`.
pub(crate) fn parse_position(s: &State) -> Result<ChangePosition, MethodError> {
    let bad =
        || MethodError::with_description(MethodErrorType::CannotCalculateChanges, "unknown state");
    let text = s.as_str();
    let (st, row) = match text.split_once('.') {
        Some((a, b)) => (a, Some(b)),
        None => (text, None),
    };
    let num = |x: &str| -> Result<i64, MethodError> {
        if x.is_empty() || x.len() > 18 || !x.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        x.parse().map_err(|_| bad())
    };
    Ok(ChangePosition {
        state: num(st)?,
        row: match row {
            Some(r) => num(r)?,
            None => i64::MAX,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_states_round_trip() {
        let i = id('m', 42).unwrap();
        assert_eq!(i.as_str(), "m42");
        assert_eq!(parse('m', "m42"), Some(42));
        assert_eq!(parse('e', "m42"), None);
        assert_eq!(parse('m', "m"), None);
        assert_eq!(parse('m', "m-1"), None);
        assert_eq!(parse('m', "m99999999999999999999"), None);
        let p = ChangePosition { state: 7, row: 3 };
        assert_eq!(parse_position(&position_state(p)).unwrap(), p);
        let w = ChangePosition::whole(mail_types::State(9));
        assert_eq!(parse_position(&position_state(w)).unwrap(), w);
        assert!(parse_position(&State::from("x")).is_err());
        assert!(parse_position(&State::from("1.")).is_err());
    }
}
