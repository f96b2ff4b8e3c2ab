//! Text helpers: bounded whitespace-collapsing output, HTML-to-text, legacy
//! charset fallback and string sanitising.
//!
//! Everything here works on already-decoded `&str` (or raw bytes for the
//! charset fallback) and never indexes outside a char boundary: positions
//! are only ever taken from ASCII bytes found by searching.

/// Accumulates text, collapsing whitespace runs to one space and dropping
/// control characters, until a char or byte budget is exhausted.
///
/// Used for the JMAP preview (RFC 8621 §4.1.4 "preview": at most 256
/// characters) and for the bounded full-text body.
pub(crate) struct Sink {
    out: String,
    max_chars: usize,
    max_bytes: usize,
    chars: usize,
    pending_space: bool,
    full: bool,
}

impl Sink {
    pub(crate) fn new(max_chars: usize, max_bytes: usize) -> Self {
        Sink {
            out: String::new(),
            max_chars,
            max_bytes,
            chars: 0,
            pending_space: false,
            full: max_chars == 0 || max_bytes == 0,
        }
    }

    /// True once the budget is exhausted; callers stop feeding input then,
    /// which keeps the work proportional to the output, not the input.
    pub(crate) fn is_full(&self) -> bool {
        self.full
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.out.is_empty()
    }

    pub(crate) fn push_char(&mut self, c: char) {
        if self.full {
            return;
        }
        if c.is_whitespace() {
            if !self.out.is_empty() {
                self.pending_space = true;
            }
            return;
        }
        // Control characters (NUL, ESC, C1 ...) and the BOM have no place in
        // an index or a preview; U+FFFD is kept so the loss stays visible.
        if c.is_control() || c == '\u{FEFF}' {
            return;
        }
        let space = usize::from(self.pending_space);
        if self.chars + 1 + space > self.max_chars
            || self.out.len() + c.len_utf8() + space > self.max_bytes
        {
            self.full = true;
            return;
        }
        if self.pending_space {
            self.out.push(' ');
            self.chars += 1;
            self.pending_space = false;
        }
        self.out.push(c);
        self.chars += 1;
    }

    pub(crate) fn push_str(&mut self, s: &str) {
        // Fast path: runs of printable ASCII (the bulk of most mail) are copied whole;
        // everything else goes through `push_char`. Same result, a fraction of the work.
        let bytes = s.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            if self.full {
                return;
            }
            let start = i;
            while i < bytes.len() && (0x21..0x7f).contains(&bytes[i]) {
                i += 1;
            }
            if i > start {
                self.push_ascii_run(&s[start..i]);
                continue;
            }
            // Not a printable ASCII byte: one whole char, whatever its width.
            let Some(c) = s[i..].chars().next() else {
                return;
            };
            self.push_char(c);
            i += c.len_utf8();
        }
    }

    /// `run` is printable ASCII without spaces: one byte per char.
    fn push_ascii_run(&mut self, run: &str) {
        let space = usize::from(self.pending_space);
        let room_chars = self.max_chars.saturating_sub(self.chars + space);
        let room_bytes = self.max_bytes.saturating_sub(self.out.len() + space);
        let take = run.len().min(room_chars).min(room_bytes);
        if take == 0 {
            self.full = true;
            return;
        }
        if self.pending_space {
            self.out.push(' ');
            self.chars += 1;
            self.pending_space = false;
        }
        self.out.push_str(&run[..take]);
        self.chars += take;
        if take < run.len() {
            self.full = true;
        }
    }

    /// A word/block separator (a `<br>`, a part boundary) that must not glue
    /// two words together.
    pub(crate) fn separator(&mut self) {
        if !self.out.is_empty() {
            self.pending_space = true;
        }
    }

    pub(crate) fn finish(self) -> String {
        self.out
    }
}

