//! Running out of file descriptors is a resource error. Without a commit log, the write
//! that needed a new extent file fails and the database stays writable; with one (the
//! default), the log already open makes every write durable and the extent file is
//! created once descriptors are free. Either way nothing acknowledged is lost. Alone in
//! its test binary: it takes every descriptor the process may open.

use std::fs::File;
use std::time::Duration;

use nix::sys::resource::{Resource, getrlimit, setrlimit};
use ringkv::{Db, Durability, Error, Options};

fn options(commit_log_bytes: u64) -> Options {
    Options::default()
        .commit_log_bytes(commit_log_bytes)
        .cores(1)
        .durability(Durability::Sync)
        .extent_size_bytes(64 << 10)
        .io_memory_bytes(256 << 10)
        .background_compaction(false)
        .flush_interval(Duration::from_millis(5))
}

/// Opens /dev/null until the process is out of descriptors; dropping them frees them.
fn exhaust_descriptors() -> Vec<File> {
    let mut held = Vec::new();
    loop {
        match File::open("/dev/null") {
            Ok(f) => held.push(f),
            Err(e) if e.raw_os_error() == Some(24) => return held, // EMFILE
            Err(e) => panic!("unexpected error while taking descriptors: {e}"),
        }
    }
}

#[test]
fn out_of_descriptors_loses_nothing_with_or_without_a_commit_log() {
    out_of_descriptors(0);
    out_of_descriptors(ringkv::COMMIT_LOG_DEFAULT_BYTES);
}

fn out_of_descriptors(commit_log_bytes: u64) {
    let options = || options(commit_log_bytes);
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    // A small limit, so that taking every descriptor is quick.
    setrlimit(Resource::RLIMIT_NOFILE, soft.min(1024), hard).unwrap();
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let db = Db::open(dir.path(), options()).unwrap();
    let value = vec![7u8; 10 << 10];
    db.put("before", &value).unwrap();

    let held = exhaust_descriptors();
    // Extents are 64 KiB: within a few 10 KiB puts one needs a new extent file.
    let mut acknowledged = Vec::new();
    let mut failure = None;
    for i in 0..64 {
        let key = format!("k{i}");
        match db.put(&key, &value) {
            Ok(()) => acknowledged.push(key),
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    drop(held);
    if commit_log_bytes == 0 {
        let failure = failure.expect("a write needed a new extent file");
        assert!(
            matches!(&failure, Error::Engine(e) if e.is_out_of_descriptors()),
            "{failure:?}"
        );
    } else {
        assert!(failure.is_none(), "the log made it durable: {failure:?}");
        assert_eq!(acknowledged.len(), 64);
    }

    // Descriptors are free again: the database takes writes, nothing is lost, now and
    // after a reopen.
    db.put("after", &value).unwrap();
    let holds_every_acknowledged_write = |db: &Db| {
        let keys = acknowledged.iter().map(String::as_str);
        for key in keys.chain(["before", "after"]) {
            assert_eq!(db.get(key).unwrap().as_deref(), Some(&value[..]), "{key}");
        }
    };
    holds_every_acknowledged_write(&db);
    db.close().unwrap();
    let db = Db::open(dir.path(), options()).unwrap();
    holds_every_acknowledged_write(&db);
    db.close().unwrap();
    setrlimit(Resource::RLIMIT_NOFILE, soft, hard).unwrap();
}
