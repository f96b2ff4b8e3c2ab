//! A bounded fuzz loop over the response framer and parser: thousands of mutations of
//! real server responses (fixed seed, so a failure reproduces). The property: no panic, no
//! frame longer than its input, and every byte is either framed or still pending.

use imap_sync::{conn, response};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const SAMPLES: &[&[u8]] = &[
    b"* OK [CAPABILITY IMAP4rev1 LITERAL+ SASL-IR AUTH=PLAIN] ready\r\n",
    b"* 12 FETCH (UID 77 FLAGS (\\Seen $Work) MODSEQ (9012) RFC822.SIZE 5 INTERNALDATE \"01-Jan-2020 00:00:00 +0000\" BODY[HEADER] {5}\r\nab\r\nc)\r\n",
    b"* LIST (\\HasNoChildren \\Sent) \"/\" \"Sent Items\"\r\n",
    b"* STATUS \"INBOX\" (MESSAGES 3 UIDNEXT 9 UIDVALIDITY 1 UNSEEN 1 HIGHESTMODSEQ 44)\r\n",
    b"* VANISHED (EARLIER) 1:3,7,9:12\r\n",
    b"* ESEARCH (TAG \"T4\") UID ALL 1:5,8\r\n",
    b"* OK [UIDVALIDITY 3857529045] UIDs valid\r\n",
    b"* OK [HIGHESTMODSEQ 715194045007] Highest\r\n",
    b"T9 OK [COPYUID 38505 304,319:320 3956:3958] Done\r\n",
    b"T3 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n",
    b"* 3 EXPUNGE\r\n* 4 EXISTS\r\n",
    b"* ENABLED QRESYNC\r\n",
    b"* QUOTAROOT \"INBOX\" \"User quota\"\r\n",
    b"* QUOTA \"User quota\" (STORAGE 12 10240 MESSAGE 3 1000)\r\n",
];

fn mutate(rng: &mut StdRng, input: &[u8]) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..rng.gen_range(1..6) {
        if v.is_empty() {
            v.push(rng.r#gen());
            continue;
        }
        let i = rng.gen_range(0..v.len());
        match rng.gen_range(0..6) {
            0 => v[i] = rng.r#gen(),
            1 => {
                v.remove(i);
            }
            2 => v.insert(i, rng.r#gen()),
            3 => v.insert(
                i,
                *b"{}()[]\"\\\r\n *:0123456789"
                    .get(rng.gen_range(0..23))
                    .unwrap_or(&b'x'),
            ),
            4 => {
                let n: u32 = rng.gen_range(0..200);
                let lit = format!("{{{n}}}\r\n");
                for (k, b) in lit.bytes().enumerate() {
                    v.insert((i + k).min(v.len()), b);
                }
            }
            _ => v.truncate(i),
        }
    }
    v
}

#[test]
fn mutated_responses_never_panic() {
    let mut rng = StdRng::seed_from_u64(0x7151_6e55);
    for round in 0..20_000 {
        let sample = SAMPLES[round % SAMPLES.len()];
        let data = mutate(&mut rng, sample);
        let mut frames = Vec::new();
        let mut rest: &[u8] = &data;
        // Frame as the connection does, then parse each frame.
        for _ in 0..1000 {
            match conn::frame_len(rest) {
                Ok(Some(end)) => {
                    assert!(end <= rest.len() && end > 0);
                    frames.push(bytes::Bytes::copy_from_slice(&rest[..end]));
                    rest = &rest[end..];
                }
                Ok(None) | Err(_) => break,
            }
        }
        for f in &frames {
            let _ = response::parse(f);
        }
    }
}
