//! Each thread's spare buffer, from which a scan's keys and values are handed out as
//! `Bytes` without an allocation each.
//!
//! A scan page's keys and values are copies (of the published key order, of cache
//! entries) that the caller owns. Copied into a fresh allocation per page, or per
//! item, every page took blocks past glibc's per-thread cache, and with the one arena
//! `tune_malloc` keeps, two scanning threads queued on its lock (measured: 12 % of the
//! machine idle and 8 % waking lock waiters, rig YCSB E with two threads). Instead
//! each thread copies into its own [`SPARE_BYTES`] buffer, one piece after another,
//! and each piece is split off as `Bytes` (a count on the buffer, no allocation). Once
//! every piece of a buffer is dropped, the thread reuses the buffer itself; while any
//! is held, a full buffer is left to its holders and a new one taken.
//!
//! Invariant: a piece holds its whole buffer (at most [`SPARE_BYTES`]) until dropped,
//! as any slice of a shared `Bytes` does; a piece larger than [`OWN_BLOCK_FROM`] gets
//! its own allocation, so that no thread keeps a large buffer.

use std::cell::RefCell;

use bytes::{Bytes, BytesMut};

/// The size of a thread's spare buffer.
const SPARE_BYTES: usize = 64 << 10;

/// Pieces from this size up are copied into a block of their own.
const OWN_BLOCK_FROM: usize = SPARE_BYTES / 8;

thread_local! {
    static SPARE: RefCell<BytesMut> = RefCell::new(BytesMut::new());
}

/// Copies pieces into this thread's spare buffer (see the module).
pub(crate) struct Copier<'s>(&'s mut BytesMut);

impl Copier<'_> {
    /// A copy of `piece`, owned by the caller.
    pub(crate) fn copy(&mut self, piece: &[u8]) -> Bytes {
        if piece.len() >= OWN_BLOCK_FROM {
            return Bytes::copy_from_slice(piece);
        }
        let spare = &mut *self.0;
        if spare.capacity() - spare.len() < piece.len() {
            // Takes the buffer back when no piece of it is held; else a new one.
            spare.reserve(SPARE_BYTES);
        }
        spare.extend_from_slice(piece);
        spare.split().freeze()
    }
}

/// Runs `f` with this thread's copier.
///
/// # Panics
/// When `f` asks for the copier again (it is the thread's one buffer).
pub(crate) fn with_copier<R>(f: impl FnOnce(&mut Copier<'_>) -> R) -> R {
    SPARE.with_borrow_mut(|spare| f(&mut Copier(spare)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_are_copies_and_a_freed_buffer_is_reused() {
        let first = with_copier(|c| c.copy(b"hello"));
        let second = with_copier(|c| c.copy(b"world"));
        assert_eq!((&first[..], &second[..]), (&b"hello"[..], &b"world"[..]));
        // Pieces follow each other in one buffer.
        assert_eq!(first.as_ptr().wrapping_add(5), second.as_ptr());
        let start = first.as_ptr();
        drop((first, second));
        let filler = vec![7u8; OWN_BLOCK_FROM - 1];
        let mut reused = false;
        for _ in 0..(2 * SPARE_BYTES / filler.len()) {
            let piece = with_copier(|c| c.copy(&filler));
            assert_eq!(piece, filler);
            reused |= piece.as_ptr() == start;
        }
        assert!(
            reused,
            "the buffer was not taken back once its pieces were dropped"
        );
    }

    #[test]
    fn a_held_piece_keeps_its_bytes_while_others_are_copied() {
        let held = with_copier(|c| c.copy(b"kept"));
        let filler = vec![1u8; OWN_BLOCK_FROM - 1];
        for _ in 0..(3 * SPARE_BYTES / filler.len()) {
            with_copier(|c| assert_eq!(c.copy(&filler), filler));
        }
        assert_eq!(&held[..], b"kept");
    }

    #[test]
    fn a_large_piece_gets_its_own_block() {
        let large = vec![9u8; OWN_BLOCK_FROM];
        let piece = with_copier(|c| c.copy(&large));
        assert_eq!(piece, large);
        let small = with_copier(|c| c.copy(b"x"));
        let (start, end) = (piece.as_ptr(), piece.as_ptr().wrapping_add(piece.len()));
        assert!(!(start..end).contains(&small.as_ptr()));
    }
}
