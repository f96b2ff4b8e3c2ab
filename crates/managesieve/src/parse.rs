//! Sans-I/O decoding of ManageSieve server lines (RFC 5804 4, "Formal Syntax").
//!
//! A server line is a sequence of atoms, strings (quoted or literal) and parentheses
//! ending in CRLF; a literal `{n}` CRLF may carry CRLFs inside, so a "line" can span
//! several physical lines. [`parse_line`] decodes one from the front of a buffer and
//! returns `Ok(None)` while it is incomplete, so the caller reads more and tries again.
//! Sizes are checked before anything is buffered for them: a server announcing a
//! literal larger than [`Limits::max_literal`] is refused at the announcement.

use std::fmt;

/// How much a server may make us hold.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Bytes of one line outside its literals.
    pub max_line: usize,
    /// Bytes of one literal (a script is sent as one: 1 MiB is far above what any server
    /// stores per script, Pigeonhole's default `sieve_max_script_size` is 1 MiB).
    pub max_literal: usize,
    /// Lines of one response before its OK/NO/BYE (LISTSCRIPTS answers one per script).
    pub max_lines: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_line: 64 * 1024,
            max_literal: 1024 * 1024,
            max_lines: 10_000,
        }
    }
}

/// What a server sent that this client refuses to read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("line longer than {0} bytes")]
    LineTooLong(usize),
    #[error("literal of {size} bytes announced, at most {max} accepted")]
    LiteralTooLarge { size: u64, max: usize },
    #[error("more than {0} lines in one response")]
    TooManyLines(usize),
    #[error("unexpected byte 0x{byte:02x} at offset {at}")]
    Unexpected { byte: u8, at: usize },
    #[error("malformed literal announcement")]
    BadLiteral,
    #[error("malformed response: {0}")]
    Malformed(&'static str),
}

/// One token of a line.
#[derive(Clone, PartialEq, Eq)]
pub enum Token {
    /// An atom (OK, NO, BYE, response-code names, numbers), as sent.
    Atom(String),
    /// A quoted string (unescaped) or a literal's bytes.
    Str(Vec<u8>),
    Open,
    Close,
}

impl fmt::Debug for Token {
    // A literal may be a whole script: show its size, never its content.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Token::Atom(a) => write!(f, "Atom({a})"),
            Token::Str(s) if s.len() > 80 => write!(f, "Str(<{} bytes>)", s.len()),
            Token::Str(s) => write!(f, "Str({:?})", String::from_utf8_lossy(s)),
            Token::Open => f.write_str("("),
            Token::Close => f.write_str(")"),
        }
    }
}

/// Decodes one line from the front of `buf`: `Ok(Some((tokens, consumed)))`, or
/// `Ok(None)` when more bytes are needed.
pub fn parse_line(buf: &[u8], limits: &Limits) -> Result<Option<(Vec<Token>, usize)>, ParseError> {
    let mut tokens = Vec::new();
    let mut pos = 0;
    // Bytes of the line outside literals, checked against `max_line`.
    let mut outside = 0usize;
    let incomplete = |outside: usize, from: usize| {
        if outside + (buf.len() - from) > limits.max_line {
            Err(ParseError::LineTooLong(limits.max_line))
        } else {
            Ok(None)
        }
    };
    loop {
        let Some(&b) = buf.get(pos) else {
            return incomplete(outside, pos);
        };
        match b {
            b' ' => {
                pos += 1;
                outside += 1;
            }
            b'\r' => match buf.get(pos + 1) {
                Some(b'\n') => return Ok(Some((tokens, pos + 2))),
                Some(&other) => {
                    return Err(ParseError::Unexpected {
                        byte: other,
                        at: pos + 1,
                    });
                }
                None => return incomplete(outside, pos),
            },
            b'(' => {
                tokens.push(Token::Open);
                pos += 1;
                outside += 1;
            }
            b')' => {
                tokens.push(Token::Close);
                pos += 1;
                outside += 1;
            }
            b'"' => {
                let start = pos;
                let mut s = Vec::new();
                let mut i = pos + 1;
                loop {
                    match buf.get(i) {
                        None => return incomplete(outside, start),
                        Some(b'"') => break,
                        // RFC 5804 4: quoted-specials are escaped; anything else after a
                        // backslash is not valid, but taking it as is harms nobody.
                        Some(b'\\') => match buf.get(i + 1) {
                            None => return incomplete(outside, start),
                            Some(&c) => {
                                s.push(c);
                                i += 2;
                            }
                        },
                        // A quoted string never holds CR or LF (RFC 5804 4, QUOTED-CHAR).
                        Some(&c @ (b'\r' | b'\n' | 0)) => {
                            return Err(ParseError::Unexpected { byte: c, at: i });
                        }
                        Some(&c) => {
                            s.push(c);
                            i += 1;
                        }
                    }
                    if outside + (i - start) > limits.max_line {
                        return Err(ParseError::LineTooLong(limits.max_line));
                    }
                }
                outside += i + 1 - start;
                pos = i + 1;
                tokens.push(Token::Str(s));
            }
            b'{' => {
                // literal-s2c = "{" number "}" CRLF *OCTET; accept "{n+}" too.
                let start = pos;
                let Some(close) = buf[pos..].iter().take(24).position(|&c| c == b'}') else {
                    if buf.len() - pos >= 24 {
                        return Err(ParseError::BadLiteral);
                    }
                    return incomplete(outside, start);
                };
                let inner = &buf[pos + 1..pos + close];
                let digits = inner.strip_suffix(b"+").unwrap_or(inner);
                if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
                    return Err(ParseError::BadLiteral);
                }
                let size: u64 = std::str::from_utf8(digits)
                    .ok()
                    .and_then(|d| d.parse().ok())
                    .ok_or(ParseError::BadLiteral)?;
                if size > limits.max_literal as u64 {
                    return Err(ParseError::LiteralTooLarge {
                        size,
                        max: limits.max_literal,
                    });
                }
                let size = size as usize;
                let after = pos + close + 1;
                match (buf.get(after), buf.get(after + 1)) {
                    (Some(b'\r'), Some(b'\n')) => {}
                    (None, _) | (Some(b'\r'), None) => return incomplete(outside, start),
                    _ => return Err(ParseError::BadLiteral),
                }
                let body = after + 2;
                if buf.len() < body + size {
                    return Ok(None);
                }
                outside += body - start;
                tokens.push(Token::Str(buf[body..body + size].to_vec()));
                pos = body + size;
            }
            c if is_atom_char(c) => {
                let start = pos;
                while buf.get(pos).is_some_and(|&c| is_atom_char(c)) {
                    pos += 1;
                }
                if pos == buf.len() {
                    return incomplete(outside, start);
                }
                outside += pos - start;
                // Only ASCII was accepted.
                let atom = String::from_utf8_lossy(&buf[start..pos]).into_owned();
                tokens.push(Token::Atom(atom));
            }
            other => {
                return Err(ParseError::Unexpected {
                    byte: other,
                    at: pos,
                });
            }
        }
        if outside > limits.max_line {
            return Err(ParseError::LineTooLong(limits.max_line));
        }
    }
}

