//! Deterministic sample mail: realistic RFC 5322 messages for tests,
//! benchmarks and the demo.
//!
//! Everything comes from a seeded [`StdRng`], so the same seed always yields
//! the same messages (for a given `rand` version). No network, no files.
//! Messages use CRLF line ends, have display names (some non-ASCII, as RFC
//! 2047 encoded words), threads via In-Reply-To/References, plain,
//! alternative and attachment-carrying MIME structures, and about 1 %
//! deliberately malformed messages, because real mailboxes contain those.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

/// One generated message and where it belongs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorpusMessage {
    /// Mailbox name, one of the `folders` passed to [`generate`].
    pub folder: String,
    /// The full message with CRLF line ends.
    pub raw: Vec<u8>,
    /// IMAP flags and keywords (`\Seen`, `\Flagged`, `\Answered`, `$Label1`...).
    pub flags: Vec<String>,
    /// INTERNALDATE, Unix seconds.
    pub internal_date: i64,
}

/// Newest internal date of [`generate`] (2026-03-01T00:00:00Z). Fixed rather
/// than "now" so a seed always produces byte-identical output.
pub const CORPUS_END: i64 = 1_772_323_200;

/// How far back [`generate`] spreads messages: about two years.
const SPAN_SECS: i64 = 2 * 365 * 24 * 3600;

const ME: (&str, &str) = ("Alex Example", "alex@example.org");

const PEOPLE: &[(&str, &str)] = &[
    ("Alice Johnson", "alice@example.org"),
    ("Bob Smith", "bob@example.com"),
    ("Carol Díaz", "carol.diaz@example.net"),
    ("José Müller", "jose.mueller@beispiel.de"),
    ("Zoë Ångström", "zoe@example.se"),
    ("Søren Kierkegaard", "soren@example.dk"),
    ("李雷", "li.lei@example.cn"),
    ("Ελένη Παππά", "eleni@example.gr"),
    ("Дмитрий Иванов", "dmitry@example.ru"),
    ("Dave O'Brien", "dave@example.ie"),
    ("Erin Walker", "erin.walker@example.com"),
    ("Frank Nakamura", "frank@example.jp"),
    ("Grace Hopper", "grace@example.mil"),
    ("Heidi Schäfer", "heidi@example.at"),
    ("Ivan Petrović", "ivan@example.hr"),
    ("Judy Chen", "judy.chen@example.tw"),
    ("Mallory Quinn", "mallory@example.biz"),
    ("Niamh Ní Bhriain", "niamh@example.ie"),
    ("Oscar Ålund", "oscar@example.fi"),
    ("Peggy Lee", "peggy@example.org"),
];

