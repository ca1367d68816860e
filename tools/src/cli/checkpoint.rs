//! `ringkv checkpoint DIR TARGET` and `ringkv restore BACKUP DIR`: a consistent copy of a
//! database that shares its sealed extents by hard links (`Db::checkpoint`). The source
//! is opened read-only, so a checkpoint (a backup) is never changed by being copied.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::text::human_bytes;
use super::{Failure, OpenArgs, Outcome, open_to_read};

/// Writes a consistent copy of DIR to TARGET (a new directory), which opens as a
/// database.
///
/// Sealed extents are hard-linked where TARGET is on the same file system (they never
/// change; the next checkpoint shares what has not changed since), copied otherwise;
/// open extents are sealed first (1 MiB or more) or copied. DIR is opened
/// read-only: a directory another process has open is refused (a running server makes
/// one with BGSAVE, a service with `Db::checkpoint`). An interrupted checkpoint leaves
/// TARGET.partial and never TARGET.
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  ringkv checkpoint /var/lib/ringkv /backups/ringkv-2026-12-03
  ringkv restore /backups/ringkv-2026-12-03 /var/lib/ringkv-restored")]
pub(crate) struct CheckpointArgs {
    #[command(flatten)]
    open: OpenArgs,
    /// The new directory to write the copy to.
    #[arg(value_name = "TARGET")]
    target: PathBuf,
}

/// Makes a database at DIR from the checkpoint BACKUP (a new directory), leaving BACKUP
/// as it is.
///
/// The same copy as `ringkv checkpoint`, the other way: BACKUP is opened read-only and
/// its sealed extents are hard-linked into DIR where both are on one file system. A
/// checkpoint is itself a database: `ringkv get BACKUP KEY` and the other commands read
/// it in place.
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  ringkv restore /backups/ringkv-2026-12-03 /var/lib/ringkv")]
pub(crate) struct RestoreArgs {
    /// The checkpoint to restore from.
    #[arg(value_name = "BACKUP")]
    backup: PathBuf,
    /// The new database directory.
    #[arg(value_name = "DIR")]
    dir: PathBuf,
}

pub(crate) fn checkpoint(args: &CheckpointArgs) -> Outcome {
    copy(&args.open, &args.target)
}

pub(crate) fn restore(args: &RestoreArgs) -> Outcome {
    let open = OpenArgs {
        dir: args.backup.clone(),
        cores: 1,
    };
    copy(&open, &args.dir)
}

fn copy(from: &OpenArgs, to: &PathBuf) -> Outcome {
    let db = open_to_read(from)?;
    let done = db.checkpoint(to);
    db.close()?;
    let done = done.map_err(Failure::Db)?;
    println!(
        "{}: {} files linked ({}), {} copied ({}) in {:.2} s",
        to.display(),
        done.linked_files,
        human_bytes(done.linked_bytes),
        done.copied_files,
        human_bytes(done.copied_bytes),
        done.elapsed.as_secs_f64(),
    );
    Ok(ExitCode::SUCCESS)
}
