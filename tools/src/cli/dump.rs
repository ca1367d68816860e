//! `ringkv dump` and `ringkv load`: every entry as one JSON object per line.
//!
//! Format (one line per entry, in no particular order):
//!
//! ```text
//! {"key":"user:1000","value":"{\"name\": \"Ada\"}"}
//! {"key":{"base64":"AP8Q"},"value":""}
//! ```
//!
//! `key` and `value` are each either a JSON string, whose UTF-8 encoding is the bytes,
//! or an object `{"base64": "..."}` (standard alphabet, padded) holding any bytes. `dump`
//! writes a string when the bytes are valid UTF-8 and base64 otherwise (`--base64`:
//! always), so every key and value round-trips exactly, the empty ones included. `load`
//! reads either form for each field, skips blank lines, and refuses anything else with
//! the line number.

use std::collections::HashSet;
use std::fs::File;
use std::future::Future;
use std::io::{BufRead, BufReader, BufWriter, ErrorKind, Write};
use std::os::fd::AsFd;
use std::pin::Pin;
use std::process::ExitCode;
use std::task::Poll;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use clap::Args;
use serde_json::Value;

use super::{Create, Failure, OpenArgs, Outcome, open, open_to_read, progress};
use ringkv::{Db, Durability, KEY_LEN_MAX, VALUE_LEN_MAX};