const WORDS: &[&str] = &[
    "the",
    "of",
    "and",
    "to",
    "in",
    "a",
    "is",
    "that",
    "for",
    "it",
    "as",
    "was",
    "with",
    "be",
    "by",
    "on",
    "not",
    "he",
    "this",
    "are",
    "or",
    "his",
    "from",
    "at",
    "which",
    "but",
    "have",
    "an",
    "had",
    "they",
    "you",
    "were",
    "their",
    "one",
    "all",
    "we",
    "can",
    "her",
    "has",
    "there",
    "been",
    "if",
    "more",
    "when",
    "will",
    "would",
    "who",
    "so",
    "no",
    "release",
    "schedule",
    "meeting",
    "budget",
    "review",
    "server",
    "backup",
    "invoice",
    "project",
    "deadline",
    "quarter",
    "report",
    "draft",
    "proposal",
    "contract",
    "customer",
    "feedback",
    "migration",
    "database",
    "cluster",
    "latency",
    "throughput",
    "benchmark",
    "compiler",
    "borrow",
    "checker",
    "lifetime",
    "trait",
    "generic",
    "async",
    "runtime",
    "thread",
    "mutex",
    "channel",
    "iterator",
    "closure",
    "macro",
    "crate",
    "module",
    "workspace",
    "dependency",
    "version",
    "semver",
    "changelog",
    "regression",
    "bisect",
    "patch",
    "merge",
    "conflict",
    "rebase",
    "branch",
    "commit",
    "pipeline",
    "deploy",
    "rollback",
    "incident",
    "postmortem",
    "outage",
    "monitoring",
    "alert",
    "dashboard",
    "metric",
    "garden",
    "tomato",
    "bicycle",
    "mountain",
    "river",
    "weekend",
    "holiday",
    "flight",
    "hotel",
    "train",
    "station",
    "coffee",
    "breakfast",
    "dinner",
    "recipe",
    "birthday",
    "party",
    "concert",
    "ticket",
    "museum",
    "library",
    "novel",
    "chapter",
    "author",
    "poem",
    "painting",
    "harbour",
    "lighthouse",
    "glacier",
    "volcano",
    "desert",
    "forest",
    "meadow",
    "orchard",
    "walnut",
    "saffron",
    "cinnamon",
    "lantern",
    "compass",
    "telescope",
    "nebula",
    "comet",
    "quartz",
    "granite",
    "marble",
    "velvet",
    "copper",
    "silver",
    "umbrella",
    "kettle",
    "teapot",
    "blanket",
    "window",
    "staircase",
    "balcony",
    "chimney",
    "quickly",
    "slowly",
    "carefully",
    "honestly",
    "probably",
    "certainly",
    "unfortunately",
    "apparently",
    "eventually",
    "meanwhile",
    "however",
    "therefore",
    "otherwise",
    "although",
    "because",
    "before",
    "after",
    "during",
    "between",
    "without",
    "against",
    "important",
    "urgent",
    "minor",
    "major",
    "simple",
    "complex",
    "obvious",
    "strange",
    "curious",
    "brilliant",
    "terrible",
    "lovely",
    "green",
    "purple",
    "yellow",
    "orange",
    "ancient",
    "modern",
    "fragile",
    "robust",
    "stable",
    "nightly",
    "beta",
    "feature",
    "bug",
    "fix",
    "test",
    "suite",
    "flaky",
    "timeout",
    "retry",
    "cache",
    "index",
    "query",
    "schema",
    "column",
    "table",
    "row",
    "shard",
    "replica",
    "leader",
    "follower",
    "consensus",
    "quorum",
    "ballot",
    "zebra",
    "penguin",
    "otter",
    "falcon",
    "badger",
    "hedgehog",
    "octopus",
    "squirrel",
    "raccoon",
    "kangaroo",
];

/// Non-ASCII words sprinkled into some bodies so charset handling and
/// full-text search on accented text get exercised.
const FANCY_WORDS: &[&str] = &[
    "café",
    "naïve",
    "Grüße",
    "smörgåsbord",
    "façade",
    "jalapeño",
    "crème",
    "brûlée",
    "Zürich",
    "København",
    "señor",
    "déjà",
    "vu",
    "résumé",
    "über",
    "Straße",
    "niño",
    "Ελλάδα",
    "Москва",
    "東京",
    "北京",
    "😀",
];

const SUBJECT_TEMPLATES: &[&str] = &[
    "Quarterly {0} {1}",
    "Question about the {0}",
    "{0} {1} next week?",
    "Notes from the {0} {1}",
    "[action needed] {0} {1}",
    "Re-planning the {0}",
    "Your {0} is ready",
    "Thoughts on {0} and {1}",
    "Fwd: {0} {1} photos",
    "Weekly {0} digest",
];

const FANCY_SUBJECTS: &[&str] = &[
    "Café meeting über Weihnachten",
    "Grüße aus Zürich",
    "Résumé für die Stelle",
    "日本語の件名テスト",
    "Привет из Москвы",
    "Καλημέρα από την Αθήνα",
    "Smörgåsbord on Friday 🎉",
    "Año nuevo, vida nueva",
];

