//! The engine's one error type. Broken invariants are bugs and panic; everything a
//! caller, a disk or a file can cause is a variant here, with the context to act on it.

use std::io;

/// Everything that can go wrong in a substore.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("key is {len} bytes; the limit is {max}")]
    KeyTooLarge { len: usize, max: usize },
    #[error("value is {len} bytes; the limit is {max}")]
    ValueTooLarge { len: usize, max: usize },
    #[error("metadata is {len} bytes; the limit is {max}")]
    MetadataTooLarge { len: usize, max: usize },
    #[error("I/O error while {op} {path} at offset {offset}: {source}")]
    Io {
        op: &'static str,
        path: String,
        offset: u64,
        #[source]
        source: io::Error,
    },
    #[error("corruption in {path} at offset {offset}: {what}")]
    Corruption {
        path: String,
        offset: u64,
        what: String,
    },
    #[error(
        "substore is read-only: an earlier write or sync failed ({cause}); \
         reopen it to recover what was durable"
    )]
    ReadOnly { cause: String },
    #[error("substore was opened read-only (Config::read_only): it takes no writes")]
    OpenedReadOnly,
    #[error(
        "{path} cannot be opened read-only: {what}; open it writable once (which finishes \
         that), or open a checkpoint of it"
    )]
    NeedsWritableOpen { path: String, what: String },
    #[error("{path} holds substore {found}, not {expected}")]
    WrongSubstore {
        path: String,
        expected: String,
        found: String,
    },
    #[error("{path} holds no substore")]
    NotFound { path: String },
    #[error("the index of this substore is full ({what}); split it")]
    IndexFull { what: &'static str },
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
}

/// Result with the engine's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(op: &'static str, path: String, offset: u64, source: io::Error) -> Self {
        Self::Io {
            op,
            path,
            offset,
            source,
        }
    }

    pub(crate) fn corruption(path: String, offset: u64, what: impl Into<String>) -> Self {
        Self::Corruption {
            path,
            offset,
            what: what.into(),
        }
    }

    /// Whether this error means the process or the system is out of file descriptors
    /// (EMFILE, ENFILE): a resource error, not a failed write. Nothing reached the disk,
    /// so the operation can be tried again once descriptors are free.
    pub fn is_out_of_descriptors(&self) -> bool {
        const ENFILE: i32 = 23;
        const EMFILE: i32 = 24;
        matches!(self, Self::Io { source, .. }
            if matches!(source.raw_os_error(), Some(EMFILE | ENFILE)))
    }

    /// Whether this error means the disk is out of space.
    pub fn is_no_space(&self) -> bool {
        matches!(self, Self::Io { source, .. } if source.kind() == io::ErrorKind::StorageFull)
    }
}
