//! The database's error type.

use std::path::PathBuf;

/// Everything that can go wrong in a database call.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("key is {len} bytes; the limit is {max}")]
    KeyTooLarge { len: usize, max: usize },
    #[error("value is {len} bytes; the limit is {max}")]
    ValueTooLarge { len: usize, max: usize },
    #[error("metadata is {len} bytes; the limit is {max}")]
    MetadataTooLarge { len: usize, max: usize },
    /// A transaction's commit found that a key it read changed since (or was being
    /// changed): nothing of it was written. Retry the transaction.
    #[error("a key the transaction read changed before it could commit; nothing was written")]
    Conflict,
    /// A write batch too large for one frame of its coordinator's batch log.
    #[error("the write batch takes {bytes} bytes; a batch may take at most {max}")]
    BatchTooLarge { bytes: u64, max: u64 },
    #[error("{path} is in use by another ringkv database (lock file {lock})")]
    Locked { path: PathBuf, lock: PathBuf },
    #[error("the database is closed")]
    Closed,
    /// A read through a snapshot that was released early: the versions the open
    /// snapshots kept on the key's core passed `Options::snapshot_memory_bytes`, and
    /// this one was the oldest there. Take a new snapshot.
    #[error(
        "the snapshot was released: the versions kept for open snapshots passed \
         {budget_bytes} bytes on a core (Options::snapshot_memory_bytes), and it was the \
         oldest there; take a new one"
    )]
    SnapshotTooOld { budget_bytes: u64 },
    #[error(
        "the database is read-only after a failed write or sync ({cause}); reads still work, \
         reopen it to write again"
    )]
    ReadOnly { cause: String },
    #[error("the database was opened read-only (Options::read_only): it takes no writes")]
    OpenedReadOnly,
    /// A read-only open found something only a writable open may change.
    #[error(
        "{path} cannot be opened read-only: {what}; open it writable once (which finishes \
         that), or open a checkpoint of it"
    )]
    NeedsWritableOpen { path: PathBuf, what: String },
    #[error("invalid options: {0}")]
    InvalidOptions(String),
    #[error("I/O error while {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {what}")]
    Layout { path: PathBuf, what: String },
    /// A core's thread panicked (a bug, or an assertion on bytes read from disk) or its
    /// executor could not start. Every request routed to that core fails with this;
    /// the other cores go on. Writes the core acknowledged in `Durability::Sync` are on
    /// disk; reopen the database to serve its leaves again.
    #[error("core {core} failed: {message}")]
    CoreFailed { core: usize, message: String },
    /// This machine or process cannot run the database as configured: `what` is the
    /// finding, `advice` what to change.
    #[error("{what}; {advice}")]
    Unsupported { what: String, advice: String },
    #[error(transparent)]
    Engine(ringkv_engine::Error),
}

impl From<ringkv_engine::Error> for Error {
    fn from(e: ringkv_engine::Error) -> Self {
        match e {
            ringkv_engine::Error::KeyTooLarge { len, max } => Error::KeyTooLarge { len, max },
            ringkv_engine::Error::ValueTooLarge { len, max } => Error::ValueTooLarge { len, max },
            ringkv_engine::Error::MetadataTooLarge { len, max } => {
                Error::MetadataTooLarge { len, max }
            }
            ringkv_engine::Error::ReadOnly { cause } => Error::ReadOnly { cause },
            ringkv_engine::Error::OpenedReadOnly => Error::OpenedReadOnly,
            ringkv_engine::Error::NeedsWritableOpen { path, what } => Error::NeedsWritableOpen {
                path: path.into(),
                what,
            },
            other => Error::Engine(other),
        }
    }
}

/// Result with the database's error.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// A read-only open's refusal of `path`: only a writable open may change `what`.
    pub(crate) fn needs_writable_open(path: &std::path::Path, what: &str) -> Error {
        Error::NeedsWritableOpen {
            path: path.to_path_buf(),
            what: what.to_owned(),
        }
    }
}
