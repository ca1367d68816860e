//! Named limits. Every bound the engine enforces lives here, and each one that callers
//! can hit has a typed error in [`crate::Error`].

/// Longest key, in bytes (keys of 0..=KEY_LEN_MAX bytes are accepted).
pub const KEY_LEN_MAX: usize = 4096;
/// Longest value, in bytes: 16 MiB.
pub const VALUE_LEN_MAX: usize = 16 << 20;
/// Longest per-record metadata, in bytes.
pub const META_LEN_MAX: usize = 255;
/// Smallest and largest extent size a substore accepts (offsets inside an extent are
/// kept as `u32` in the index).
pub const EXTENT_SIZE_MIN_BYTES: u64 = 64 << 10;
pub const EXTENT_SIZE_MAX_BYTES: u64 = 1 << 30;
/// Default extent size.
pub const EXTENT_SIZE_DEFAULT_BYTES: u64 = 64 << 20;
/// Unwritten bytes a substore buffers before it writes them out on its own.
pub const WRITE_BUFFER_DEFAULT_BYTES: usize = 1 << 20;
/// Bytes read at a time when scanning an extent.
pub const SCAN_CHUNK_BYTES: usize = 1 << 20;
/// Key bytes one substore's index can hold (offsets into the key arena are `u32`).
pub const INDEX_KEY_BYTES_MAX: u64 = u32::MAX as u64 - 1;
/// Largest sequence number (the index keeps 48 bits).
pub const SEQ_MAX: u64 = (1 << 48) - 1;