/// RFC 5804 4: ATOM-CHAR is any CHAR except atom-specials ("(" / ")" / SP / CTL /
/// DQUOTE / "{" / "\" and the list/resp specials).
fn is_atom_char(c: u8) -> bool {
    c > 0x20 && c < 0x7f && !matches!(c, b'(' | b')' | b'{' | b'"' | b'\\' | b'%' | b'*')
}

/// OK, NO or BYE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    No,
    Bye,
}

/// A response code (RFC 5804 1.3): its name, upper case (`NONEXISTENT`,
/// `QUOTA/MAXSIZE`), and the strings after it (`SASL`, `TAG`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Code {
    name: String,
    pub args: Vec<String>,
}

impl Code {
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// A whole response: its data lines and the OK/NO/BYE that ends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub data: Vec<Vec<Token>>,
    pub status: Status,
    pub code: Option<Code>,
    /// The human-readable string after the code, if any.
    pub text: Option<String>,
}

/// A final line: its status, response code and text.
pub type Final = (Status, Option<Code>, Option<String>);

/// Whether `tokens` is a final OK/NO/BYE line; then the status, code and text.
pub fn final_line(tokens: &[Token]) -> Result<Option<Final>, ParseError> {
    let status = match tokens.first() {
        Some(Token::Atom(a)) if a.eq_ignore_ascii_case("OK") => Status::Ok,
        Some(Token::Atom(a)) if a.eq_ignore_ascii_case("NO") => Status::No,
        Some(Token::Atom(a)) if a.eq_ignore_ascii_case("BYE") => Status::Bye,
        _ => return Ok(None),
    };
    let mut rest = &tokens[1..];
    let mut code = None;
    if let Some(Token::Open) = rest.first() {
        let close = rest
            .iter()
            .position(|t| *t == Token::Close)
            .ok_or(ParseError::Malformed("response code without ')'"))?;
        let inner = &rest[1..close];
        let name = match inner.first() {
            Some(Token::Atom(a)) => a.to_ascii_uppercase(),
            _ => return Err(ParseError::Malformed("response code without a name")),
        };
        let args = inner[1..]
            .iter()
            .filter_map(|t| match t {
                Token::Str(s) => Some(String::from_utf8_lossy(s).into_owned()),
                Token::Atom(a) => Some(a.clone()),
                _ => None,
            })
            .collect();
        code = Some(Code { name, args });
        rest = &rest[close + 1..];
    }
    let text = match rest {
        [] => None,
        [Token::Str(s)] => Some(String::from_utf8_lossy(s).into_owned()),
        _ => return Err(ParseError::Malformed("unexpected tokens after the status")),
    };
    Ok(Some((status, code, text)))
}