/// Converts HTML to plain text into `sink` (see [`crate::html_to_text`]).
pub(crate) fn html_into(sink: &mut Sink, html: &str) {
    let mut rest = html;
    while !rest.is_empty() && !sink.is_full() {
        let Some(i) = rest.find(['<', '&']) else {
            sink.push_str(rest);
            return;
        };
        // `i` is the position of an ASCII byte, hence a char boundary.
        sink.push_str(&rest[..i]);
        rest = &rest[i..];
        if rest.starts_with('&') {
            let (decoded, consumed) = decode_entity(rest);
            match decoded {
                Some(c) => sink.push_char(c),
                None => sink.push_char('&'),
            }
            rest = rest.get(consumed.max(1)..).unwrap_or("");
        } else {
            rest = skip_tag(rest, sink);
        }
    }
}

/// Elements whose content is not text a reader sees.
const SKIP_CONTENT: &[&str] = &["script", "style", "title", "template", "noscript"];

/// Elements that separate words (block level or line breaks); inline elements
/// such as `<b>` must not insert spaces ("foo<b>bar</b>" is one word).
const BLOCK: &[&str] = &[
    "br",
    "p",
    "div",
    "li",
    "ul",
    "ol",
    "tr",
    "td",
    "th",
    "table",
    "tbody",
    "thead",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "hr",
    "blockquote",
    "pre",
    "section",
    "article",
    "header",
    "footer",
    "dt",
    "dd",
    "dl",
    "img",
    "center",
    "address",
    "body",
    "html",
    "head",
];

/// `rest` starts with `<`. Returns what follows the tag.
fn skip_tag<'a>(rest: &'a str, sink: &mut Sink) -> &'a str {
    let bytes = rest.as_bytes();
    if rest.starts_with("<!--") {
        // An unterminated comment swallows the rest, as browsers do.
        return match rest.get(4..).and_then(|r| r.find("-->").map(|p| (r, p))) {
            Some((r, p)) => r.get(p + 3..).unwrap_or(""),
            None => "",
        };
    }
    if rest.starts_with("<!") || rest.starts_with("<?") {
        return match rest.find('>') {
            Some(p) => rest.get(p + 1..).unwrap_or(""),
            None => "",
        };
    }
    let mut pos = 1;
    let closing = bytes.get(1) == Some(&b'/');
    if closing {
        pos = 2;
    }
    let name_start = pos;
    while bytes.get(pos).is_some_and(|b| b.is_ascii_alphanumeric()) {
        pos += 1;
    }
    if pos == name_start {
        // "a < b": not a tag, the '<' is text.
        sink.push_char('<');
        return rest.get(1..).unwrap_or("");
    }
    let name = rest.get(name_start..pos).unwrap_or("").to_ascii_lowercase();
    // Find the end of the tag, honouring quoted attribute values which may
    // contain '>'.
    let mut quote: Option<u8> = None;
    let mut end = None;
    for (off, &b) in bytes.iter().enumerate().skip(pos) {
        match quote {
            Some(q) if b == q => quote = None,
            Some(_) => {}
            None if b == b'"' || b == b'\'' => quote = Some(b),
            None if b == b'>' => {
                end = Some(off);
                break;
            }
            None => {}
        }
    }
    let Some(end) = end else {
        return "";
    };
    let after = rest.get(end + 1..).unwrap_or("");
    if BLOCK.contains(&name.as_str()) {
        sink.separator();
    }
    if !closing && SKIP_CONTENT.contains(&name.as_str()) {
        let close = format!("</{name}");
        return match find_ascii_ci(after, close.as_bytes()) {
            Some(p) => {
                let tail = after.get(p..).unwrap_or("");
                match tail.find('>') {
                    Some(q) => tail.get(q + 1..).unwrap_or(""),
                    None => "",
                }
            }
            None => "",
        };
    }
    after
}

/// Case-insensitive search of an ASCII needle; the returned offset is the
/// start of an ASCII match and therefore a char boundary.
fn find_ascii_ci(hay: &str, needle: &[u8]) -> Option<usize> {
    let h = hay.as_bytes();
    if needle.is_empty() || h.len() < needle.len() {
        return None;
    }
    h.windows(needle.len())
        .position(|w| w.eq_ignore_ascii_case(needle))
}

