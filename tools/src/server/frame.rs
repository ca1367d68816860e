//! Replies, and their encoding in RESP2 or RESP3.
//!
//! A command answers a [`Frame`]; the connection encodes it with the protocol the
//! client chose (`HELLO 3` switches to RESP3). RESP3 types fall back to their RESP2
//! shapes: a map becomes a flat array of keys and values, a verbatim string a bulk
//! string, a null `$-1` or `*-1`.

use std::io::Write as _;

use bytes::Bytes;

/// The protocol a connection speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Resp2,
    Resp3,
}

/// One reply.
#[derive(Clone, Debug, PartialEq)]
pub enum Frame {
    /// `+OK`: a status line (no CR or LF inside).
    Simple(&'static str),
    /// `-ERR …`: the whole error line, code first; CR and LF are replaced by spaces.
    Error(String),
    Integer(i64),
    Bulk(Bytes),
    /// A missing value: `$-1` (RESP2) or `_` (RESP3).
    Null,
    /// A missing array: `*-1` (RESP2) or `_` (RESP3).
    NullArray,
    Array(Vec<Frame>),
    /// `%` in RESP3; a flat array of keys and values in RESP2.
    Map(Vec<(Frame, Frame)>),
    /// `=` with `txt:` in RESP3; a bulk string in RESP2.
    Verbatim(String),
}

/// `-ERR <text>`.
pub fn err(text: impl AsRef<str>) -> Frame {
    Frame::Error(format!("ERR {}", text.as_ref()))
}

/// Redis's reply to a number that does not parse as a 64-bit integer.
pub fn not_an_integer() -> Frame {
    err("value is not an integer or out of range")
}

/// The reply for a database error.
pub fn db_error(e: ringkv::Error) -> Frame {
    match e {
        ringkv::Error::ValueTooLarge { len, max } => err(format!(
            "string exceeds maximum allowed size (the value would be {len} bytes; the limit is {max})"
        )),
        ringkv::Error::Closed => err("the server is shutting down"),
        other => err(other.to_string()),
    }
}

impl Frame {
    pub fn ok() -> Frame {
        Frame::Simple("OK")
    }

    pub fn bulk(bytes: impl Into<Bytes>) -> Frame {
        Frame::Bulk(bytes.into())
    }

    pub fn text(s: impl Into<String>) -> Frame {
        Frame::Bulk(Bytes::from(s.into()))
    }

    pub fn optional(value: Option<Bytes>) -> Frame {
        value.map_or(Frame::Null, Frame::Bulk)
    }

    /// An upper bound of the encoded size (used to refuse replies past the output limit
    /// before building them into the buffer).
    pub fn encoded_len_max(&self) -> usize {
        const OVERHEAD: usize = 24;
        match self {
            Frame::Simple(s) => s.len() + OVERHEAD,
            Frame::Error(s) | Frame::Verbatim(s) => s.len() + OVERHEAD,
            Frame::Bulk(b) => b.len() + OVERHEAD,
            Frame::Integer(_) | Frame::Null | Frame::NullArray => OVERHEAD,
            Frame::Array(items) => {
                OVERHEAD + items.iter().map(Frame::encoded_len_max).sum::<usize>()
            }
            Frame::Map(pairs) => {
                OVERHEAD
                    + pairs
                        .iter()
                        .map(|(k, v)| k.encoded_len_max() + v.encoded_len_max())
                        .sum::<usize>()
            }
        }
    }

    /// Appends the encoding of this frame to `out`.
    pub fn encode(&self, protocol: Protocol, out: &mut Vec<u8>) {
        match self {
            Frame::Simple(s) => line(out, b'+', s.as_bytes()),
            Frame::Error(s) => {
                let clean: Vec<u8> = s
                    .bytes()
                    .map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b })
                    .collect();
                line(out, b'-', &clean);
            }
            Frame::Integer(n) => {
                let _ = write!(out, ":{n}\r\n");
            }
            Frame::Bulk(b) => bulk(out, b'$', b),
            Frame::Null => match protocol {
                Protocol::Resp2 => out.extend_from_slice(b"$-1\r\n"),
                Protocol::Resp3 => out.extend_from_slice(b"_\r\n"),
            },
            Frame::NullArray => match protocol {
                Protocol::Resp2 => out.extend_from_slice(b"*-1\r\n"),
                Protocol::Resp3 => out.extend_from_slice(b"_\r\n"),
            },
            Frame::Array(items) => {
                let _ = write!(out, "*{}\r\n", items.len());
                for item in items {
                    item.encode(protocol, out);
                }
            }
            Frame::Map(pairs) => {
                match protocol {
                    Protocol::Resp2 => write!(out, "*{}\r\n", pairs.len() * 2),
                    Protocol::Resp3 => write!(out, "%{}\r\n", pairs.len()),
                }
                .expect("writing to a Vec");
                for (k, v) in pairs {
                    k.encode(protocol, out);
                    v.encode(protocol, out);
                }
            }
            Frame::Verbatim(text) => match protocol {
                Protocol::Resp2 => bulk(out, b'$', text.as_bytes()),
                Protocol::Resp3 => {
                    let _ = write!(out, "={}\r\ntxt:", text.len() + 4);
                    out.extend_from_slice(text.as_bytes());
                    out.extend_from_slice(b"\r\n");
                }
            },
        }
    }
}

fn line(out: &mut Vec<u8>, kind: u8, text: &[u8]) {
    out.push(kind);
    out.extend_from_slice(text);
    out.extend_from_slice(b"\r\n");
}

fn bulk(out: &mut Vec<u8>, kind: u8, data: &[u8]) {
    out.push(kind);
    let _ = write!(out, "{}\r\n", data.len());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(frame: &Frame, protocol: Protocol) -> String {
        let mut out = Vec::new();
        frame.encode(protocol, &mut out);
        assert!(out.len() <= frame.encoded_len_max());
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn resp2_and_resp3_shapes() {
        use Protocol::*;
        assert_eq!(encode(&Frame::ok(), Resp2), "+OK\r\n");
        assert_eq!(encode(&err("bad\r\nthing"), Resp2), "-ERR bad  thing\r\n");
        assert_eq!(encode(&Frame::Integer(-3), Resp3), ":-3\r\n");
        assert_eq!(encode(&Frame::text("ab"), Resp2), "$2\r\nab\r\n");
        assert_eq!(encode(&Frame::Null, Resp2), "$-1\r\n");
        assert_eq!(encode(&Frame::Null, Resp3), "_\r\n");
        assert_eq!(encode(&Frame::NullArray, Resp2), "*-1\r\n");
        let map = Frame::Map(vec![(Frame::text("a"), Frame::Integer(1))]);
        assert_eq!(encode(&map, Resp2), "*2\r\n$1\r\na\r\n:1\r\n");
        assert_eq!(encode(&map, Resp3), "%1\r\n$1\r\na\r\n:1\r\n");
        let info = Frame::Verbatim("x:1".into());
        assert_eq!(encode(&info, Resp2), "$3\r\nx:1\r\n");
        assert_eq!(encode(&info, Resp3), "=7\r\ntxt:x:1\r\n");
    }
}
