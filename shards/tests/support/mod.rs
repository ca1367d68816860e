//! What several of the database's tests share: a seeded random source, the listing of
//! a database's contents, and the descriptor limit raised for tests that reopen a
//! database many times.

#![allow(dead_code)] // each test file uses its own part

pub mod batches;

use std::collections::BTreeMap;

use ringkv::Db;

/// A temporary directory on the work tree's disk: O_DIRECT needs a real file system,
/// not the tmpfs a system temporary directory may be.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap()
}

/// A xorshift64 source from `seed`: the same numbers for the same seed, every run.
pub fn rng(seed: u64) -> impl FnMut() -> u64 {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    }
}

/// Every live entry of `db` (`for_each`), checking that none is listed twice.
pub fn listing(db: &Db) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut seen = BTreeMap::new();
    db.for_each(|k, v| {
        assert!(
            seen.insert(k.to_vec(), v.to_vec()).is_none(),
            "listed twice"
        );
    })
    .unwrap();
    seen
}

/// glommio keeps two eventfds of every executor it drops, and a test that reopens the
/// database many times runs out: the soft descriptor limit goes up to the hard one.
pub fn raise_descriptor_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).unwrap();
}

/// Runs test `name` of this test binary as a child process with `envs`, and kills it
/// with SIGKILL `kill_after` once it printed a line ending in `ready` (or after 60 s
/// without one); every line it printed on stdout.
pub fn run_and_kill(
    name: &str,
    envs: &[(&str, String)],
    kill_after: std::time::Duration,
) -> Vec<String> {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let mut command = Command::new(std::env::current_exe().unwrap());
    command.args([name, "--exact", "--nocapture", "--test-threads", "1"]);
    for (key, value) in envs {
        command.env(key, value);
    }
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut lines = Vec::new();
        for line in stdout.lines().map_while(Result::ok) {
            if line.ends_with("ready") {
                let _ = ready_tx.send(());
            }
            lines.push(line);
        }
        lines
    });
    // The kill lands `kill_after` into the writes (opening many substores takes a while).
    if ready_rx
        .recv_timeout(std::time::Duration::from_secs(60))
        .is_ok()
    {
        std::thread::sleep(kill_after);
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    reader.join().unwrap()
}