/// Decodes an HTML character reference at the start of `s` (which starts
/// with '&'). Returns the character and the number of bytes consumed; `None`
/// means "not a reference, the '&' is literal".
fn decode_entity(s: &str) -> (Option<char>, usize) {
    let bytes = s.as_bytes();
    // References are short; don't scan far for the ';'.
    let Some(semi) = bytes.iter().take(34).position(|&b| b == b';') else {
        return (None, 1);
    };
    let body = match s.get(1..semi) {
        Some(b) if !b.is_empty() => b,
        _ => return (None, 1),
    };
    let c = if let Some(num) = body.strip_prefix('#') {
        let value = if let Some(hex) = num.strip_prefix(['x', 'X']) {
            u32::from_str_radix(hex, 16).ok()
        } else {
            num.parse::<u32>().ok()
        };
        match value {
            // NUL and surrogates are replaced, as the HTML spec requires.
            Some(0) => Some('\u{FFFD}'),
            Some(v) => Some(char::from_u32(v).unwrap_or('\u{FFFD}')),
            None => None,
        }
    } else {
        named_entity(body)
    };
    match c {
        Some(c) => (Some(c), semi + 1),
        None => (None, 1),
    }
}

fn named_entity(name: &str) -> Option<char> {
    Some(match name {
        "amp" | "AMP" => '&',
        "lt" | "LT" => '<',
        "gt" | "GT" => '>',
        "quot" | "QUOT" => '"',
        "apos" => '\'',
        "nbsp" => ' ',
        "copy" => '©',
        "reg" => '®',
        "trade" => '™',
        "hellip" => '…',
        "mdash" => '—',
        "ndash" => '–',
        "lsquo" => '‘',
        "rsquo" => '’',
        "ldquo" => '“',
        "rdquo" => '”',
        "laquo" => '«',
        "raquo" => '»',
        "bull" => '•',
        "middot" => '·',
        "euro" => '€',
        "pound" => '£',
        "yen" => '¥',
        "cent" => '¢',
        "deg" => '°',
        "times" => '×',
        "shy" | "zwnj" | "zwj" => '\u{FEFF}', // dropped by the sink
        "auml" => 'ä',
        "ouml" => 'ö',
        "uuml" => 'ü',
        "Auml" => 'Ä',
        "Ouml" => 'Ö',
        "Uuml" => 'Ü',
        "szlig" => 'ß',
        "eacute" => 'é',
        "egrave" => 'è',
        "agrave" => 'à',
        "ccedil" => 'ç',
        _ => return None,
    })
}

/// windows-1252 code points for bytes 0x80..=0x9F (WHATWG Encoding
/// Standard); undefined positions map to the C1 control of the same value.
const CP1252_HIGH: [char; 32] = [
    '€', '\u{81}', '‚', 'ƒ', '„', '…', '†', '‡', 'ˆ', '‰', 'Š', '‹', 'Œ', '\u{8D}', 'Ž', '\u{8F}',
    '\u{90}', '‘', '’', '“', '”', '•', '–', '—', '˜', '™', 'š', '›', 'œ', '\u{9D}', 'ž', 'Ÿ',
];

fn cp1252_char(b: u8) -> char {
    match b {
        0x80..=0x9F => CP1252_HIGH[usize::from(b - 0x80)],
        _ => char::from(b),
    }
}

/// Decodes bytes as UTF-8 where they are valid and as windows-1252 where
/// they are not. Raw 8-bit header bytes (forbidden by RFC 5322 §2.2 but
/// common from old mailers) are almost always Latin-1/cp1252, and this
/// keeps them legible instead of turning them into U+FFFD.
pub(crate) fn utf8_or_cp1252(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() + bytes.len() / 4);
    for chunk in bytes.utf8_chunks() {
        out.push_str(chunk.valid());
        out.extend(chunk.invalid().iter().map(|&b| cp1252_char(b)));
    }
    out
}

/// `s` in Unicode Normalization Form C: RFC 8621 4.1.2.2 asks it of header text (the
/// Text form, and so `subject` and address names, which use it). Already-NFC text (almost
/// all of it) is returned without a copy.
pub(crate) fn nfc(s: String) -> String {
    use unicode_normalization::{IsNormalized, UnicodeNormalization, is_nfc_quick};
    match is_nfc_quick(s.chars()) {
        IsNormalized::Yes => s,
        _ => s.nfc().collect(),
    }
}