/// Generates `count` messages spread over `folders` (which must not be
/// empty; defaults to INBOX), internal dates over the two years before
/// [`CORPUS_END`], oldest first.
pub fn generate(seed: u64, count: usize, folders: &[&str]) -> Vec<CorpusMessage> {
    generate_until(seed, count, folders, CORPUS_END)
}

/// Like [`generate`], but the newest message is dated around `end` (Unix
/// seconds), e.g. "now" for a demo.
pub fn generate_until(seed: u64, count: usize, folders: &[&str], end: i64) -> Vec<CorpusMessage> {
    let folders: Vec<&str> = if folders.is_empty() {
        vec!["INBOX"]
    } else {
        folders.to_vec()
    };
    let mut rng = StdRng::seed_from_u64(seed);
    let mut dates: Vec<i64> = (0..count)
        .map(|_| end - rng.gen_range(0..SPAN_SECS))
        .collect();
    dates.sort_unstable();

    let mut threads: Vec<ThreadInfo> = Vec::new();
    let mut out = Vec::with_capacity(count);
    for (i, &date) in dates.iter().enumerate() {
        // INBOX-like first folder gets three times the weight of the others.
        let weights: Vec<u32> = (0..folders.len())
            .map(|j| if j == 0 { 3 } else { 1 })
            .collect();
        let total: u32 = weights.iter().sum();
        let mut pick = rng.gen_range(0..total);
        let mut folder = folders[0];
        for (j, w) in weights.iter().enumerate() {
            if pick < *w {
                folder = folders[j];
                break;
            }
            pick -= w;
        }
        out.push(make_message(&mut rng, i, seed, date, folder, &mut threads));
    }
    out
}

/// A few hundred realistic messages for `tidings demo`, across INBOX,
/// Archive, Sent, Work and Lists/rust-users, with threads.
pub fn demo_corpus() -> Vec<CorpusMessage> {
    generate(
        0x7115_6e55,
        360,
        &["INBOX", "Archive", "Sent", "Work", "Lists/rust-users"],
    )
}

/// A minimal well-formed text/plain message (CRLF line ends, Date and
/// Message-ID set, non-ASCII subject encoded) for simple tests.
pub fn message(from: &str, to: &str, subject: &str, body: &str) -> Vec<u8> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(0))
        .unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut m = String::new();
    push_header(&mut m, "From", from);
    push_header(&mut m, "To", to);
    push_header(&mut m, "Subject", &encode_header_text(subject));
    push_header(&mut m, "Date", &rfc5322_date(now, 0));
    push_header(
        &mut m,
        "Message-ID",
        &format!("<{now}.{n}.{}@testkit.example>", std::process::id()),
    );
    push_header(&mut m, "MIME-Version", "1.0");
    if body.is_ascii() {
        push_header(&mut m, "Content-Type", "text/plain; charset=us-ascii");
        push_header(&mut m, "Content-Transfer-Encoding", "7bit");
    } else {
        push_header(&mut m, "Content-Type", "text/plain; charset=utf-8");
        push_header(&mut m, "Content-Transfer-Encoding", "8bit");
    }
    m.push_str("\r\n");
    m.push_str(&to_crlf(body));
    if !m.ends_with("\r\n") {
        m.push_str("\r\n");
    }
    m.into_bytes()
}

struct ThreadInfo {
    message_id: String,
    references: Vec<String>,
    subject: String,
    from: (&'static str, &'static str),
    snippet: String,
}

