//! The words of the full-text index, cut the same way for both backends.
//!
//! SQLite's FTS5 (`unicode61`) and PostgreSQL's text search parser do not agree on what a
//! word is: PostgreSQL keeps `alice@example.com`, URLs and hyphenated words whole, FTS5
//! splits them; FTS5 removes the diacritics of Latin letters only, `unaccent` more. So the
//! text is cut into words here, once, and both indexes get the words as one lowercase,
//! space-separated string that each backend's own tokenizer splits at the spaces only
//! and keeps as is. A query word is cut the same way into a phrase of those words.
//!
//! A word is a run of letters and digits, lowercased, its marks removed (after canonical
//! decomposition: `é` is `e`, and the marks of every script, not only Latin, as FTS5's
//! `remove_diacritics 2` does for Latin). Scripts written without spaces between words
//! (Han, kana, Thai, Lao, Khmer, Myanmar) have no word to cut at: a run of them is
//! indexed as its overlapping pairs of characters followed by its last character
//! ("東京都" is 東京 京都 都), so any part of it is found: a query run of two characters
//! or more is the phrase of its pairs, a single character is a prefix.

use unicode_normalization::char::{decompose_canonical, is_combining_mark};

/// Longest word indexed, in bytes: PostgreSQL drops a word of 2 KB or more from a
/// `tsvector`, FTS5 would keep it; nobody searches such a word, so neither keeps it.
const MAX_WORD: usize = 1000;

/// Whether `c` belongs to a script written without spaces between words.
fn unbroken(c: char) -> bool {
    matches!(c as u32,
        0x0E00..=0x0EFF          // Thai, Lao
        | 0x1000..=0x109F        // Myanmar
        | 0x1780..=0x17FF        // Khmer
        | 0x19E0..=0x19FF        // Khmer symbols
        | 0x2E80..=0x2FDF        // CJK radicals, Kangxi
        | 0x3005..=0x3007        // 々 〆 〇
        | 0x3021..=0x3029        // Hangzhou numerals
        | 0x3031..=0x3035        // kana repeat marks
        | 0x3040..=0x30FF        // Hiragana, Katakana
        | 0x3190..=0x319F        // Kanbun
        | 0x31F0..=0x31FF        // Katakana phonetic extensions
        | 0x3400..=0x4DBF        // CJK extension A
        | 0x4E00..=0x9FFF        // CJK unified ideographs
        | 0xF900..=0xFAFF        // CJK compatibility ideographs
        | 0xFF66..=0xFF9F        // halfwidth Katakana
        | 0x20000..=0x3FFFF // CJK extensions B and later
    )
}

/// The letters and digits of `s`, lowercased and without marks, as runs: each run is a
/// word (or a run of an unbroken script, which the callers cut further).
fn runs(s: &str) -> Vec<(String, bool)> {
    let mut out: Vec<(String, bool)> = Vec::new();
    let mut cur = String::new();
    let mut cur_unbroken = false;
    let flush = |cur: &mut String, unbroken: bool, out: &mut Vec<(String, bool)>| {
        if !cur.is_empty() {
            out.push((std::mem::take(cur), unbroken));
        }
    };
    for c in s.chars() {
        for l in c.to_lowercase() {
            let mut base = Vec::new();
            decompose_canonical(l, |d| base.push(d));
            for d in base {
                if is_combining_mark(d) {
                    continue;
                }
                if !d.is_alphanumeric() {
                    flush(&mut cur, cur_unbroken, &mut out);
                    continue;
                }
                let u = unbroken(d);
                if u != cur_unbroken {
                    flush(&mut cur, cur_unbroken, &mut out);
                    cur_unbroken = u;
                }
                cur.push(d);
            }
        }
    }
    flush(&mut cur, cur_unbroken, &mut out);
    out
}

/// A run of an unbroken script as indexed: its pairs, then its last character.
fn pairs(run: &str, out: &mut Vec<String>) {
    let chars: Vec<char> = run.chars().collect();
    for w in chars.windows(2) {
        out.push(w.iter().collect());
    }
    if let Some(last) = chars.last() {
        out.push(last.to_string());
    }
}

