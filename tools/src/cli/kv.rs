//! `ringkv get`, `put`, `del` (one key) and `compact` (the whole database).

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use ringkv::Durability;

use super::text::{from_hex, human_bytes, to_hex};
use super::{Create, EXIT_NEGATIVE, Failure, OpenArgs, Outcome, open, open_to_read, progress};

/// Prints the value stored under KEY.
///
/// Prints the value and a newline on stdout. With --raw, the exact bytes and nothing
/// else (for binary values: `ringkv get DIR KEY --raw > value.bin`); with --hex, KEY is
/// hex and the value is printed as hex. A missing key prints nothing and exits 1.
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  ringkv get /var/lib/ringkv user:1000
  ringkv get /var/lib/ringkv user:1000 --raw > value.bin
  ringkv get /var/lib/ringkv 00ff10 --hex")]
pub(crate) struct GetArgs {
    #[command(flatten)]
    open: OpenArgs,
    /// The key, as UTF-8 text (hex with --hex).
    key: String,
    /// KEY is hex; the value is printed as hex.
    #[arg(long)]
    hex: bool,
    /// Writes the value's exact bytes, with no newline.
    #[arg(long, conflicts_with = "hex")]
    raw: bool,
}

/// Stores VALUE under KEY; durable when the command returns.
///
/// KEY and VALUE are UTF-8 text, or hex with --hex. For a value that is binary or
/// large, --value-file reads it from a file, or from stdin when the path is `-`.
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  ringkv put /var/lib/ringkv user:1000 '{\"name\": \"Ada\"}'
  ringkv put /var/lib/ringkv 00ff10 cafe --hex
  ringkv put /var/lib/ringkv photo:1 --value-file photo.jpg
  printf 'a\\0b' | ringkv put /var/lib/ringkv k --value-file -")]
pub(crate) struct PutArgs {
    #[command(flatten)]
    open: OpenArgs,
    /// The key, as UTF-8 text (hex with --hex).
    key: String,
    /// The value, as UTF-8 text (hex with --hex).
    #[arg(required_unless_present = "value_file")]
    value: Option<String>,
    /// Reads the value from this file (`-`: stdin) instead of the command line.
    #[arg(long, value_name = "PATH", conflicts_with = "value")]
    value_file: Option<PathBuf>,
    /// KEY and VALUE are hex.
    #[arg(long)]
    hex: bool,
}

/// Deletes KEY; durable when the command returns. A missing key is not an error.
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  ringkv del /var/lib/ringkv user:1000
  ringkv del /var/lib/ringkv 00ff10 --hex")]
pub(crate) struct DelArgs {
    #[command(flatten)]
    open: OpenArgs,
    /// The key, as UTF-8 text (hex with --hex).
    key: String,
    /// KEY is hex.
    #[arg(long)]
    hex: bool,
}

/// Compacts every extent that holds dead bytes, on every core, and says what it did.
///
/// Rewrites the live records of each extent that holds overwritten or deleted records
/// (or tombstones no longer needed) and deletes the old file. Disk bytes afterwards are
/// close to live bytes plus one active extent per substore. A serving database compacts
/// in the background; this is for a directory at rest.
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  ringkv compact /var/lib/ringkv")]
pub(crate) struct CompactArgs {
    #[command(flatten)]
    open: OpenArgs,
}

fn bytes_of(text: &str, hex: bool) -> Result<Vec<u8>, Failure> {
    if hex {
        from_hex(text).map_err(Failure::Input)
    } else {
        Ok(text.as_bytes().to_vec())
    }
}

fn write_stdout(bytes: &[u8]) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .map_err(|source| Failure::Io {
            what: "writing to stdout".into(),
            source,
        })
}

pub(crate) fn get(args: &GetArgs) -> Outcome {
    let key = bytes_of(&args.key, args.hex)?;
    let db = open_to_read(&args.open)?;
    let value = db.get(&key)?;
    db.close()?;
    let Some(value) = value else {
        return Ok(ExitCode::from(EXIT_NEGATIVE));
    };
    if args.raw {
        write_stdout(&value)?;
    } else if args.hex {
        write_stdout(format!("{}\n", to_hex(&value)).as_bytes())?;
    } else {
        write_stdout(&[&value[..], b"\n"].concat())?;
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn put(args: &PutArgs) -> Outcome {
    let key = bytes_of(&args.key, args.hex)?;
    let value = match (&args.value, &args.value_file) {
        (Some(text), None) => bytes_of(text, args.hex)?,
        (None, Some(path)) => read_value(path)?,
        _ => unreachable!("clap requires exactly one of VALUE and --value-file"),
    };
    let db = open(&args.open, Create::Yes, Durability::Sync)?;
    db.put(&key, &value)?;
    db.close()?;
    Ok(ExitCode::SUCCESS)
}

fn read_value(path: &PathBuf) -> Result<Vec<u8>, Failure> {
    let mut value = Vec::new();
    let read = if path.as_os_str() == "-" {
        std::io::stdin().lock().read_to_end(&mut value)
    } else {
        std::fs::File::open(path).and_then(|mut f| f.read_to_end(&mut value))
    };
    read.map_err(|source| Failure::Io {
        what: format!("reading the value from {}", path.display()),
        source,
    })?;
    Ok(value)
}

pub(crate) fn del(args: &DelArgs) -> Outcome {
    let key = bytes_of(&args.key, args.hex)?;
    let db = open(&args.open, Create::No, Durability::Sync)?;
    db.delete(&key)?;
    db.close()?;
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn compact(args: &CompactArgs) -> Outcome {
    let db = open(&args.open, Create::No, Durability::Sync)?;
    let before = db.stats()?;
    let spinner = progress::spinner("compacting");
    let done = db.compact();
    spinner.finish_and_clear();
    let done = done?;
    let after = db.stats()?;
    db.close()?;
    println!(
        "compacted {} extents: {} records ({}) rewritten, {} reclaimed, {} tombstones and {} \
         expired records dropped; disk {} -> {}, live {}",
        done.extents,
        done.records_rewritten,
        human_bytes(done.bytes_rewritten),
        human_bytes(done.bytes_reclaimed),
        done.tombstones_dropped,
        done.expired_dropped,
        human_bytes(before.disk_bytes),
        human_bytes(after.disk_bytes),
        human_bytes(after.live_bytes),
    );
    Ok(ExitCode::SUCCESS)
}
