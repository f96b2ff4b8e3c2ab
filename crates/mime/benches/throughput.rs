//! Parse throughput over a few thousand realistic 2-20 KB messages.
//! Run with `cargo bench -p tidings-mime`.

use std::time::Instant;

fn message(i: usize, rng: &mut u64) -> Vec<u8> {
    let mut next = || {
        *rng ^= *rng << 13;
        *rng ^= *rng >> 7;
        *rng ^= *rng << 17;
        *rng
    };
    let target = 2_048 + (next() % (18 * 1024)) as usize;
    let kind = next() % 3;
    let mut m = format!(
        "Return-Path: <sender{i}@example.com>\r\n\
Received: from mx.example.com (mx.example.com [192.0.2.1]) by mail.example.org with ESMTPS id abc{i}; Tue, 2 Jan 2024 10:00:00 +0000\r\n\
From: =?utf-8?q?J=C3=BCrgen_Sender?= <sender{i}@example.com>\r\n\
To: Team <team@example.org>, other@example.net\r\n\
Subject: Re: [project] status update number {i}\r\n\
Date: Tue, 2 Jan 2024 10:{:02}:00 +0100\r\n\
Message-ID: <msg{i}@example.com>\r\n\
In-Reply-To: <msg{}@example.com>\r\n\
References: <root@example.com> <msg{}@example.com>\r\n\
MIME-Version: 1.0\r\n",
        i % 60,
        i.saturating_sub(1),
        i.saturating_sub(1)
    )
    .into_bytes();
    let para = "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore et dolore magna aliqua.\r\n";
    let mut text = String::new();
    match kind {
        0 => {
            m.extend_from_slice(b"Content-Type: text/plain; charset=utf-8\r\n\r\n");
            while m.len() + text.len() < target {
                text.push_str(para);
            }
            m.extend_from_slice(text.as_bytes());
        }
        1 => {
            m.extend_from_slice(b"Content-Type: multipart/alternative; boundary=\"alt\"\r\n\r\n--alt\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n");
            while text.len() * 3 < target {
                text.push_str(para);
            }
            m.extend_from_slice(text.as_bytes());
            m.extend_from_slice(
                b"--alt\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<html><body>",
            );
            while m.len() < target {
                m.extend_from_slice(
                    b"<p style=\"margin:0\">Lorem <b>ipsum</b> dolor sit amet &amp; more.</p>\r\n",
                );
            }
            m.extend_from_slice(b"</body></html>\r\n--alt--\r\n");
        }
        _ => {
            m.extend_from_slice(b"Content-Type: multipart/mixed; boundary=\"mix\"\r\n\r\n--mix\r\nContent-Type: text/plain\r\n\r\nPlease find the file attached.\r\n--mix\r\nContent-Type: application/pdf; name=\"report.pdf\"\r\nContent-Disposition: attachment; filename=\"report.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\n");
            while m.len() < target {
                m.extend_from_slice(b"JVBERi0xLjQKJcfsj6IKNSAwIG9iago8PC9MZW5ndGggNiAwIFIvRmlsdGVyIC9GbGF0ZURlY29k\r\n");
            }
            m.extend_from_slice(b"--mix--\r\n");
        }
    }
    m
}

fn main() {
    let mut rng = 0x1234_5678_9abc_def0u64;
    let msgs: Vec<Vec<u8>> = (0..5_000).map(|i| message(i, &mut rng)).collect();
    let bytes: usize = msgs.iter().map(Vec::len).sum();
    // Warm up.
    for m in msgs.iter().take(200) {
        std::hint::black_box(mime::parse(m));
    }
    let rounds = 3;
    let start = Instant::now();
    let mut attachments = 0;
    for _ in 0..rounds {
        for m in &msgs {
            attachments += std::hint::black_box(mime::parse(m)).attachments.len();
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let mb = (bytes * rounds) as f64 / (1024.0 * 1024.0);
    println!(
        "parsed {} messages ({:.1} MiB, avg {:.1} KiB) x{rounds} in {secs:.3}s: {:.1} MiB/s, {:.0} msg/s ({attachments} attachments)",
        msgs.len(),
        bytes as f64 / (1024.0 * 1024.0),
        bytes as f64 / msgs.len() as f64 / 1024.0,
        mb / secs,
        (msgs.len() * rounds) as f64 / secs
    );
}