const FORMAT_HELP: &str = "\
Format: one JSON object per line, {\"key\": K, \"value\": V}, where K and V are each a \
JSON string (its UTF-8 bytes) or {\"base64\": \"...\"} (any bytes, standard alphabet, \
padded). dump writes strings for UTF-8 bytes and base64 for the rest, so binary keys \
and values, and empty ones, round-trip exactly:
  {\"key\":\"user:1000\",\"value\":\"Ada\"}
  {\"key\":{\"base64\":\"AP8Q\"},\"value\":\"\"}";

/// Writes every entry to stdout as JSON lines (binary-safe); the format load reads.
///
/// Entries come in no particular order. A progress bar shows on stderr when it is a
/// terminal.
#[derive(Debug, Args)]
#[command(after_help = format!("{FORMAT_HELP}\n\nExamples:
  ringkv dump /var/lib/ringkv > backup.jsonl
  ringkv dump /var/lib/ringkv | ringkv load /var/lib/ringkv-copy
  ringkv dump /var/lib/ringkv | jq -r 'select(.key | type == \"string\") | .key'"))]
pub(crate) struct DumpArgs {
    #[command(flatten)]
    open: OpenArgs,
    /// Encodes every key and value as {"base64": ...}, UTF-8 or not.
    #[arg(long)]
    base64: bool,
}

/// Stores every entry of JSON lines read from stdin (the format dump writes).
///
/// Creates the database if DIR holds none. Each line overwrites its key; keys not in
/// the input are left alone. Writes are buffered and made durable when the input ends;
/// a malformed line stops the load with its line number, after the lines before it have
/// been stored and made durable.
#[derive(Debug, Args)]
#[command(after_help = format!("{FORMAT_HELP}\n\nExamples:
  ringkv load /var/lib/ringkv < backup.jsonl
  echo '{{\"key\":\"greeting\",\"value\":\"hello\"}}' | ringkv load /var/lib/ringkv"))]
pub(crate) struct LoadArgs {
    #[command(flatten)]
    open: OpenArgs,
}

/// Appends one field: a JSON string for UTF-8 bytes (unless `base64`), else base64.
fn encode_field(out: &mut Vec<u8>, bytes: &[u8], base64: bool) {
    match std::str::from_utf8(bytes) {
        Ok(text) if !base64 => {
            serde_json::to_writer(&mut *out, text).expect("writing to memory succeeds")
        }
        _ => {
            out.extend_from_slice(b"{\"base64\":\"");
            out.extend_from_slice(STANDARD.encode(bytes).as_bytes());
            out.extend_from_slice(b"\"}");
        }
    }
}

/// Appends the line of one entry, newline included.
pub(crate) fn encode_line(out: &mut Vec<u8>, key: &[u8], value: &[u8], base64: bool) {
    out.extend_from_slice(b"{\"key\":");
    encode_field(out, key, base64);
    out.extend_from_slice(b",\"value\":");
    encode_field(out, value, base64);
    out.extend_from_slice(b"}\n");
}

fn decode_field(field: Option<&Value>, name: &str) -> Result<Vec<u8>, String> {
    match field {
        None => Err(format!("no \"{name}\"")),
        Some(Value::String(text)) => Ok(text.as_bytes().to_vec()),
        Some(Value::Object(o)) if o.len() == 1 && o.contains_key("base64") => match &o["base64"] {
            Value::String(b64) => STANDARD
                .decode(b64)
                .map_err(|e| format!("\"{name}\" is not valid base64: {e}")),
            _ => Err(format!("\"{name}\": \"base64\" must be a string")),
        },
        Some(_) => Err(format!(
            "\"{name}\" must be a string or an object {{\"base64\": \"...\"}}"
        )),
    }
}

/// A key and its value.
pub(crate) type Entry = (Vec<u8>, Vec<u8>);

/// The entry on one line, `None` for a blank line.
pub(crate) fn decode_line(line: &[u8]) -> Result<Option<Entry>, String> {
    let line = line.trim_ascii();
    if line.is_empty() {
        return Ok(None);
    }
    let parsed: Value = serde_json::from_slice(line).map_err(|e| format!("not JSON: {e}"))?;
    let Value::Object(members) = parsed else {
        return Err("not a JSON object {\"key\": ..., \"value\": ...}".into());
    };
    if let Some(other) = members.keys().find(|k| *k != "key" && *k != "value") {
        return Err(format!(
            "unknown member \"{other}\": a line has only \"key\" and \"value\""
        ));
    }
    let key = decode_field(members.get("key"), "key")?;
    let value = decode_field(members.get("value"), "value")?;
    Ok(Some((key, value)))
}

pub(crate) fn dump(args: &DumpArgs) -> Outcome {
    let db = open_to_read(&args.open)?;
    let bar = progress::items(db.len()?, "dumping");
    let mut out = BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
    let mut line = Vec::new();
    let mut failed = None;
    let walked = db.for_each(|key, value| {
        if failed.is_some() {
            return; // for_each cannot stop early; skip the rest
        }
        line.clear();
        encode_line(&mut line, key, value, args.base64);
        if let Err(e) = out.write_all(&line) {
            failed = Some(e);
        }
        bar.inc(1);
    });
    bar.finish_and_clear();
    let flushed = out.flush();
    db.close()?;
    walked?;
    match failed.map_or(flushed, Err) {
        // The reader stopped early (`ringkv dump DIR | head`): not an error.
        Err(e) if e.kind() == ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
        Err(source) => Err(Failure::Io {
            what: "writing to stdout".into(),
            source,
        }),
        Ok(()) => Ok(ExitCode::SUCCESS),
    }
}

/// The byte length of stdin when it is a regular file (`< file`), for the progress bar.
fn stdin_len() -> Option<u64> {
    let fd = std::io::stdin().as_fd().try_clone_to_owned().ok()?;
    let meta = File::from(fd).metadata().ok()?;
    meta.is_file().then_some(meta.len())
}

pub(crate) fn load(args: &LoadArgs) -> Outcome {
    let db = open(&args.open, Create::Yes, Durability::Buffered)?;
    let input_len = stdin_len();
    let bar = match input_len {
        Some(len) => progress::bytes(len, "loading"),
        None => progress::spinner("loading"), // counts lines
    };
    let mut input = BufReader::with_capacity(1 << 16, std::io::stdin().lock());
    let mut loader = Loader::new(&db);
    let mut line = Vec::new();
    let mut number = 0u64;
    let result = loop {
        line.clear();
        let read = match input.read_until(b'\n', &mut line) {
            Ok(0) => break loader.flush(),
            Ok(read) => read,
            Err(source) => {
                let what = format!("reading stdin after line {number}");
                break loader.flush().and(Err(Failure::Io { what, source }));
            }
        };
        number += 1;
        bar.inc(if input_len.is_some() { read as u64 } else { 1 });
        match decode_line(&line).and_then(|entry| entry.map(within_limits).transpose()) {
            Ok(Some((key, value))) => {
                if let Err(e) = loader.add(number, key, value) {
                    break Err(e);
                }
            }
            Ok(None) => {}
            Err(what) => {
                let bad = Failure::Input(format!("stdin line {number}: {what}"));
                break loader.flush().and(Err(bad));
            }
        }
    };
    bar.finish_and_clear();
    let loaded = loader.loaded;
    db.close()?; // durable: everything stored before a bad line is kept
    result?;
    println!("loaded {loaded} entries");
    Ok(ExitCode::SUCCESS)
}

/// An entry the database would refuse is a bad line like any other.
fn within_limits((key, value): Entry) -> Result<Entry, String> {
    if key.len() > KEY_LEN_MAX {
        return Err(format!(
            "key is {} bytes; the limit is {KEY_LEN_MAX}",
            key.len()
        ));
    }
    if value.len() > VALUE_LEN_MAX {
        return Err(format!(
            "value is {} bytes; the limit is {VALUE_LEN_MAX}",
            value.len()
        ));
    }
    Ok((key, value))
}

/// Entries in flight together at most: one queue crossing each, but the cores are woken
/// once per batch instead of once per entry.
const LOAD_BATCH_ENTRIES: usize = 256;
/// Key and value bytes held by one batch at most.
const LOAD_BATCH_BYTES: usize = 8 << 20;

/// Entries that go in flight together.
#[derive(Debug, Default)]
struct Batch {
    /// (line number, key, value).
    entries: Vec<(u64, Vec<u8>, Vec<u8>)>,
    keys: HashSet<Vec<u8>>,
    bytes: usize,
}

impl Batch {
    /// Whether the batch must be put before an entry with `key` and `size` bytes joins
    /// it: it is full, or it holds the key already (the later line must win, so two
    /// puts of one key are never in flight together).
    fn must_flush_before(&self, key: &[u8], size: usize) -> bool {
        self.entries.len() == LOAD_BATCH_ENTRIES
            || (!self.entries.is_empty() && self.bytes + size > LOAD_BATCH_BYTES)
            || self.keys.contains(key)
    }

    fn push(&mut self, line: u64, key: Vec<u8>, value: Vec<u8>) {
        self.bytes += key.len() + value.len();
        self.keys.insert(key.clone());
        self.entries.push((line, key, value));
    }
}

/// Puts entries in batches whose puts are all in flight at once.
struct Loader<'a> {
    db: &'a Db,
    batch: Batch,
    loaded: u64,
}

impl<'a> Loader<'a> {
    fn new(db: &'a Db) -> Self {
        Loader {
            db,
            batch: Batch::default(),
            loaded: 0,
        }
    }

    fn add(&mut self, line: u64, key: Vec<u8>, value: Vec<u8>) -> Result<(), Failure> {
        if self.batch.must_flush_before(&key, key.len() + value.len()) {
            self.flush()?;
        }
        self.batch.push(line, key, value);
        Ok(())
    }

    /// Puts the batch; on a failure, the earliest line that failed (later lines of the
    /// batch may have been stored).
    fn flush(&mut self) -> Result<(), Failure> {
        let db = self.db;
        let mut pending: Vec<(u64, PutFuture<'_>)> = self
            .batch
            .entries
            .iter()
            .map(|(line, key, value)| (*line, Box::pin(db.put_async(key, value)) as PutFuture<'_>))
            .collect();
        let mut failed: Option<(u64, ringkv::Error)> = None;
        futures_lite::future::block_on(std::future::poll_fn(|cx| {
            pending.retain_mut(|(line, put)| match put.as_mut().poll(cx) {
                Poll::Pending => true,
                Poll::Ready(Ok(())) => false,
                Poll::Ready(Err(e)) => {
                    if failed.as_ref().is_none_or(|(first, _)| *line < *first) {
                        failed = Some((*line, e));
                    }
                    false
                }
            });
            if pending.is_empty() {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        }));
        drop(pending);
        self.loaded += self.batch.entries.len() as u64;
        self.batch = Batch::default();
        match failed {
            None => Ok(()),
            Some((line, e)) => Err(Failure::Input(format!(
                "stdin line {line}: {e} (lines up to {line} may have been stored)"
            ))),
        }
    }
}

type PutFuture<'a> = Pin<Box<dyn Future<Output = ringkv::Result<()>> + 'a>>;

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(key: &[u8], value: &[u8], base64: bool) -> Vec<u8> {
        let mut line = Vec::new();
        encode_line(&mut line, key, value, base64);
        assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1, "one line");
        let (k, v) = decode_line(&line).unwrap().unwrap();
        assert_eq!((k.as_slice(), v.as_slice()), (key, value));
        line
    }

    #[test]
    fn every_kind_of_bytes_round_trips_on_one_line() {
        let cases: [(&[u8], &[u8]); 6] = [
            (b"user:1", b"hello"),
            (b"", b""),
            (b"\0\xff\xfe", b"\x80"),
            (b"line\nbreak \"quoted\" \\", b"tab\t\r\n"),
            ("ünïcode ✓".as_bytes(), "😀".as_bytes()),
            (b"\xed\xa0\x80", b"surrogate bytes are not UTF-8"),
        ];
        for (key, value) in cases {
            round_trip(key, value, false);
            round_trip(key, value, true);
        }
        let all: Vec<u8> = (0..=255).collect();
        round_trip(&all, &all, false);
        assert_eq!(
            round_trip(b"k", b"\xff", false),
            b"{\"key\":\"k\",\"value\":{\"base64\":\"/w==\"}}\n"
        );
    }

    #[test]
    fn a_batch_ends_before_a_repeated_key_and_when_full() {
        let mut batch = Batch::default();
        batch.push(1, b"a".to_vec(), b"1".to_vec());
        assert!(batch.must_flush_before(b"a", 2));
        assert!(!batch.must_flush_before(b"b", 2));
        assert!(batch.must_flush_before(b"b", LOAD_BATCH_BYTES));
        for i in 1..LOAD_BATCH_ENTRIES {
            batch.push(1, i.to_string().into_bytes(), Vec::new());
        }
        assert!(batch.must_flush_before(b"new", 0));
        // One entry larger than the byte budget still gets a batch of its own.
        assert!(!Batch::default().must_flush_before(b"big", LOAD_BATCH_BYTES * 2));
    }

    #[test]
    fn malformed_lines_say_what_is_wrong() {
        let cases = [
            ("{\"key\":\"k\"", "not JSON"),
            ("[1,2]", "not a JSON object"),
            ("{\"key\":\"k\"}", "no \"value\""),
            ("{\"value\":\"v\"}", "no \"key\""),
            ("{\"key\":1,\"value\":\"v\"}", "\"key\" must be a string"),
            (
                "{\"key\":\"k\",\"value\":{\"base64\":\"!!\"}}",
                "not valid base64",
            ),
            (
                "{\"key\":\"k\",\"value\":{\"hex\":\"00\"}}",
                "\"value\" must be",
            ),
            (
                "{\"key\":\"k\",\"value\":\"v\",\"ttl\":1}",
                "unknown member \"ttl\"",
            ),
            ("{\"key\":\"\\ud800\",\"value\":\"v\"}", "not JSON"),
        ];
        for (line, says) in cases {
            let err = decode_line(line.as_bytes()).unwrap_err();
            assert!(err.contains(says), "{line}: {err}");
        }
        assert_eq!(decode_line(b"  \r\n").unwrap(), None);
    }
}
