//! RFC 8621 (JMAP for Mail): the pieces that are pure protocol: filter conditions and
//! sort properties of Email/query and Mailbox/query, the extra method arguments, the
//! property names, header property names (4.1.3) and keywords (4.1.1).

pub mod args;
pub mod filter;
pub mod header;
pub mod keyword;
pub mod properties;

pub use args::{
    EMAIL_PARSE_DEFAULT_PROPERTIES, EmailGetArgs, EmailGetRequest, EmailParseRequest,
    EmailQueryArgs, EmailQueryChangesRequest, EmailQueryRequest, EmailSubmissionSetArgs,
    MailboxChangesExtra, MailboxChangesResponse, MailboxQueryArgs, MailboxQueryRequest,
    MailboxSetArgs,
};
pub use filter::{EmailFilterCondition, MailboxFilterCondition};
pub use header::{HeaderForm, HeaderProperty, parse_header_property};