/// The text as the index gets it: its words, space-separated.
pub(crate) fn index_text(s: &str) -> String {
    let mut words = Vec::new();
    for (run, u) in runs(s) {
        if u {
            pairs(&run, &mut words);
        } else if run.len() <= MAX_WORD {
            words.push(run);
        }
    }
    words.join(" ")
}

/// The head part of an Email's text: subject, then addresses, apart (PostgreSQL keeps
/// them in one column; `SUBJECT_END` is where the subject ends).
pub(crate) fn head_text(subject: &str, addresses: &str) -> String {
    format!(
        "{} {SUBJECT_END} {}",
        index_text(subject),
        index_text(addresses)
    )
}

/// What separates subject and addresses in the head text: never in a word, and a
/// separator for both tokenizers.
pub(crate) const SUBJECT_END: char = '|';

/// One query word as a phrase of index words, in order; the last one a prefix when
/// `prefix` (a single character of an unbroken script at the end).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Phrase {
    pub words: Vec<String>,
    pub prefix: bool,
}

/// The phrase a query word means, or `None` when it has no letter or digit.
pub(crate) fn phrase(word: &str) -> Option<Phrase> {
    let runs = runs(word);
    let n = runs.len();
    let mut words = Vec::new();
    let mut prefix = false;
    for (i, (run, u)) in runs.into_iter().enumerate() {
        let last = i + 1 == n;
        if !u {
            words.push(run);
            continue;
        }
        let chars: Vec<char> = run.chars().collect();
        if last {
            if chars.len() == 1 {
                // Any pair starting with it, or the run's last character.
                words.push(run);
                prefix = true;
            } else {
                // Anywhere inside a run: its pairs only.
                words.extend(chars.windows(2).map(|w| w.iter().collect::<String>()));
            }
        } else {
            // Followed by another word in the query: the run ends here, so its last
            // character (indexed alone at the end of a run) is part of the phrase.
            pairs(&run, &mut words);
        }
    }
    (!words.is_empty()).then_some(Phrase { words, prefix })
}

impl Phrase {
    /// As an FTS5 phrase (each word is letters and digits only, so quoting is plain).
    pub(crate) fn fts5(&self) -> String {
        format!(
            "\"{}\"{}",
            self.words.join(" "),
            if self.prefix { " *" } else { "" }
        )
    }

    /// As a PostgreSQL `tsquery` (its input form: quoted lexemes are taken as they are).
    pub(crate) fn tsquery(&self) -> String {
        let n = self.words.len();
        let parts: Vec<String> = self
            .words
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let star = if self.prefix && i + 1 == n { ":*" } else { "" };
                format!("'{w}'{star}")
            })
            .collect();
        let phrase = parts.join(" <-> ");
        if n > 1 { format!("({phrase})") } else { phrase }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_cut_at_anything_but_letters_and_digits() {
        assert_eq!(
            index_text("Café, alice@Example.com e-mail x2"),
            "cafe alice example com e mail x2"
        );
        assert_eq!(index_text("Ελληνικά Привет"), "ελληνικα привет");
        assert_eq!(index_text("東京都に"), "東京 京都 都に に");
        assert_eq!(index_text("iPhone東京"), "iphone 東京 京");
        assert_eq!(head_text("Hi", "a@b"), "hi | a b");
    }

    #[test]
    fn a_query_run_of_an_unbroken_script_is_its_pairs_or_a_prefix() {
        let p = phrase("東京").unwrap();
        assert_eq!(p.words, ["東京"]);
        assert!(!p.prefix);
        assert_eq!(phrase("東京都").unwrap().words, ["東京", "京都"]);
        let one = phrase("東").unwrap();
        assert!(one.prefix);
        assert_eq!(one.tsquery(), "'東':*");
        assert_eq!(one.fts5(), "\"東\" *");
        assert_eq!(phrase("京x").unwrap().words, ["京", "x"]);
        assert_eq!(phrase("e-mail").unwrap().tsquery(), "('e' <-> 'mail')");
        assert_eq!(phrase("---"), None);
    }
}
