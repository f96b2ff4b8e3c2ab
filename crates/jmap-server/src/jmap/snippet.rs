//! SearchSnippet/get (RFC 8621 5.1): the subject and a piece of the preview with the
//! searched words marked. The stored preview is the text the snippet can come from (the
//! full-text index keeps no content); every piece of mail text is HTML-escaped before
//! `<mark>` goes around a match, so a snippet can never carry markup from a message.

use super::{Ctx, ids};
use jmap_proto::mail::EmailFilterCondition;
use jmap_proto::method::filter::Filter;
use jmap_proto::{Id, MethodError};
use serde::Deserialize;
use serde_json::{Map, Value, json};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Args {
    account_id: Id,
    #[serde(default)]
    filter: Option<Value>,
    email_ids: Vec<Id>,
}

/// The words to mark: every `text`, `subject` and `body` of the filter (RFC 8621 5.1:
/// the terms the server matched on).
fn words(f: &Filter<EmailFilterCondition>, out: &mut Vec<String>) {
    match f {
        Filter::Operator(op) => op.conditions.iter().for_each(|c| words(c, out)),
        Filter::Condition(c) => {
            for t in [&c.text, &c.subject, &c.body].into_iter().flatten() {
                out.extend(
                    t.split_whitespace()
                        .take(32)
                        .map(|w| w.trim_matches('"').to_lowercase())
                        .filter(|w| !w.is_empty()),
                );
            }
        }
    }
}

fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// `text` escaped, with every (case-insensitive) occurrence of a word in `<mark>`; None
/// when nothing matched.
pub(crate) fn highlight(text: &str, words: &[String]) -> Option<String> {
    let lower: Vec<char> = text.chars().flat_map(char::to_lowercase).collect();
    let chars: Vec<char> = text.chars().collect();
    // Lowercasing can change lengths (rare); mark on the original only when they agree.
    if lower.len() != chars.len() {
        return None;
    }
    let mut marked = vec![false; chars.len()];
    let mut any = false;
    for w in words {
        let w: Vec<char> = w.chars().collect();
        if w.is_empty() || w.len() > lower.len() {
            continue;
        }
        for i in 0..=lower.len() - w.len() {
            if lower[i..i + w.len()] == w[..] {
                marked[i..i + w.len()].iter_mut().for_each(|m| *m = true);
                any = true;
            }
        }
    }
    if !any {
        return None;
    }
    let mut out = String::new();
    let mut open = false;
    for (c, m) in chars.iter().zip(&marked) {
        if *m && !open {
            out.push_str("<mark>");
            open = true;
        } else if !*m && open {
            out.push_str("</mark>");
            open = false;
        }
        out.push_str(&escape(&c.to_string()));
    }
    if open {
        out.push_str("</mark>");
    }
    Some(out)
}

pub(crate) async fn get(
    ctx: &Ctx<'_>,
    args: Map<String, Value>,
) -> Result<Map<String, Value>, MethodError> {
    let a: Args = jmap_proto::method::parse_args(args)?;
    let account = ctx.account(&a.account_id)?;
    if a.email_ids.len() > ctx.max_objects_in_get {
        return Err(MethodError::new(
            jmap_proto::MethodErrorType::RequestTooLarge,
        ));
    }
    let mut terms = Vec::new();
    if let Some(f) = &a.filter {
        let f: Filter<EmailFilterCondition> = Filter::parse(f)?;
        words(&f, &mut terms);
    }
    let rows: Vec<mail_types::EmailId> = a
        .email_ids
        .iter()
        .filter_map(|id| ids::parse('e', id.as_str()))
        .map(mail_types::EmailId)
        .collect();
    let found = ctx
        .store
        .emails(account, &rows)
        .await
        .map_err(|e| MethodError::server_fail(e.to_string()))?;
    let mut list = Vec::new();
    let mut not_found = Vec::new();
    for id in &a.email_ids {
        match ids::parse('e', id.as_str()).and_then(|n| found.iter().find(|e| e.id.0 == n)) {
            Some(e) => list.push(json!({
                "emailId": id,
                "subject": e.subject.as_deref().and_then(|s| highlight(s, &terms)),
                "preview": highlight(&e.preview, &terms),
            })),
            None => not_found.push(id.clone()),
        }
    }
    let mut m = Map::new();
    m.insert("accountId".into(), json!(a.account_id));
    m.insert("list".into(), Value::Array(list));
    m.insert(
        "notFound".into(),
        if not_found.is_empty() {
            Value::Null
        } else {
            json!(not_found)
        },
    );
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::highlight;

    #[test]
    fn marks_words_and_escapes_mail_text() {
        let w = vec!["pelican".to_string()];
        assert_eq!(
            highlight("Quarterly Pelican report", &w).as_deref(),
            Some("Quarterly <mark>Pelican</mark> report")
        );
        assert_eq!(
            highlight("<b>pelican</b> & co", &w).as_deref(),
            Some("&lt;b&gt;<mark>pelican</mark>&lt;/b&gt; &amp; co")
        );
        assert_eq!(highlight("nothing here", &w), None);
    }
}