fn make_message(
    rng: &mut StdRng,
    index: usize,
    seed: u64,
    date: i64,
    folder: &str,
    threads: &mut Vec<ThreadInfo>,
) -> CorpusMessage {
    let is_sent = folder.eq_ignore_ascii_case("Sent") || folder.ends_with("/Sent");
    let is_list = folder.starts_with("Lists/");
    let person = *PEOPLE.choose(rng).unwrap_or(&PEOPLE[0]);
    let (from, mut to) = if is_sent { (ME, person) } else { (person, ME) };
    let list_addr = is_list.then(|| {
        let name = folder.trim_start_matches("Lists/");
        format!("{name}@lists.example.org")
    });

    // About a third of messages continue a recent thread.
    let parent = if !threads.is_empty() && rng.gen_bool(0.35) {
        let lo = threads.len().saturating_sub(40);
        Some(rng.gen_range(lo..threads.len()))
    } else {
        None
    };
    let (subject, in_reply_to, references, quoted) = match parent {
        Some(p) => {
            let t = &threads[p];
            if !is_sent && !is_list {
                to = ME;
            }
            let base = t.subject.trim_start_matches("Re: ").to_owned();
            let mut refs = t.references.clone();
            refs.push(t.message_id.clone());
            // Long threads keep only the newest references, like real MUAs.
            if refs.len() > 10 {
                refs.drain(..refs.len() - 10);
            }
            (
                format!("Re: {base}"),
                Some(t.message_id.clone()),
                refs,
                Some((t.from, t.snippet.clone())),
            )
        }
        None => {
            let subject = if rng.gen_bool(0.08) {
                (*FANCY_SUBJECTS.choose(rng).unwrap_or(&"Hello")).to_owned()
            } else {
                let tpl = *SUBJECT_TEMPLATES.choose(rng).unwrap_or(&"{0} {1}");
                tpl.replace("{0}", word(rng)).replace("{1}", word(rng))
            };
            (subject, None, Vec::new(), None)
        }
    };
    let domain = from.1.split('@').nth(1).unwrap_or("example.org");
    let message_id = format!("<{:08x}.{index}.{seed:x}@{domain}>", rng.r#gen::<u32>());

    // Body text: mostly 2-20 KB, skewed towards the small end.
    let target = if rng.gen_bool(0.7) {
        rng.gen_range(2_000..8_000)
    } else {
        rng.gen_range(8_000..20_000)
    };
    let fancy = rng.gen_bool(0.15);
    let mut text = prose(rng, target, fancy);
    if let Some(((name, addr), snippet)) = &quoted {
        let mut q = format!("\n\nOn an earlier day, {name} <{addr}> wrote:\n");
        for l in snippet.lines() {
            q.push_str("> ");
            q.push_str(l);
            q.push('\n');
        }
        text.push_str(&q);
    }
    text.push_str(&format!("\n-- \n{}\n", from.0));
    let snippet: String = text.lines().take(4).collect::<Vec<_>>().join("\n");

    let tz = *[0i32, 60, 120, -300, -420, 330, 540, -180]
        .choose(rng)
        .unwrap_or(&0);
    // The Date header is written a little before the server received it.
    let sent_at = date - rng.gen_range(1..600);

    let mut h = String::new();
    let to_header = match &list_addr {
        Some(list) => format!("rust-users list <{list}>"),
        None => mailbox_header(to),
    };
    push_header(&mut h, "Return-Path", &format!("<{}>", from.1));
    push_header(
        &mut h,
        "Received",
        &format!(
            "from mx.example.net (mx.example.net [192.0.2.{}])\r\n\tby mail.example.org with ESMTPS; {}",
            rng.gen_range(1..250),
            rfc5322_date(date, 0)
        ),
    );
    push_header(&mut h, "From", &mailbox_header(from));
    push_header(&mut h, "To", &to_header);
    if rng.gen_bool(0.2) {
        let cc = *PEOPLE.choose(rng).unwrap_or(&PEOPLE[0]);
        let cc2 = *PEOPLE.choose(rng).unwrap_or(&PEOPLE[1]);
        push_header(
            &mut h,
            "Cc",
            &format!("{},\r\n {}", mailbox_header(cc), mailbox_header(cc2)),
        );
    }
    push_header(&mut h, "Subject", &encode_header_text(&subject));
    push_header(&mut h, "Date", &rfc5322_date(sent_at, tz));
    push_header(&mut h, "Message-ID", &message_id);
    if let Some(irt) = &in_reply_to {
        push_header(&mut h, "In-Reply-To", irt);
        push_header(&mut h, "References", &references.join("\r\n "));
    }
    if let Some(list) = &list_addr {
        push_header(&mut h, "List-Id", &format!("<{}>", list.replace('@', ".")));
        push_header(
            &mut h,
            "List-Unsubscribe",
            &format!("<mailto:{list}?subject=unsubscribe>"),
        );
        push_header(&mut h, "Precedence", "list");
    }
    push_header(&mut h, "MIME-Version", "1.0");

    let kind = rng.gen_range(0..100);
    let boundary = format!("=_tk_{:016x}", rng.r#gen::<u64>());
    let body_part = text_part(&text, fancy);
    let mut raw = String::new();
    if kind < 72 {
        raw.push_str(&h);
        raw.push_str(&body_part.0);
        raw.push_str("\r\n");
        raw.push_str(&body_part.1);
    } else if kind < 88 {
        raw.push_str(&h);
        push_header(
            &mut raw,
            "Content-Type",
            &format!("multipart/alternative; boundary=\"{boundary}\""),
        );
        raw.push_str("\r\nThis is a multi-part message in MIME format.\r\n");
        raw.push_str(&format!("\r\n--{boundary}\r\n"));
        raw.push_str(&body_part.0);
        raw.push_str("\r\n");
        raw.push_str(&body_part.1);
        raw.push_str(&format!("\r\n--{boundary}\r\n"));
        raw.push_str("Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n");
        raw.push_str(&quoted_printable(&html_of(&text)));
        raw.push_str(&format!("\r\n--{boundary}--\r\n"));
    } else {
        // Attachments: mostly 10-200 KB, a few close to 1 MB.
        let size = if rng.gen_bool(0.05) {
            rng.gen_range(700_000..760_000)
        } else {
            rng.gen_range(10_000..200_000)
        };
        let (ctype, name, blob) = if rng.gen_bool(0.5) {
            (
                "application/pdf",
                format!("{}-{}.pdf", word(rng), word(rng)),
                fake_pdf(rng, size),
            )
        } else {
            (
                "image/png",
                format!("{}.png", word(rng)),
                fake_png(rng, size),
            )
        };
        raw.push_str(&h);
        push_header(
            &mut raw,
            "Content-Type",
            &format!("multipart/mixed; boundary=\"{boundary}\""),
        );
        raw.push_str("\r\nThis is a multi-part message in MIME format.\r\n");
        raw.push_str(&format!("\r\n--{boundary}\r\n"));
        raw.push_str(&body_part.0);
        raw.push_str("\r\n");
        raw.push_str(&body_part.1);
        raw.push_str(&format!("\r\n--{boundary}\r\n"));
        raw.push_str(&format!(
            "Content-Type: {ctype}; name=\"{name}\"\r\nContent-Disposition: attachment; filename=\"{name}\"\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        ));
        raw.push_str(&base64_lines(&blob));
        raw.push_str(&format!("--{boundary}--\r\n"));
    }

    let mut raw = raw.into_bytes();
    if rng.gen_bool(0.01) {
        raw = malform(rng, raw, &boundary);
    }

    let mut flags = Vec::new();
    if is_sent || rng.gen_bool(0.7) {
        flags.push("\\Seen".to_owned());
    }
    if rng.gen_bool(0.05) {
        flags.push("\\Flagged".to_owned());
    }
    if !is_sent && rng.gen_bool(0.08) {
        flags.push("\\Answered".to_owned());
    }
    if rng.gen_bool(0.04) {
        flags.push(format!("$Label{}", rng.gen_range(1..=5)));
    }

    threads.push(ThreadInfo {
        message_id,
        references,
        subject,
        from,
        snippet,
    });
    CorpusMessage {
        folder: folder.to_owned(),
        raw,
        flags,
        internal_date: date,
    }
}

fn word(rng: &mut StdRng) -> &'static str {
    WORDS.choose(rng).copied().unwrap_or("word")
}

/// Pseudo-English paragraphs of roughly `target` bytes, wrapped at 72.
fn prose(rng: &mut StdRng, target: usize, fancy: bool) -> String {
    let mut out = String::with_capacity(target + 200);
    let greetings = ["Hi", "Hello", "Dear all", "Hey", "Good morning"];
    out.push_str(greetings.choose(rng).copied().unwrap_or("Hi"));
    out.push_str(",\n\n");
    let mut line_len = 0;
    while out.len() < target {
        let sentence_len = rng.gen_range(6..18);
        for k in 0..sentence_len {
            let mut w = if fancy && rng.gen_bool(0.04) {
                FANCY_WORDS
                    .choose(rng)
                    .copied()
                    .unwrap_or("café")
                    .to_owned()
            } else {
                word(rng).to_owned()
            };
            if k == 0 {
                let mut cs = w.chars();
                if let Some(first) = cs.next() {
                    w = first.to_uppercase().chain(cs).collect();
                }
            }
            if line_len + w.len() + 1 > 72 {
                out.push('\n');
                line_len = 0;
            } else if line_len > 0 {
                out.push(' ');
                line_len += 1;
            }
            out.push_str(&w);
            line_len += w.len();
        }
        out.push('.');
        line_len += 1;
        if rng.gen_bool(0.2) {
            out.push_str("\n\n");
            line_len = 0;
        }
    }
    out.push('\n');
    out
}

/// Returns (headers incl. Content-Type, encoded body) of the text part.
fn text_part(text: &str, fancy: bool) -> (String, String) {
    if !fancy || text.is_ascii() {
        (
            "Content-Type: text/plain; charset=us-ascii\r\nContent-Transfer-Encoding: 7bit\r\n"
                .to_owned(),
            to_crlf(text),
        )
    } else if text.len().is_multiple_of(2) {
        (
            "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n"
                .to_owned(),
            quoted_printable(text),
        )
    } else {
        (
            "Content-Type: text/plain; charset=utf-8; format=flowed\r\nContent-Transfer-Encoding: 8bit\r\n"
                .to_owned(),
            to_crlf(text),
        )
    }
}

fn html_of(text: &str) -> String {
    let mut html =
        String::from("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"></head><body>\n");
    for para in text.split("\n\n") {
        let escaped = para
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('\n', " ");
        html.push_str("<p>");
        html.push_str(&escaped);
        html.push_str("</p>\n");
    }
    html.push_str("</body></html>\n");
    html
}

fn to_crlf(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 40);
    let mut prev = '\0';
    for c in text.chars() {
        if c == '\n' && prev != '\r' {
            out.push('\r');
        }
        out.push(c);
        prev = c;
    }
    out
}

/// Quoted-printable (RFC 2045) with soft line breaks at 76 columns.
fn quoted_printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 11 / 10);
    for line in text.split('\n') {
        let mut col = 0;
        let bytes = line.as_bytes();
        for (i, &b) in bytes.iter().enumerate() {
            let last = i + 1 == bytes.len();
            let plain = (b == b' ' || b == b'\t') && !last || (33..=126).contains(&b) && b != b'=';
            let piece = if plain {
                char::from(b).to_string()
            } else {
                format!("={b:02X}")
            };
            if col + piece.len() > 75 {
                out.push_str("=\r\n");
                col = 0;
            }
            out.push_str(&piece);
            col += piece.len();
        }
        out.push_str("\r\n");
    }
    out
}

fn base64_lines(data: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(data);
    let mut out = String::with_capacity(b64.len() + b64.len() / 76 * 2 + 2);
    for chunk in b64.as_bytes().chunks(76) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push_str("\r\n");
    }
    out
}