/// Trims, turns control whitespace (tab, CR, LF) into spaces, drops other
/// control characters and bounds the result to `max_bytes` on a char
/// boundary. Returns the cleaned string and whether it was truncated.
pub(crate) fn clean_field(s: &str, max_bytes: usize) -> (String, bool) {
    let mut out = String::with_capacity(s.len().min(max_bytes));
    let mut truncated = false;
    for c in s.trim().chars() {
        let c = match c {
            '\t' | '\r' | '\n' => ' ',
            c if c.is_control() => continue,
            c => c,
        };
        if out.len() + c.len_utf8() > max_bytes {
            truncated = true;
            break;
        }
        out.push(c);
    }
    let trimmed_len = out.trim_end().len();
    out.truncate(trimmed_len);
    (out, truncated)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h2t(s: &str) -> String {
        let mut sink = Sink::new(usize::MAX, usize::MAX);
        html_into(&mut sink, s);
        sink.finish()
    }

    #[test]
    fn html_basic() {
        assert_eq!(
            h2t(
                "<html><head><title>T</title><style>p{}</style></head><body><p>Hello&nbsp;<b>wor</b>ld</p><p>a &lt; b &amp;&amp; c&#33; &#x263A; &bogus; & x</p></body></html>"
            ),
            "Hello world a < b && c! ☺ &bogus; & x"
        );
        assert_eq!(h2t("a<script>var x = '<p>';</script>b"), "ab");
        assert_eq!(h2t("x<SCRIPT type=\"a>b\">evil()</ScRiPt >y"), "xy");
        assert_eq!(h2t("<!-- hidden --> shown"), "shown");
        assert_eq!(h2t("1 < 2 and <a href='x>y'>link</a>"), "1 < 2 and link");
        assert_eq!(h2t("unterminated <p"), "unterminated");
        assert_eq!(h2t("line<br>break"), "line break");
        assert_eq!(
            h2t("&#0; &#xD800; &#99999999;"),
            "\u{FFFD} \u{FFFD} \u{FFFD}"
        );
    }

    #[test]
    fn sink_limits() {
        let mut s = Sink::new(5, usize::MAX);
        s.push_str("  ab   cd  ef");
        assert_eq!(s.finish(), "ab cd");
        let mut s = Sink::new(usize::MAX, 4);
        s.push_str("aé€");
        assert_eq!(s.finish(), "aé");
        let mut s = Sink::new(10, 100);
        s.push_str("a\0b\u{1b}c");
        assert_eq!(s.finish(), "abc");
    }

    #[test]
    fn cp1252() {
        assert_eq!(utf8_or_cp1252(b"caf\xe9 \x80 ok \xc3\xa9"), "café € ok é");
    }

    #[test]
    fn clean() {
        assert_eq!(clean_field("  a\tb\0c  ", 100), ("a bc".to_string(), false));
        assert_eq!(clean_field("ééé", 5), ("éé".to_string(), true));
    }
}

#[cfg(test)]
mod push_str_tests {
    use super::Sink;

    fn by_chars(s: &str, max_chars: usize, max_bytes: usize) -> String {
        let mut k = Sink::new(max_chars, max_bytes);
        for c in s.chars() {
            k.push_char(c);
        }
        k.out
    }

    #[test]
    fn fast_path_equals_char_path() {
        let samples = [
            "Hello   world,\r\n  this is\tmail.",
            "caf\u{e9} \u{65e5}\u{672c} \u{1F600}x  \u{0}\u{7}ctrl",
            "",
            "   leading and trailing   ",
            "averyveryverylongwordwithoutanyspacesatallthatrunspastthelimit",
        ];
        for s in samples {
            for (mc, mb) in [(1000, 1000), (10, 1000), (1000, 12), (1, 1), (0, 5)] {
                let mut k = Sink::new(mc, mb);
                k.push_str(s);
                assert_eq!(k.out, by_chars(s, mc, mb), "{s:?} {mc} {mb}");
            }
        }
    }
}
