//! A bounded fuzz loop over `mime::mdn::parse`: thousands of mutations of real reports
//! (fixed seed, so a failure reproduces). The property: no panic, and whatever is read
//! stays within the documented bounds and the values RFC 8098 allows.

use mime::mdn::{Disposition, Outgoing, build, parse};

const REPORT: &[u8] = b"From: Bob <bob@example.org>\r\nTo: alice@example.org\r\nSubject: Read: hello\r\n\
MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=disposition-notification;\r\n\
\tboundary=\"XX\"\r\n\r\n--XX\r\nContent-Type: text/plain\r\n\r\nYour message was displayed.\r\n\
--XX\r\nContent-Type: message/disposition-notification\r\n\r\nReporting-UA: pc.example.org; Foomail 97.1\r\n\
Original-Recipient: rfc822;bob@example.org\r\nFinal-Recipient: rfc822;bob@example.org\r\n\
Original-Message-ID: <orig@example.org>\r\nDisposition: manual-action/MDN-sent-manually;\r\n displayed\r\n\
Error: one\r\nX-Extra: two\r\n--XX\r\nContent-Type: text/rfc822-headers\r\n\r\nSubject: hello\r\n--XX--\r\n";

/// xorshift64*: enough for mutations, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..1 + rng.below(6) {
        if v.is_empty() {
            v.push(rng.next() as u8);
            continue;
        }
        let i = rng.below(v.len());
        match rng.below(6) {
            0 => v[i] = rng.next() as u8,
            1 => {
                v.remove(i);
            }
            2 => v.insert(i, b":;/\r\n -\"<>="[rng.below(11)]),
            3 => {
                // Repeat a slice: folded lines, duplicated fields and boundaries.
                let end = (i + rng.below(80)).min(v.len());
                let piece = v[i..end].to_vec();
                for _ in 0..rng.below(20) {
                    v.splice(i..i, piece.iter().copied());
                }
            }
            4 => v.truncate(i),
            _ => {
                let j = rng.below(v.len());
                v.swap(i, j);
            }
        }
    }
    v
}

fn check(raw: &[u8]) {
    let Some(m) = parse(raw) else { return };
    let d = &m.disposition;
    assert!(
        Disposition::new(&d.action_mode, &d.sending_mode, &d.kind).as_ref() == Some(d),
        "a disposition RFC 8098 does not know: {d:?}"
    );
    assert!(m.extension_fields.len() <= 200 && m.error.len() <= 200);
    for v in m
        .extension_fields
        .iter()
        .map(|(_, v)| v)
        .chain(&m.error)
        .chain(m.final_recipient.iter())
        .chain(m.original_message_id.iter())
        .chain(m.reporting_ua.iter())
    {
        assert!(v.len() <= 2_000, "unbounded field value: {}", v.len());
    }
    assert!(
        m.text_body
            .as_ref()
            .is_none_or(|t| t.len() <= 64 * 1024 + 4)
    );
}

#[test]
fn mutated_reports_never_panic() {
    let disposition = Disposition::new("automatic-action", "mdn-sent-automatically", "deleted")
        .expect("a valid disposition");
    let built = build(&Outgoing {
        from_name: Some("Alice"),
        from: "alice@example.org",
        to: &["bob@example.org".to_owned()],
        subject: "Deleted: grüße",
        text_body: "It was deleted.",
        reporting_ua: "tidings",
        final_recipient: "rfc822; alice@example.org",
        original_recipient: Some("rfc822; alice@example.org"),
        original_message_id: Some("<orig@example.org>"),
        disposition: &disposition,
        extension_fields: &[("X-A".into(), "b".into())],
        message_id: "m@example.org",
        date: 0,
        boundary: "bb",
        original: Some(REPORT),
    });
    assert!(parse(REPORT).is_some() && parse(&built).is_some());
    let mut rng = Rng(0x6d64_6e5f_6675_7a7a);
    let start = std::time::Instant::now();
    let mut parsed = 0usize;
    for round in 0..4_000 {
        let base = if round % 2 == 0 { REPORT } else { &built[..] };
        let input = mutate(&mut rng, base);
        if parse(&input).is_some() {
            parsed += 1;
        }
        check(&input);
        // Bounded in time as well as in count, whatever the machine.
        if start.elapsed() > std::time::Duration::from_secs(60) {
            break;
        }
    }
    // The mutations are small: many inputs are still reports, so the readers were
    // exercised on near-valid input and not only on junk.
    assert!(parsed > 100, "only {parsed} mutated reports still parsed");
}