fn fake_pdf(rng: &mut StdRng, size: usize) -> Vec<u8> {
    let mut v =
        b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\nstream\n".to_vec();
    fill_random(rng, &mut v, size.saturating_sub(40));
    v.extend_from_slice(b"\nendstream\n%%EOF\n");
    v
}

fn fake_png(rng: &mut StdRng, size: usize) -> Vec<u8> {
    let mut v = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\x01\0\0\0\x01\0\x08\x06\0\0\0".to_vec();
    fill_random(rng, &mut v, size.saturating_sub(12));
    v.extend_from_slice(b"\0\0\0\0IEND\xaeB`\x82");
    v
}

fn fill_random(rng: &mut StdRng, v: &mut Vec<u8>, size: usize) {
    let start = v.len();
    v.resize(start.max(size), 0);
    rng.fill(&mut v[start..]);
}

/// Breaks a message in one of several ways seen in real mailboxes.
fn malform(rng: &mut StdRng, raw: Vec<u8>, boundary: &str) -> Vec<u8> {
    let text_end = find(&raw, b"\r\n\r\n").unwrap_or(raw.len());
    let (head, body) = raw.split_at(text_end);
    let mut head = head.to_vec();
    let body = body.to_vec();
    match rng.gen_range(0..5) {
        0 => {
            // Boundary announced in the header differs from the one used.
            let fixed = String::from_utf8_lossy(&head).replace(boundary, "=_wrong_boundary");
            let mut out = fixed.into_bytes();
            out.extend_from_slice(&body);
            // ...and the closing delimiter is cut off.
            if let Some(pos) = find(&out, format!("--{boundary}--").as_bytes()) {
                out.truncate(pos);
            }
            if !out.ends_with(b"\r\n") {
                out.extend_from_slice(b"\r\n");
            }
            out
        }
        1 => {
            // Raw 8-bit Latin-1 in a header, no encoded-word.
            head.extend_from_slice(b"\r\nX-Comment: caf\xe9 cr\xe8me br\xfbl\xe9e \xa9 2024");
            head.extend_from_slice(b"\r\nSubject: R\xe9sum\xe9 (latin-1 raw)");
            head.extend_from_slice(&body);
            head
        }
        2 => {
            // Broken encoded-words: bad base64, unknown charset, no end.
            head.extend_from_slice(
                b"\r\nX-Broken: =?UTF-8?B?not*base64!?= =?x-unknown?Q?caf=E9?= =?UTF-8?Q?never_ends",
            );
            head.extend_from_slice(&body);
            head
        }
        3 => {
            // Missing Date header.
            let text = String::from_utf8_lossy(&head).into_owned();
            let kept: Vec<&str> = text
                .split("\r\n")
                .filter(|l| !l.starts_with("Date:"))
                .collect();
            let mut out = kept.join("\r\n").into_bytes();
            out.extend_from_slice(&body);
            out
        }
        _ => {
            // Garbage lines that are not headers at all.
            head.extend_from_slice(
                b"\r\nthis line has no colon at all\r\n: empty name\r\nX-Null: a\x01b",
            );
            head.extend_from_slice(&body);
            head
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn push_header(out: &mut String, name: &str, value: &str) {
    out.push_str(name);
    out.push_str(": ");
    out.push_str(value);
    out.push_str("\r\n");
}

/// `Display Name <addr>`, quoting or RFC 2047-encoding the name as needed.
fn mailbox_header((name, addr): (&str, &str)) -> String {
    if !name.is_ascii() {
        format!("{} <{addr}>", encode_header_text(name))
    } else if name.chars().any(|c| "()<>[]:;@\\,.\"'".contains(c)) {
        format!(
            "\"{}\" <{addr}>",
            name.replace('\\', "\\\\").replace('"', "\\\"")
        )
    } else {
        format!("{name} <{addr}>")
    }
}

/// RFC 2047 B-encoding in chunks that keep each encoded word under 75
/// characters, folded onto continuation lines. ASCII text is returned as is.
fn encode_header_text(text: &str) -> String {
    if text.is_ascii() {
        return text.to_owned();
    }
    let mut words = Vec::new();
    let mut chunk = String::new();
    for c in text.chars() {
        // 45 bytes of UTF-8 become 60 base64 chars + 12 of framing.
        if chunk.len() + c.len_utf8() > 45 {
            words.push(std::mem::take(&mut chunk));
        }
        chunk.push(c);
    }
    if !chunk.is_empty() {
        words.push(chunk);
    }
    words
        .iter()
        .map(|w| {
            format!(
                "=?UTF-8?B?{}?=",
                base64::engine::general_purpose::STANDARD.encode(w.as_bytes())
            )
        })
        .collect::<Vec<_>>()
        .join("\r\n ")
}

/// RFC 5322 date, e.g. `Tue, 01 Jul 2025 10:52:37 +0200`, for Unix seconds
/// shown in a zone `offset_min` minutes east of UTC.
pub fn rfc5322_date(unix: i64, offset_min: i32) -> String {
    let local = unix + i64::from(offset_min) * 60;
    let days = local.div_euclid(86_400);
    let secs = local.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    // 1970-01-01 was a Thursday.
    let wd = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][days.rem_euclid(7) as usize];
    let mon = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ][(m - 1) as usize];
    let sign = if offset_min < 0 { '-' } else { '+' };
    let off = offset_min.unsigned_abs();
    format!(
        "{wd}, {d:02} {mon} {y} {:02}:{:02}:{:02} {sign}{:02}{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        off / 60,
        off % 60
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian
/// (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(rfc5322_date(0, 0), "Thu, 01 Jan 1970 00:00:00 +0000");
        assert_eq!(
            rfc5322_date(1_751_367_157, 120),
            "Tue, 01 Jul 2025 12:52:37 +0200"
        );
        assert_eq!(
            rfc5322_date(CORPUS_END, -300),
            "Sat, 28 Feb 2026 19:00:00 -0500"
        );
    }

    #[test]
    fn deterministic_and_well_shaped() {
        let folders = ["INBOX", "Archive", "Sent"];
        let a = generate(7, 500, &folders);
        let b = generate(7, 500, &folders);
        assert_eq!(a, b);
        assert_eq!(a.len(), 500);
        assert!(
            a.windows(2)
                .all(|w| w[0].internal_date <= w[1].internal_date)
        );
        assert!(a.iter().all(|m| folders.contains(&m.folder.as_str())));
        let seen = a
            .iter()
            .filter(|m| m.flags.iter().any(|f| f == "\\Seen"))
            .count();
        assert!((300..450).contains(&seen), "seen = {seen}");
        let replies = a
            .iter()
            .filter(|m| find(&m.raw, b"\r\nIn-Reply-To: ").is_some())
            .count();
        assert!(replies > 100, "replies = {replies}");
        // No bare LF anywhere.
        for m in &a {
            for (i, &b) in m.raw.iter().enumerate() {
                if b == b'\n' {
                    assert!(i > 0 && m.raw[i - 1] == b'\r', "bare LF");
                }
            }
        }
        assert_ne!(generate(8, 50, &folders), generate(7, 50, &folders));
    }

    #[test]
    fn demo_has_everything() {
        let d = demo_corpus();
        assert!(d.len() >= 300);
        for f in ["INBOX", "Archive", "Sent", "Work", "Lists/rust-users"] {
            assert!(d.iter().any(|m| m.folder == f), "{f} empty");
        }
        assert!(d.iter().any(|m| find(&m.raw, b"=?UTF-8?B?").is_some()));
        assert!(
            d.iter()
                .any(|m| find(&m.raw, b"multipart/alternative").is_some())
        );
        assert!(
            d.iter()
                .any(|m| find(&m.raw, b"Content-Transfer-Encoding: base64").is_some())
        );
    }

    #[test]
    fn simple_message() {
        let m = message("a@example.org", "b@example.org", "Grüße", "line1\nline2");
        let s = String::from_utf8_lossy(&m);
        assert!(s.contains("Subject: =?UTF-8?B?R3LDvMOfZQ==?=\r\n"));
        assert!(s.ends_with("\r\n\r\nline1\r\nline2\r\n"));
    }
}
