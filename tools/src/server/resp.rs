//! Parsing requests of the Redis protocol (RESP): multibulk commands
//! (`*<n>\r\n$<len>\r\n<bytes>\r\n…`) and inline commands (`SET k v\r\n`).
//!
//! This module depends on `std` only, so that the fuzz target (`tools/fuzz`) and the
//! property test (`tools/tests/serve_parser.rs`) include it by path and test exactly
//! the code the server runs.
//!
//! [`parse`] looks at the start of a buffer and says one of: here is one whole command
//! (and how many bytes it took), nothing to do for these bytes (an empty line), come
//! back when the buffer holds at least this many bytes, or the input is malformed (the
//! server answers `-ERR Protocol error: …` and closes the connection). It never reads
//! past the buffer, never panics, and never asks for more bytes than its limits allow:
//! a request that could only be completed past a limit is an error at once.

use std::fmt;
use std::ops::Range;

/// Longest inline command line, and longest `*<n>` or `$<len>` header line, as Redis.
pub const INLINE_LEN_MAX: usize = 64 * 1024;
/// Longest header line (`*<count>` or `$<len>`) with its CRLF: a sign and 20 digits.
const HEADER_LEN_MAX: usize = 24;

/// Bounds one request must respect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest bulk string (one argument).
    pub bulk_len_max: usize,
    /// Most arguments (the command name included).
    pub args_max: usize,
    /// Most bytes one request may take in the input buffer.
    pub request_len_max: usize,
}

/// The arguments of a command, as ranges of the buffer (multibulk: no copy) or as owned
/// bytes (inline commands, whose quotes and escapes are decoded).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Args {
    Ranges(Vec<Range<usize>>),
    Owned(Vec<Vec<u8>>),
}

/// What the start of a buffer holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Parsed {
    /// One whole command of `len` bytes; `args` is never empty.
    Command { args: Args, len: usize },
    /// `len` bytes that hold no command (an empty inline line, `*0`, `*-1`).
    Skip { len: usize },
    /// Incomplete: try again when the buffer holds at least `len_min` bytes.
    Incomplete { len_min: usize },
}

/// Malformed input; the text follows `Protocol error: ` in the reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProtocolError(pub String);

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Protocol error: {}", self.0)
    }
}

impl std::error::Error for ProtocolError {}

fn error<T>(what: impl Into<String>) -> Result<T, ProtocolError> {
    Err(ProtocolError(what.into()))
}

/// Parses the request at the start of `buf`. See the module documentation.
pub fn parse(buf: &[u8], limits: &Limits) -> Result<Parsed, ProtocolError> {
    match buf.first() {
        None => Ok(Parsed::Incomplete { len_min: 1 }),
        Some(b'*') => parse_multibulk(buf, limits),
        Some(_) => parse_inline(buf, limits),
    }
}

/// The line starting at `start` (without its CRLF) and the offset after the CRLF; `None`
/// when the CRLF has not arrived. A lone CR or LF inside a header line is an error.
fn header_line(
    buf: &[u8],
    start: usize,
    what: &str,
) -> Result<Option<(usize, usize)>, ProtocolError> {
    let window_end = buf.len().min(start + HEADER_LEN_MAX);
    let window = &buf[start..window_end];
    match window.iter().position(|&b| b == b'\r' || b == b'\n') {
        Some(i) if window[i] == b'\n' => error(format!("expected CRLF after the {what}")),
        Some(i) => match buf.get(start + i + 1) {
            Some(b'\n') => Ok(Some((start + i, start + i + 2))),
            Some(_) => error(format!("expected CRLF after the {what}")),
            None => Ok(None),
        },
        None if window.len() >= HEADER_LEN_MAX => error(format!("too big {what} string")),
        None => Ok(None),
    }
}

/// A decimal integer as RESP writes it: an optional `-`, then 1 to 19 digits, no `+`,
/// no spaces, no leading zeros (except `0` itself).
pub fn parse_i64(s: &[u8]) -> Option<i64> {
    let (negative, digits) = match s.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, s),
    };
    if digits.is_empty() || digits.len() > 19 || (digits[0] == b'0' && digits.len() > 1) {
        return None;
    }
    if negative && digits == b"0" {
        return None;
    }
    let mut n: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        let d = i64::from(d - b'0');
        n = if negative {
            n.checked_mul(10)?.checked_sub(d)?
        } else {
            n.checked_mul(10)?.checked_add(d)?
        };
    }
    Some(n)
}

