//! `#creationId` in the id arguments of read methods (RFC 8620 3.3 and 5.3): an object
//! created earlier in the same request may be named by its creation id prefixed with
//! `#`, wherever an id is expected. The /set methods resolve it themselves; this does it
//! for the ids a read method takes, so a client can create and read back in one request
//! (`Email/set` create, then `Email/get` with `ids: ["#draft"]`), as jmaplib's
//! `CreationRef` and Cyrus-tested clients do.

use jmap_proto::Id;
use serde_json::{Map, Value};
use std::collections::HashMap;

/// RFC 8620 5.3: a created object's `id` (in the `created` answer `obj`) is what
/// `#cid` names for the rest of the request.
pub(crate) fn record(created: &mut HashMap<String, Id>, cid: &Id, obj: &Value) {
    if let Some(id) = obj
        .get("id")
        .and_then(Value::as_str)
        .and_then(|s| Id::new(s).ok())
    {
        created.insert(cid.as_str().to_string(), id);
    }
}

/// The arguments of `method` that hold ids of objects a request may have created.
fn id_arguments(method: &str) -> &'static [&'static str] {
    match method {
        "SearchSnippet/get" => &["emailIds"],
        "Email/parse" | "Blob/copy" => &["blobIds"],
        m if m.ends_with("/get") => &["ids"],
        _ => &[],
    }
}

/// Replaces each `#creationId` in the id arguments of `method` by the id the server
/// gave that creation. An unknown creation id is left as it is: the method answers it
/// `notFound` like any id it does not know.
pub(crate) fn resolve(method: &str, args: &mut Map<String, Value>, created: &HashMap<String, Id>) {
    for key in id_arguments(method) {
        let Some(Value::Array(ids)) = args.get_mut(*key) else {
            continue;
        };
        for v in ids {
            if let Some(id) = v
                .as_str()
                .and_then(|s| s.strip_prefix('#'))
                .and_then(|c| created.get(c))
            {
                *v = Value::String(id.as_str().to_owned());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn creation_ids_in_read_arguments() {
        let created: HashMap<String, Id> =
            [("d".to_string(), Id::new("e7".to_string()).unwrap())].into();
        let mut args = json!({"ids": ["#d", "#nope", "e1"], "properties": ["#d"]})
            .as_object()
            .cloned()
            .unwrap();
        resolve("Email/get", &mut args, &created);
        assert_eq!(
            Value::Object(args),
            json!({"ids": ["e7", "#nope", "e1"], "properties": ["#d"]})
        );
        let mut args = json!({"emailIds": ["#d"]}).as_object().cloned().unwrap();
        resolve("SearchSnippet/get", &mut args, &created);
        assert_eq!(args["emailIds"], json!(["e7"]));
        // A /set resolves its own references (and `#` in a create is a creation id).
        let mut args = json!({"ids": ["#d"]}).as_object().cloned().unwrap();
        resolve("Email/set", &mut args, &created);
        assert_eq!(args["ids"], json!(["#d"]));
    }
}
