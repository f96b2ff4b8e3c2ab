//! Property names of the RFC 8621 data types, the default property lists of Email/get
//! (RFC 8621 4.2), and the check RFC 8620 5.1 asks for ("If an invalid property is
//! requested, the call MUST be rejected with an invalidArguments error").

use crate::error::MethodError;
use crate::mail::header::parse_header_property;

/// Every Email property (RFC 8621 4.1), besides the `header:` forms.
pub const EMAIL_PROPERTIES: &[&str] = &[
    "id",
    "blobId",
    "threadId",
    "mailboxIds",
    "keywords",
    "size",
    "receivedAt",
    "messageId",
    "inReplyTo",
    "references",
    "sender",
    "from",
    "to",
    "cc",
    "bcc",
    "replyTo",
    "subject",
    "sentAt",
    "hasAttachment",
    "preview",
    "bodyStructure",
    "bodyValues",
    "textBody",
    "htmlBody",
    "attachments",
    "headers",
];

/// The properties Email/get returns when `properties` is absent (RFC 8621 4.2): all but
/// `bodyStructure` and `headers`.
pub const EMAIL_GET_DEFAULT_PROPERTIES: &[&str] = &[
    "id",
    "blobId",
    "threadId",
    "mailboxIds",
    "keywords",
    "size",
    "receivedAt",
    "messageId",
    "inReplyTo",
    "references",
    "sender",
    "from",
    "to",
    "cc",
    "bcc",
    "replyTo",
    "subject",
    "sentAt",
    "hasAttachment",
    "preview",
    "bodyValues",
    "textBody",
    "htmlBody",
    "attachments",
];

/// Every EmailBodyPart property (RFC 8621 4.1.4), besides the `header:` forms.
pub const BODY_PART_PROPERTIES: &[&str] = &[
    "partId",
    "blobId",
    "size",
    "headers",
    "name",
    "type",
    "charset",
    "disposition",
    "cid",
    "language",
    "location",
    "subParts",
];

/// The default of Email/get's `bodyProperties` (RFC 8621 4.2).
pub const BODY_PART_DEFAULT_PROPERTIES: &[&str] = &[
    "partId",
    "blobId",
    "size",
    "name",
    "type",
    "charset",
    "disposition",
    "cid",
    "language",
    "location",
];

/// Every Mailbox property (RFC 8621 2).
pub const MAILBOX_PROPERTIES: &[&str] = &[
    "id",
    "name",
    "parentId",
    "role",
    "sortOrder",
    "totalEmails",
    "unreadEmails",
    "totalThreads",
    "unreadThreads",
    "myRights",
    "isSubscribed",
];

/// Every Thread property (RFC 8621 3).
pub const THREAD_PROPERTIES: &[&str] = &["id", "emailIds"];

/// Every Identity property (RFC 8621 6).
pub const IDENTITY_PROPERTIES: &[&str] = &[
    "id",
    "name",
    "email",
    "replyTo",
    "bcc",
    "textSignature",
    "htmlSignature",
    "mayDelete",
];

/// Every EmailSubmission property (RFC 8621 7).
pub const EMAIL_SUBMISSION_PROPERTIES: &[&str] = &[
    "id",
    "identityId",
    "emailId",
    "threadId",
    "envelope",
    "sendAt",
    "undoStatus",
    "deliveryStatus",
    "dsnBlobIds",
    "mdnBlobIds",
];

/// Every SearchSnippet property (RFC 8621 5).
pub const SEARCH_SNIPPET_PROPERTIES: &[&str] = &["emailId", "subject", "preview"];

/// Every VacationResponse property (RFC 8621 8).
pub const VACATION_RESPONSE_PROPERTIES: &[&str] = &[
    "id",
    "isEnabled",
    "fromDate",
    "toDate",
    "subject",
    "textBody",
    "htmlBody",
];

/// RFC 8620 5.1: every requested property must be in `known`; else `invalidArguments`.
pub fn check_properties(requested: &[String], known: &[&str]) -> Result<(), MethodError> {
    match requested.iter().find(|p| !known.contains(&p.as_str())) {
        Some(p) => Err(unknown(p)),
        None => Ok(()),
    }
}

