//! JMAP wire types and pure functions for Tidings.
//!
//! This crate speaks JMAP as RFC 8620 (core) and RFC 8621 (mail) spell it, and nothing
//! else: no I/O, no HTTP, no store. The API crate feeds it request bodies and method
//! arguments and gets back typed values or the exact error objects the RFCs name, so
//! that existing JMAP clients work unchanged.
//!
//! - [`request`]: [`parse_request`] (RFC 8620 3.3) with the request-level errors of 3.6.1.
//! - [`response`]: the Response object (RFC 8620 3.4).
//! - [`error`]: request-level problem details, method-level errors (3.6.2), SetError (5.3).
//! - [`reference`](mod@reference): result references (RFC 8620 3.7).
//! - [`method`]: arguments and responses of the standard methods (RFC 8620 5.1-5.6),
//!   filters and comparators.
//! - [`mail`]: RFC 8621 filter conditions, sort properties, property lists, header
//!   property names.
//! - [`session`], [`capability`]: the Session resource (RFC 8620 2) and capabilities.
//! - [`id`], [`date`], [`state`]: the primitive types of RFC 8620 1.2-1.4.
//!
//! # Choices where the RFCs leave one
//!
//! - JSON nested deeper than serde_json's recursion limit (128) is `notJSON`, not
//!   `limit`: RFC 8620 names no nesting limit a client could look up.
//! - Unknown arguments are `invalidArguments` (RFC 8620 3.6.2); unknown top-level
//!   members of the Request object are ignored (they do not break its type signature).
//! - An unknown FilterCondition property or FilterOperator is `unsupportedFilter` (the
//!   server "cannot process it", RFC 8620 5.5); a filter of the wrong shape or value
//!   types is `invalidArguments`. Filters are bounded: depth 64, 10,000 nodes.
//! - An unknown sort property or collation is `unsupportedSort`; a keyword sort without a
//!   valid `keyword` is `invalidArguments`.
//! - A `#arg` whose value is not a ResultReference object is `invalidArguments`; a
//!   reference that does not resolve, or whose path has more than 32 segments or yields
//!   more than 100,000 items, is `invalidResultReference`.
//! - `update` keys, `destroy` items and `/get` ids may be `#creationId` ([`IdRef`]).
//! - Dates: lowercase `t`/`z`, fractional seconds (truncated) and, for a UTCDate, a
//!   numeric offset are accepted; output always follows RFC 8620 1.4.

pub mod capability;
pub mod date;
pub mod error;
pub mod id;
pub mod mail;
pub mod method;
pub mod push;
pub mod reference;
pub mod request;
pub mod response;
pub mod session;
pub mod state;

pub use date::{Date, DateError, UtcDate};
pub use error::{
    MethodError, MethodErrorType, RequestError, RequestErrorType, SetError, SetErrorType,
};
pub use id::{Id, IdError, IdRef};
pub use push::{PushVerification, StateChange};
pub use reference::{ResultReference, resolve_references};
pub use request::{Invocation, Request, RequestLimits, parse_request};
pub use response::Response;
pub use session::{Account, Session};
pub use state::State;