/// Decodes a whole response (data lines up to its OK/NO/BYE) from the front of `buf`:
/// `Ok(Some((response, consumed)))`, or `Ok(None)` when more bytes are needed.
pub fn parse_response(
    buf: &[u8],
    limits: &Limits,
) -> Result<Option<(Response, usize)>, ParseError> {
    let mut data = Vec::new();
    let mut pos = 0;
    loop {
        let Some((tokens, used)) = parse_line(&buf[pos..], limits)? else {
            return Ok(None);
        };
        pos += used;
        if let Some((status, code, text)) = final_line(&tokens)? {
            return Ok(Some((
                Response {
                    data,
                    status,
                    code,
                    text,
                },
                pos,
            )));
        }
        if data.len() >= limits.max_lines {
            return Err(ParseError::TooManyLines(limits.max_lines));
        }
        data.push(tokens);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            max_line: 100,
            max_literal: 50,
            max_lines: 3,
        }
    }

    fn s(v: &str) -> Token {
        Token::Str(v.as_bytes().to_vec())
    }

    #[test]
    fn quoted_literal_and_codes() {
        let buf = b"\"IMPLEMENTATION\" \"Dovecot \\\"P\\\\\"\r\n{5}\r\na\r\nbc \"x\" ACTIVE\r\nNO (QUOTA/MAXSIZE \"x\") \"too big\"\r\n";
        let (r, used) = parse_response(buf, &Limits::default()).unwrap().unwrap();
        assert_eq!(used, buf.len());
        assert_eq!(r.data[0], vec![s("IMPLEMENTATION"), s("Dovecot \"P\\")]);
        assert_eq!(
            r.data[1],
            vec![s("a\r\nbc"), s("x"), Token::Atom("ACTIVE".into())]
        );
        assert_eq!(r.status, Status::No);
        let code = r.code.unwrap();
        assert_eq!(code.name(), "QUOTA/MAXSIZE");
        assert_eq!(code.args, vec!["x".to_string()]);
        assert_eq!(r.text.as_deref(), Some("too big"));
    }

    #[test]
    fn every_prefix_is_incomplete_not_an_error() {
        let buf = b"\"a\" {3+}\r\nxyz\r\nOK (TAG {2}\r\nt1) \"done\"\r\n";
        for n in 0..buf.len() {
            assert_eq!(
                parse_response(&buf[..n], &Limits::default()),
                Ok(None),
                "{n}"
            );
        }
        assert!(parse_response(buf, &Limits::default()).unwrap().is_some());
    }

    #[test]
    fn a_huge_literal_is_refused_at_its_announcement() {
        // Nothing of the 4 GB follows: the size alone is enough to refuse.
        let err = parse_line(b"{4294967296}\r\n", &limits()).unwrap_err();
        assert!(matches!(err, ParseError::LiteralTooLarge { .. }), "{err}");
        let err = parse_line(b"{99999999999999999999999}\r\n", &limits()).unwrap_err();
        assert!(matches!(
            err,
            ParseError::BadLiteral | ParseError::LiteralTooLarge { .. }
        ));
        assert_eq!(
            parse_line(b"{51}\r\n", &limits()).unwrap_err(),
            ParseError::LiteralTooLarge { size: 51, max: 50 }
        );
        // At the limit it is read.
        let mut ok = b"{50}\r\n".to_vec();
        ok.extend([b'x'; 50]);
        ok.extend(b"\r\n");
        assert!(parse_line(&ok, &limits()).unwrap().is_some());
    }

    #[test]
    fn an_endless_line_is_refused() {
        let atom = vec![b'A'; 101];
        assert_eq!(
            parse_line(&atom, &limits()),
            Err(ParseError::LineTooLong(100))
        );
        let mut quoted = vec![b'"'];
        quoted.extend([b'q'; 200]);
        assert_eq!(
            parse_line(&quoted, &limits()),
            Err(ParseError::LineTooLong(100))
        );
        let spaces = vec![b' '; 101];
        assert_eq!(
            parse_line(&spaces, &limits()),
            Err(ParseError::LineTooLong(100))
        );
        // Short and unfinished is merely incomplete.
        assert_eq!(parse_line(&atom[..50], &limits()), Ok(None));
    }

    #[test]
    fn endless_lines_are_refused() {
        let buf = b"\"a\"\r\n\"b\"\r\n\"c\"\r\n\"d\"\r\nOK\r\n";
        assert_eq!(
            parse_response(buf, &limits()),
            Err(ParseError::TooManyLines(3))
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bad in [
            &b"\x00\r\n"[..],
            b"\"a\nb\"\r\n",
            b"OK\rX",
            b"{abc}\r\n",
            b"{}\r\n",
            b"{3}xyz",
            b"{000000000000000000000000000000}\r\n",
            b"OK (\r\n",
            b"OK () \"x\"\r\n",
            b"OK \"a\" \"b\"\r\n",
            b"\xff\xfe\r\n",
        ] {
            let r = parse_response(bad, &Limits::default());
            assert!(r.is_err(), "{:?}: {r:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn random_bytes_never_panic() {
        // A small deterministic generator: the decoder must stay total on any input.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let alphabet = b"{}()\"\\ \r\n0123+OKNOBYEa";
        for _ in 0..20_000 {
            let mut buf = Vec::new();
            for _ in 0..(x % 40) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                buf.push(alphabet[(x % alphabet.len() as u64) as usize]);
            }
            let _ = parse_response(&buf, &limits());
            x = x.wrapping_add(1);
        }
    }
}
