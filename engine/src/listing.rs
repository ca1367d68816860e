//! What a substore's extent files hold at one moment, for a copy of the substore (a
//! checkpoint). A sealed extent never changes again, so a copy may share it whole; the
//! unsealed one grows past its records' end, and rewrites its last block with the same
//! bytes before that end, so a copy of the prefix up to the end, padded with zeros to
//! a block, is an unsealed extent holding exactly the records listed.

use crate::device::Device;
use crate::format::{EXTENT_HEADER_LEN, extent_file_name};
use crate::substore::Substore;

/// One extent file of a listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExtentFile {
    /// The file's name in the substore's directory.
    pub name: String,
    /// Whether the extent is sealed (then `len` is the whole file).
    pub sealed: bool,
    /// Bytes a copy takes: the whole file if sealed, else the header and records.
    pub len: u64,
    /// Whether those bytes are on stable storage.
    pub durable: bool,
}

impl<D: Device> Substore<D> {
    /// Bytes of records in the open extent (0 without one): what a copy of it takes.
    pub fn active_bytes(&self) -> u64 {
        let state = self.state.borrow();
        let active = state.active.map(|seq| &state.extents[&seq]);
        active.map_or(0, |e| e.records_end - EXTENT_HEADER_LEN as u64)
    }

    /// The extent files, oldest first, and how much of each a copy takes (see the
    /// module documentation). An unsealed extent without records is left out: a copy
    /// needs nothing of it. A copy is of this moment only if no append happens before
    /// its bytes are read, and durable only if every `durable` is true (after a flush).
    pub fn extent_files(&self) -> Vec<ExtentFile> {
        let state = self.state.borrow();
        let files = state.extents.iter().filter_map(|(&seq, extent)| {
            let name = extent_file_name(seq);
            match &extent.tail {
                None => Some(ExtentFile {
                    name,
                    sealed: true,
                    len: extent.sealed_len,
                    durable: true,
                }),
                Some(_) if extent.records_end == EXTENT_HEADER_LEN as u64 => None,
                Some(tail) => Some(ExtentFile {
                    name,
                    sealed: false,
                    len: extent.records_end,
                    durable: !tail.full && tail.synced_end >= extent.records_end,
                }),
            }
        });
        files.collect()
    }
}
