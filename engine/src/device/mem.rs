//! An in-memory device for fast tests: no durability model (every write is durable at
//! once), the same alignment contract as O_DIRECT.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::rc::Rc;

use super::{Device, DeviceFile, already_exists, assert_aligned, not_found, read_clipped};

type Bytes = Rc<RefCell<Vec<u8>>>;

/// A directory held in memory. Clones share the same files.
#[derive(Clone, Debug, Default)]
pub struct MemDevice {
    files: Rc<RefCell<HashMap<String, Bytes>>>,
}

impl MemDevice {
    pub fn new() -> Self {
        Self::default()
    }

    /// Direct access to a file's bytes, for tests that corrupt them.
    pub fn file_bytes(&self, name: &str) -> Option<Rc<RefCell<Vec<u8>>>> {
        self.files.borrow().get(name).cloned()
    }
}

/// A file of a [`MemDevice`].
#[derive(Clone, Debug)]
pub struct MemFile {
    bytes: Bytes,
}

impl Device for MemDevice {
    type File = MemFile;

    async fn open(&self, name: &str) -> io::Result<MemFile> {
        let bytes = self.files.borrow().get(name).cloned();
        bytes
            .map(|bytes| MemFile { bytes })
            .ok_or_else(|| not_found(name))
    }

    async fn create(&self, name: &str) -> io::Result<MemFile> {
        let mut files = self.files.borrow_mut();
        if files.contains_key(name) {
            return Err(already_exists(name));
        }
        let bytes = Bytes::default();
        files.insert(name.to_owned(), bytes.clone());
        Ok(MemFile { bytes })
    }

    async fn remove(&self, name: &str) -> io::Result<()> {
        let removed = self.files.borrow_mut().remove(name);
        removed.map(drop).ok_or_else(|| not_found(name))
    }

    async fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        let mut files = self.files.borrow_mut();
        let bytes = files.remove(from).ok_or_else(|| not_found(from))?;
        files.insert(to.to_owned(), bytes);
        Ok(())
    }

    async fn list(&self) -> io::Result<Vec<String>> {
        Ok(self.files.borrow().keys().cloned().collect())
    }

    async fn sync_dir(&self) -> io::Result<()> {
        Ok(())
    }

    fn path_of(&self, name: &str) -> String {
        format!("mem:{name}")
    }
}

impl DeviceFile for MemFile {
    async fn read_at(&self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        assert_aligned(offset, len);
        Ok(read_clipped(&self.bytes.borrow(), offset, len))
    }

    async fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        assert_aligned(offset, data.len());
        super::write_extending(&mut self.bytes.borrow_mut(), offset, data);
        Ok(())
    }

    async fn sync(&self) -> io::Result<()> {
        Ok(())
    }

    async fn file_size(&self) -> io::Result<u64> {
        Ok(self.bytes.borrow().len() as u64)
    }

    async fn truncate(&self, len: u64) -> io::Result<()> {
        let len = usize::try_from(len).expect("length fits in memory");
        self.bytes.borrow_mut().resize(len, 0);
        Ok(())
    }
}