/// [`check_properties`] for Email/get's `properties`: also accepts `header:` names whose
/// form is allowed for their field (RFC 8621 4.1.2, 4.1.3).
pub fn check_email_properties(requested: &[String]) -> Result<(), MethodError> {
    check_with_headers(requested, EMAIL_PROPERTIES)
}

/// [`check_properties`] for Email/get's `bodyProperties`, with `header:` names.
pub fn check_body_properties(requested: &[String]) -> Result<(), MethodError> {
    check_with_headers(requested, BODY_PART_PROPERTIES)
}

/// RFC 8621 4.2 (and 4.9, Email/parse): the `bodyProperties` asked for, checked as
/// [`check_body_properties`] does, or [`BODY_PART_DEFAULT_PROPERTIES`] when the argument
/// is absent or null.
pub fn body_properties_or_default(
    requested: Option<&[String]>,
) -> Result<Vec<String>, MethodError> {
    match requested {
        Some(p) => {
            check_body_properties(p)?;
            Ok(p.to_vec())
        }
        None => Ok(BODY_PART_DEFAULT_PROPERTIES
            .iter()
            .map(|s| s.to_string())
            .collect()),
    }
}

fn check_with_headers(requested: &[String], known: &[&str]) -> Result<(), MethodError> {
    for p in requested {
        if known.contains(&p.as_str()) {
            continue;
        }
        match parse_header_property(p) {
            Some(h) if h.form_allowed() => {}
            Some(_) => {
                return Err(MethodError::invalid_arguments(format!(
                    "the form of {:?} is not allowed for that header field (RFC 8621 4.1.2)",
                    crate::method::short(p)
                )));
            }
            None => return Err(unknown(p)),
        }
    }
    Ok(())
}

fn unknown(p: &str) -> MethodError {
    MethodError::invalid_arguments(format!("unknown property {:?}", crate::method::short(p)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::MethodErrorType;

    fn v(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn defaults_are_subsets() {
        for p in EMAIL_GET_DEFAULT_PROPERTIES {
            assert!(EMAIL_PROPERTIES.contains(p), "{p}");
        }
        assert_eq!(
            EMAIL_PROPERTIES.len(),
            EMAIL_GET_DEFAULT_PROPERTIES.len() + 2
        );
        for p in BODY_PART_DEFAULT_PROPERTIES {
            assert!(BODY_PART_PROPERTIES.contains(p), "{p}");
        }
    }

    #[test]
    fn body_properties_default_when_absent_and_are_checked_when_given() {
        let default = body_properties_or_default(None).unwrap();
        assert_eq!(default, BODY_PART_DEFAULT_PROPERTIES.to_vec());
        let asked = v(&["partId", "header:Content-Type"]);
        assert_eq!(body_properties_or_default(Some(&asked)).unwrap(), asked);
        assert!(body_properties_or_default(Some(&v(&["preview"]))).is_err());
    }

    #[test]
    fn checks() {
        assert!(
            check_email_properties(&v(&[
                "id",
                "subject",
                "header:List-Id:asText",
                "header:From:asAddresses:all"
            ]))
            .is_ok()
        );
        let e = check_email_properties(&v(&["id", "color"])).unwrap_err();
        assert_eq!(e.kind, MethodErrorType::InvalidArguments);
        assert!(e.description.unwrap().contains("color"));
        assert!(check_email_properties(&v(&["header:From:asDate"])).is_err());
        assert!(check_email_properties(&v(&["header:From:asdate"])).is_err());
        assert!(check_body_properties(&v(&["partId", "subParts", "header:Content-Type"])).is_ok());
        assert!(check_body_properties(&v(&["preview"])).is_err());
        assert!(check_properties(&v(&["id", "emailIds"]), THREAD_PROPERTIES).is_ok());
        assert!(check_properties(&v(&["name", "mayDelete"]), IDENTITY_PROPERTIES).is_ok());
        assert!(check_properties(&v(&["unreadThreads", "myRights"]), MAILBOX_PROPERTIES).is_ok());
        assert!(check_properties(&v(&["subject"]), MAILBOX_PROPERTIES).is_err());
    }
}