/// Format: `*<count>\r\n` then `count` times `$<len>\r\n<len bytes>\r\n`.
fn parse_multibulk(buf: &[u8], limits: &Limits) -> Result<Parsed, ProtocolError> {
    let Some((count_end, mut at)) = header_line(buf, 1, "mbulk count")? else {
        return Ok(Parsed::Incomplete {
            len_min: buf.len() + 1,
        });
    };
    let Some(count) = parse_i64(&buf[1..count_end]) else {
        return error("invalid multibulk length");
    };
    if count <= 0 {
        return Ok(Parsed::Skip { len: at });
    }
    if count as u64 > limits.args_max as u64 {
        return error("invalid multibulk length");
    }
    let count = count as usize;
    let mut args = Vec::with_capacity(count.min(1024));
    for _ in 0..count {
        match buf.get(at) {
            None => return incomplete(at + 1, limits),
            Some(b'$') => {}
            Some(&other) => return error(format!("expected '$', got '{}'", printable(other))),
        }
        let Some((len_end, body)) = header_line(buf, at + 1, "bulk count")? else {
            return incomplete(buf.len() + 1, limits);
        };
        let len = match parse_i64(&buf[at + 1..len_end]) {
            Some(len) if len >= 0 && len as u64 <= limits.bulk_len_max as u64 => len as usize,
            _ => return error("invalid bulk length"),
        };
        let end = body.saturating_add(len);
        if buf.len() < end.saturating_add(2) {
            return incomplete(end.saturating_add(2), limits);
        }
        if &buf[end..end + 2] != b"\r\n" {
            return error("expected CRLF after a bulk string");
        }
        args.push(body..end);
        at = end + 2;
    }
    Ok(Parsed::Command {
        args: Args::Ranges(args),
        len: at,
    })
}

fn incomplete(len_min: usize, limits: &Limits) -> Result<Parsed, ProtocolError> {
    if len_min > limits.request_len_max {
        return error(format!(
            "request of at least {len_min} bytes is larger than the input buffer limit ({} bytes)",
            limits.request_len_max
        ));
    }
    Ok(Parsed::Incomplete { len_min })
}

fn printable(b: u8) -> char {
    if b.is_ascii_graphic() || b == b' ' {
        char::from(b)
    } else {
        '?'
    }
}

/// Format: one line of space-separated words ending in LF (or CRLF); words may be
/// quoted the way redis-cli quotes them.
fn parse_inline(buf: &[u8], limits: &Limits) -> Result<Parsed, ProtocolError> {
    let limit = INLINE_LEN_MAX.min(limits.request_len_max);
    let Some(newline) = buf
        .iter()
        .take(limit.saturating_add(1))
        .position(|&b| b == b'\n')
    else {
        if buf.len() > limit {
            return error("too big inline request");
        }
        return Ok(Parsed::Incomplete {
            len_min: buf.len() + 1,
        });
    };
    let len = newline + 1;
    let mut line = &buf[..newline];
    if let Some(stripped) = line.strip_suffix(b"\r") {
        line = stripped;
    }
    let args = split_inline(line)?;
    if args.is_empty() {
        return Ok(Parsed::Skip { len });
    }
    if args.len() > limits.args_max {
        return error("invalid multibulk length");
    }
    if args.iter().any(|a| a.len() > limits.bulk_len_max) {
        return error("invalid bulk length");
    }
    Ok(Parsed::Command {
        args: Args::Owned(args),
        len,
    })
}

/// Splits an inline line into words: blanks separate; `"…"` understands `\n \r \t \b
/// \a \\ \" \xHH`; `'…'` understands `\'`; a closing quote must end the word.
fn split_inline(line: &[u8]) -> Result<Vec<Vec<u8>>, ProtocolError> {
    let mut args = Vec::new();
    let mut i = 0;
    loop {
        while i < line.len() && line[i].is_ascii_whitespace() {
            i += 1;
        }
        if i == line.len() {
            return Ok(args);
        }
        let mut word = Vec::new();
        match line[i] {
            b'"' => i = double_quoted(line, i + 1, &mut word)?,
            b'\'' => i = single_quoted(line, i + 1, &mut word)?,
            _ => {
                while i < line.len() && !line[i].is_ascii_whitespace() {
                    word.push(line[i]);
                    i += 1;
                }
            }
        }
        args.push(word);
    }
}

fn unbalanced<T>() -> Result<T, ProtocolError> {
    error("unbalanced quotes in request")
}

/// After the closing quote at `close`: the offset of the next word.
fn after_quote(line: &[u8], close: usize) -> Result<usize, ProtocolError> {
    match line.get(close + 1) {
        None => Ok(close + 1),
        Some(b) if b.is_ascii_whitespace() => Ok(close + 1),
        Some(_) => unbalanced(),
    }
}

fn double_quoted(line: &[u8], mut i: usize, word: &mut Vec<u8>) -> Result<usize, ProtocolError> {
    loop {
        match line.get(i) {
            None => return unbalanced(),
            Some(b'"') => return after_quote(line, i),
            Some(b'\\') => {
                let hex = |b: Option<&u8>| b.and_then(|b| char::from(*b).to_digit(16));
                if line.get(i + 1) == Some(&b'x') {
                    if let (Some(h), Some(l)) = (hex(line.get(i + 2)), hex(line.get(i + 3))) {
                        word.push((h * 16 + l) as u8);
                        i += 4;
                        continue;
                    }
                }
                let Some(&escaped) = line.get(i + 1) else {
                    return unbalanced();
                };
                word.push(match escaped {
                    b'n' => b'\n',
                    b'r' => b'\r',
                    b't' => b'\t',
                    b'b' => 0x08,
                    b'a' => 0x07,
                    other => other,
                });
                i += 2;
            }
            Some(&b) => {
                word.push(b);
                i += 1;
            }
        }
    }
}

