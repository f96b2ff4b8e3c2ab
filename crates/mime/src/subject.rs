//! RFC 5256 §2.1 "base subject" extraction, used as the last-resort thread
//! key when a message carries no usable References/In-Reply-To.

/// Reply/forward markers recognised in a subject leader. RFC 5256 lists
/// "re", "fw" and "fwd"; "aw" (German "Antwort"), "sv" (Scandinavian
/// "svar") and "wg" (German "weitergeleitet") are what localized Outlook
/// emits. Longer prefixes first so "fwd" wins over "fw".
const MARKERS: &[&str] = &["fwd", "fw", "re", "aw", "sv", "wg"];

/// See [`crate::base_subject`].
pub(crate) fn base_subject(subject: &str) -> String {
    // Step 1: collapse every run of whitespace to a single space.
    let mut s: String = {
        let mut out = String::with_capacity(subject.len());
        for word in subject.split_whitespace() {
            if !out.is_empty() {
                out.push(' ');
            }
            out.extend(word.chars().filter(|c| !c.is_control()));
        }
        out
    };
    loop {
        // Step 2: remove trailing "(fwd)" subj-trailers and whitespace.
        loop {
            let t = s.trim_end();
            let n = t.len();
            if n >= 5
                && t.get(n - 5..)
                    .is_some_and(|e| e.eq_ignore_ascii_case("(fwd)"))
            {
                s.truncate(n - 5);
            } else {
                s.truncate(n);
                break;
            }
        }
        // Steps 3-5: remove subj-leaders and leading subj-blobs until stable.
        loop {
            let before = s.len();
            s = strip_leader(&s).to_string();
            if s.len() == before {
                break;
            }
        }
        // Step 6: "[fwd: ...]" wrappers are unwrapped and the whole process
        // repeats on the inside.
        let n = s.len();
        if n >= 6 && s.get(..5).is_some_and(|p| p.eq_ignore_ascii_case("[fwd:")) && s.ends_with(']')
        {
            s = s.get(5..n - 1).unwrap_or("").trim().to_string();
            continue;
        }
        break;
    }
    s.to_lowercase()
}

/// Skips one `[...]` subj-blob (no nested brackets) plus trailing spaces.
fn skip_blob(s: &str) -> Option<&str> {
    let inner = s.strip_prefix('[')?;
    let end = inner.find(['[', ']'])?;
    if inner.as_bytes().get(end) != Some(&b']') {
        return None;
    }
    Some(inner.get(end + 1..)?.trim_start())
}

/// One round of subj-leader removal: `*subj-blob subj-refwd` (RFC 5256
/// ABNF: subj-refwd = ("re" / ("fw" ["d"])) *WSP [subj-blob] ":"), or a
/// lone leading subj-blob when something remains after it.
fn strip_leader(s: &str) -> &str {
    let s = s.trim_start();
    // Leading blobs such as "[rust-users]".
    let mut after_blobs = s;
    while let Some(rest) = skip_blob(after_blobs) {
        after_blobs = rest;
    }
    for marker in MARKERS {
        let n = marker.len();
        let Some(head) = after_blobs.get(..n) else {
            continue;
        };
        if !head.eq_ignore_ascii_case(marker) {
            continue;
        }
        let mut rest = after_blobs.get(n..).unwrap_or("").trim_start();
        // "Re[2]:" counters are subj-blobs too.
        while let Some(r) = skip_blob(rest) {
            rest = r;
        }
        if let Some(r) = rest.strip_prefix(':') {
            return r.trim_start();
        }
    }
    // Step 4: a leading blob is removed only if it is not the whole subject.
    if after_blobs.len() != s.len() && !after_blobs.is_empty() {
        return after_blobs;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::base_subject;

    #[test]
    fn cases() {
        let cases = [
            ("Hello", "hello"),
            ("Re: Hello", "hello"),
            ("RE: re: Re:Hello", "hello"),
            ("Fwd: Re: [rust-users] Re: Hello", "hello"),
            ("[rust-users] Re: Hello  world", "hello world"),
            ("Re[2]: Hello", "hello"),
            ("AW: SV: WG: Fw: Hello", "hello"),
            ("Hello (fwd)", "hello"),
            ("Hello (fwd) (FWD)  ", "hello"),
            ("[Fwd: Re: Hello]", "hello"),
            ("[list]", "[list]"),
            ("Re:", ""),
            ("", ""),
            ("Rest of the story", "rest of the story"),
            ("Re: Sveriges: x", "sveriges: x"),
            ("  Re :  \t Spaced\tout ", "spaced out"),
            ("Re: Ünïcödé", "ünïcödé"),
            ("[a][b] Re: [c] x", "x"),
            ("[unclosed Re: x", "[unclosed re: x"),
        ];
        for (input, want) in cases {
            assert_eq!(base_subject(input), want, "input {input:?}");
        }
    }
}
