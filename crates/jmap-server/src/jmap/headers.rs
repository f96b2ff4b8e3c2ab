//! `headers` and `header:{name}[:as{form}][:all]` properties (RFC 8621 4.1.2-4.1.3), of an
//! Email (from its stored message) and of a body part (from its parsed header fields).

use jmap_proto::Date;
use jmap_proto::mail::header::{HeaderForm, HeaderProperty, parse_header_property};
use mime::headers as h;
use serde_json::{Map, Value, json};

fn address(a: &h::HeaderAddress) -> Value {
    json!({"name": a.name, "email": a.email})
}

/// One instance of a header field in the asked form.
fn form(value: &[u8], f: HeaderForm) -> Value {
    match f {
        HeaderForm::Raw => json!(h::as_raw(value)),
        HeaderForm::Text => json!(h::as_text(value)),
        HeaderForm::Addresses => Value::Array(h::as_addresses(value).iter().map(address).collect()),
        HeaderForm::GroupedAddresses => Value::Array(
            h::as_grouped_addresses(value)
                .iter()
                .map(|g| {
                    json!({"name": g.name,
                           "addresses": g.addresses.iter().map(address).collect::<Vec<_>>()})
                })
                .collect(),
        ),
        HeaderForm::MessageIds => json!(h::as_message_ids(value)),
        // RFC 8621 4.1.2.6: a Date, so in the offset the field was written in.
        HeaderForm::Date => h::as_date_with_offset(value)
            .and_then(|(t, offset)| Date::new(t, offset).or_else(|| Date::new(t, 0)))
            .map(|d| json!(d.to_string()))
            .unwrap_or(Value::Null),
        HeaderForm::Urls => json!(h::as_urls(value)),
    }
}

/// The value of a `header:` property over the fields (name, raw value) in order: the last
/// instance, or with `:all` every instance (RFC 8621 4.1.3); null / [] when absent.
pub(crate) fn property(fields: &[(&str, &[u8])], p: &HeaderProperty) -> Value {
    let mut values = fields.iter().filter(|(n, _)| p.name_is(n)).map(|(_, v)| *v);
    if p.all {
        Value::Array(values.map(|v| form(v, p.form)).collect())
    } else {
        values.next_back().map_or(Value::Null, |v| form(v, p.form))
    }
}

/// The `headers` property: every field, raw (RFC 8621 4.1.3 EmailHeader).
pub(crate) fn all(fields: &[(&str, &[u8])]) -> Value {
    Value::Array(
        fields
            .iter()
            .map(|(n, v)| json!({"name": n, "value": h::as_raw(v)}))
            .collect(),
    )
}

/// Whether a property name is one this module computes.
pub(crate) fn is_header_property(p: &str) -> bool {
    p == "headers" || p.starts_with("header:")
}

/// The header properties among `props` for a message whose raw bytes are `raw`.
pub(crate) fn email_properties(raw: &[u8], props: &[String]) -> Map<String, Value> {
    let fields: Vec<(&str, &[u8])> = h::fields(raw)
        .into_iter()
        .map(|f| (f.name, f.value))
        .collect();
    let mut out = Map::new();
    for p in props {
        if p == "headers" {
            out.insert(p.clone(), all(&fields));
        } else if let Some(hp) = parse_header_property(p) {
            out.insert(p.clone(), property(&fields, &hp));
        }
    }
    out
}
