//! Modified UTF-7 for mailbox names (RFC 3501 5.1.3). Hand-written because it is twenty
//! lines on top of `base64`'s IMAP alphabet, and the crates offering it are unmaintained.

use base64::Engine;
use base64::alphabet::IMAP_MUTF7;
use base64::engine::{GeneralPurpose, GeneralPurposeConfig};

const ENGINE: GeneralPurpose = GeneralPurpose::new(
    &IMAP_MUTF7,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::RequireNone),
);

/// Decodes a wire mailbox name. Invalid sequences are kept verbatim, so a name a server
/// got wrong still shows (and still round-trips through `raw_name`).
pub fn decode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let after = &rest[amp + 1..];
        let Some(dash) = after.find('-') else {
            out.push_str(&rest[amp..]);
            return out;
        };
        let b64 = &after[..dash];
        if b64.is_empty() {
            out.push('&');
        } else {
            match ENGINE.decode(b64) {
                Ok(bytes) if bytes.len() % 2 == 0 => {
                    let units: Vec<u16> = bytes
                        .chunks_exact(2)
                        .map(|c| u16::from_be_bytes([c[0], c[1]]))
                        .collect();
                    out.push_str(&String::from_utf16_lossy(&units));
                }
                _ => out.push_str(&rest[amp..amp + 2 + dash]),
            }
        }
        rest = &after[dash + 1..];
    }
    out.push_str(rest);
    out
}

/// Encodes a mailbox name for the wire.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut pending: Vec<u16> = Vec::new();
    let flush = |pending: &mut Vec<u16>, out: &mut String| {
        if !pending.is_empty() {
            let bytes: Vec<u8> = pending.iter().flat_map(|u| u.to_be_bytes()).collect();
            out.push('&');
            out.push_str(&ENGINE.encode(bytes));
            out.push('-');
            pending.clear();
        }
    };
    for c in s.chars() {
        if (' '..='~').contains(&c) {
            flush(&mut pending, &mut out);
            if c == '&' {
                out.push_str("&-");
            } else {
                out.push(c);
            }
        } else {
            let mut buf = [0u16; 2];
            pending.extend_from_slice(c.encode_utf16(&mut buf));
        }
    }
    flush(&mut pending, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for (plain, wire) in [
            ("INBOX", "INBOX"),
            ("Entw\u{fc}rfe", "Entw&APw-rfe"),
            ("A&B", "A&-B"),
            ("\u{65e5}\u{672c}\u{8a9e}", "&ZeVnLIqe-"),
            ("\u{1F600} smile", "&2D3eAA- smile"),
        ] {
            assert_eq!(encode(plain), wire);
            assert_eq!(decode(wire), plain);
        }
        assert_eq!(decode("broken&***-x"), "broken&***-x");
        assert_eq!(decode("open&AAA"), "open&AAA");
    }
}
