//! SAVE, BGSAVE and LASTSAVE. A save is a checkpoint of the database
//! (`Db::checkpoint`): a consistent copy, made while the server goes on serving, in the
//! save directory as `checkpoint-<unix ms>`; it opens as a database (`ringkv get`,
//! `ringkv restore`, `ringkv serve --dir`). Once one is complete, the older ones there
//! beyond the newest `save_keep` are removed, as Redis replaces its dump file.
//!
//! One save runs at a time, on a thread of its own (a checkpoint blocks, and pauses
//! every core for a moment: it cannot run on one). SAVE waits for it; BGSAVE answers
//! at once; BGSAVE SCHEDULE during a save runs another after it, as Redis's does.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_channel::oneshot;

use super::frame::Frame;
use super::shared::CoreCtx;

/// What the server knows of its saves (INFO's persistence section shows it).
#[derive(Debug)]
pub struct Saves {
    state: Mutex<SaveState>,
}

#[derive(Clone, Debug)]
pub struct SaveState {
    pub in_progress: bool,
    /// A BGSAVE SCHEDULE came during a save: another follows it.
    pub scheduled: bool,
    /// Unix seconds of the last successful save (the server's start before one).
    pub last_ok_unix_s: u64,
    /// Whether the last save succeeded (true before any).
    pub last_ok: bool,
    pub last_duration: Option<Duration>,
    pub last_path: Option<PathBuf>,
}

impl Saves {
    pub fn new() -> Saves {
        Saves {
            state: Mutex::new(SaveState {
                in_progress: false,
                scheduled: false,
                last_ok_unix_s: unix_ms() / 1000,
                last_ok: true,
                last_duration: None,
                last_path: None,
            }),
        }
    }

    pub fn state(&self) -> SaveState {
        self.state.lock().expect("not poisoned").clone()
    }

    /// Marks a save started; false if one is running.
    fn start(&self) -> bool {
        let mut state = self.state.lock().expect("not poisoned");
        !std::mem::replace(&mut state.in_progress, true)
    }

    /// Records the outcome of a save; whether another was scheduled meanwhile (then
    /// the save stays in progress for it).
    fn finish(&self, outcome: &Result<(PathBuf, Duration), String>) -> bool {
        let mut state = self.state.lock().expect("not poisoned");
        state.last_ok = outcome.is_ok();
        if let Ok((path, took)) = outcome {
            state.last_ok_unix_s = unix_ms() / 1000;
            state.last_path = Some(path.clone());
            state.last_duration = Some(*took);
        }
        let again = std::mem::take(&mut state.scheduled);
        state.in_progress = again;
        again
    }
}

impl Default for Saves {
    fn default() -> Self {
        Saves::new()
    }
}

/// SAVE: a checkpoint now; answers once it is complete.
pub async fn save(ctx: &CoreCtx) -> Frame {
    let shared = &ctx.shared;
    if !shared.saves.start() {
        return Frame::Error("ERR Background save already in progress".into());
    }
    let (db, config) = (ctx.db().clone(), shared.config.clone());
    let (tx, rx) = oneshot::channel();
    let shared_for_thread = shared.clone();
    std::thread::spawn(move || {
        let outcome = checkpoint(&db, &config.save_dir, config.save_keep);
        let again = shared_for_thread.saves.finish(&outcome);
        let _ = tx.send(outcome);
        if again {
            run_saves(&shared_for_thread, &db);
        }
    });
    match rx.await {
        Ok(Ok(_)) => Frame::ok(),
        Ok(Err(e)) => Frame::Error(format!("ERR {e}")),
        Err(_) => Frame::Error("ERR the save stopped without an answer".into()),
    }
}

/// BGSAVE [SCHEDULE]: starts a checkpoint and answers at once.
pub fn bgsave(ctx: &CoreCtx, args: &[Bytes]) -> Frame {
    let schedule = match args.get(1).map(|a| a.to_ascii_uppercase()) {
        None => false,
        Some(option) if option == b"SCHEDULE" => true,
        Some(_) => return Frame::Error("ERR syntax error".into()),
    };
    let shared = &ctx.shared;
    if !shared.saves.start() {
        if !schedule {
            return Frame::Error("ERR Background save already in progress".into());
        }
        shared.saves.state.lock().expect("not poisoned").scheduled = true;
        return Frame::Simple("Background saving scheduled");
    }
    let (db, shared) = (ctx.db().clone(), shared.clone());
    std::thread::spawn(move || run_saves(&shared, &db));
    Frame::Simple("Background saving started")
}

/// LASTSAVE: the unix time of the last successful save.
pub fn lastsave(ctx: &CoreCtx) -> Frame {
    Frame::Integer(ctx.shared.saves.state().last_ok_unix_s as i64)
}

/// Runs saves (marked in progress by the caller) until none is scheduled.
fn run_saves(shared: &super::shared::Shared, db: &ringkv::Db) {
    loop {
        let config = &shared.config;
        let outcome = checkpoint(db, &config.save_dir, config.save_keep);
        if let Err(e) = &outcome {
            eprintln!("ringkv serve: background save failed: {e}");
        }
        if !shared.saves.finish(&outcome) {
            return;
        }
    }
}

/// One checkpoint into `dir`, then the older ones beyond the newest `keep` removed.
fn checkpoint(db: &ringkv::Db, dir: &Path, keep: usize) -> Result<(PathBuf, Duration), String> {
    let target = dir.join(format!("checkpoint-{}", unix_ms()));
    let done = db.checkpoint(&target).map_err(|e| e.to_string())?;
    prune(dir, keep)
        .map_err(|e| format!("removing older checkpoints in {}: {e}", dir.display()))?;
    Ok((target, done.elapsed))
}

/// Removes all but the newest `keep` checkpoints in `dir`, and what interrupted saves
/// left (`checkpoint-N.partial`) older than the newest checkpoint.
fn prune(dir: &Path, keep: usize) -> std::io::Result<()> {
    let mut done = Vec::new();
    let mut partial = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix("checkpoint-") else {
            continue;
        };
        let (digits, list) = match rest.strip_suffix(".partial") {
            Some(digits) => (digits, &mut partial),
            None => (rest, &mut done),
        };
        if let Ok(at) = digits.parse::<u64>() {
            list.push((at, dir.join(&name)));
        }
    }
    done.sort();
    let newest = done.last().map_or(0, |(at, _)| *at);
    let old = done.len().saturating_sub(keep);
    let stale = partial.into_iter().filter(|(at, _)| *at < newest);
    for (_, path) in done.drain(..old).chain(stale) {
        std::fs::remove_dir_all(path)?;
    }
    Ok(())
}

fn unix_ms() -> u64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH);
    since.map_or(0, |d| d.as_millis() as u64)
}