fn single_quoted(line: &[u8], mut i: usize, word: &mut Vec<u8>) -> Result<usize, ProtocolError> {
    loop {
        match line.get(i) {
            None => return unbalanced(),
            Some(b'\'') => return after_quote(line, i),
            Some(b'\\') if line.get(i + 1) == Some(&b'\'') => {
                word.push(b'\'');
                i += 2;
            }
            Some(&b) => {
                word.push(b);
                i += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        bulk_len_max: 100,
        args_max: 5,
        request_len_max: 1000,
    };

    fn args(buf: &[u8]) -> Vec<Vec<u8>> {
        match parse(buf, &LIMITS).unwrap() {
            Parsed::Command {
                args: Args::Ranges(r),
                ..
            } => r.into_iter().map(|r| buf[r].to_vec()).collect(),
            Parsed::Command {
                args: Args::Owned(o),
                ..
            } => o,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn multibulk_commands_and_their_length() {
        let buf = b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*1\r\n";
        assert_eq!(args(buf), vec![b"GET".to_vec(), b"k".to_vec()]);
        assert!(matches!(
            parse(buf, &LIMITS),
            Ok(Parsed::Command { len: 20, .. })
        ));
        assert_eq!(args(b"*1\r\n$0\r\n\r\n"), vec![Vec::<u8>::new()]);
        assert_eq!(parse(b"*0\r\n", &LIMITS), Ok(Parsed::Skip { len: 4 }));
        assert_eq!(parse(b"*-1\r\n", &LIMITS), Ok(Parsed::Skip { len: 5 }));
    }

    #[test]
    fn every_proper_prefix_is_incomplete_and_asks_for_more() {
        let buf = b"*2\r\n$3\r\nSET\r\n$5\r\nhello\r\n";
        for n in 0..buf.len() {
            match parse(&buf[..n], &LIMITS) {
                Ok(Parsed::Incomplete { len_min }) => {
                    assert!(len_min > n && len_min <= buf.len(), "{n}: {len_min}")
                }
                other => panic!("{n}: {other:?}"),
            }
        }
    }

    #[test]
    fn inline_commands_with_quotes() {
        assert_eq!(args(b"PING\r\n"), vec![b"PING".to_vec()]);
        assert_eq!(
            args(b"set  k \"a b\\x41\\n\" 'it\\'s'\n"),
            vec![
                b"set".to_vec(),
                b"k".to_vec(),
                b"a bA\n".to_vec(),
                b"it's".to_vec()
            ]
        );
        assert_eq!(parse(b"\r\n", &LIMITS), Ok(Parsed::Skip { len: 2 }));
        assert_eq!(parse(b"  \n", &LIMITS), Ok(Parsed::Skip { len: 3 }));
        assert!(matches!(
            parse(b"PING", &LIMITS),
            Ok(Parsed::Incomplete { len_min: 5 })
        ));
    }

    #[test]
    fn malformed_input_is_a_protocol_error() {
        let bad: &[&[u8]] = &[
            b"*x\r\n",
            b"*1\r\n:1\r\n",
            b"*1\r\n$-1\r\n",
            b"*1\r\n$101\r\n",
            b"*6\r\n",
            b"*1\r\n$1\r\nab\r\n",
            b"*01\r\n",
            b"*1\n",
            b"*1\rx",
            b"*1234567890123456789012345",
            b"SET \"a\n",
            b"SET 'a'b\n",
            b"*1\r\n$+1\r\n",
        ];
        for input in bad {
            assert!(
                parse(input, &LIMITS).is_err(),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
        let long_inline = vec![b'a'; INLINE_LEN_MAX + 1];
        let limits = Limits {
            request_len_max: usize::MAX,
            ..LIMITS
        };
        assert!(parse(&long_inline, &limits).is_err());
    }

    #[test]
    fn a_request_larger_than_the_input_limit_fails_before_it_arrives() {
        let limits = Limits {
            bulk_len_max: 1 << 20,
            args_max: 3,
            request_len_max: 1000,
        };
        let err = parse(b"*2\r\n$3\r\nSET\r\n$5000\r\n", &limits).unwrap_err();
        assert!(err.0.contains("input buffer limit"), "{err}");
    }

    #[test]
    fn integers_as_resp_writes_them() {
        assert_eq!(parse_i64(b"0"), Some(0));
        assert_eq!(parse_i64(b"-12"), Some(-12));
        assert_eq!(parse_i64(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_i64(b"-9223372036854775808"), Some(i64::MIN));
        for bad in [
            &b""[..],
            b"-",
            b"+1",
            b"01",
            b"-0",
            b" 1",
            b"9223372036854775808",
            b"1a",
        ] {
            assert_eq!(parse_i64(bad), None, "{bad:?}");
        }
    }
}
