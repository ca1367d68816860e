//! `ringkv salvage DIR`: the way forward when opening refuses a damaged database. Opens
//! it with `Recovery::Salvage`, which keeps every intact record of a damaged newest
//! extent and moves the damaged bytes into a quarantine file beside it, and says what it
//! did. A database that needs nothing opens as usual and is left as it was.

use std::process::ExitCode;

use clap::Args;
use ringkv::{Durability, Recovery};

use super::{Create, OpenArgs, Outcome, open_with};

/// Opens a database that `ringkv verify` finds damaged, keeping every intact record.
///
/// Opening a database refuses damage it cannot prove to be the torn end of a crash (a
/// flipped bit, a damaged footer), changing nothing, because acknowledged records may lie
/// in or after the damaged bytes. This command opens it anyway: in each damaged extent it
/// first copies the bytes from the damage to the end into a quarantine file
/// (`quarantine-EXTENT-OFFSET.bin` beside the extent), then cuts the extent there and
/// appends again every intact record found among those bytes. It prints each extent it
/// salvaged, how many records it kept and how many damaged stretches it could not read
/// (each holds at least one record). Damage it cannot salvage (a sealed extent whose
/// records and key summary are both damaged, a bad header) is still an error.
///
/// Run `ringkv verify DIR` before and after. Exits 0 when the database opened (salvaged
/// or not), 2 on an error.
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  ringkv verify /var/lib/ringkv || ringkv salvage /var/lib/ringkv
  ringkv salvage /var/lib/ringkv && ringkv verify /var/lib/ringkv")]
pub(crate) struct SalvageArgs {
    #[command(flatten)]
    open: OpenArgs,
}

pub(crate) fn run(args: &SalvageArgs) -> Outcome {
    let db = open_with(&args.open, Create::No, Durability::Sync, |o| {
        o.recovery(Recovery::Salvage)
    })?;
    let stats = db.stats()?;
    db.close()?;
    let leaves = stats.cores.iter().flat_map(|c| &c.leaves);
    let mut salvaged = 0;
    for s in leaves.flat_map(|l| &l.salvaged) {
        salvaged += 1;
        println!(
            "salvaged {} from offset {}: {} bytes moved to {}; {} intact records kept, {} \
             damaged stretches unreadable (each at least one record)",
            s.extent_path, s.offset, s.bytes, s.quarantine_path, s.records_kept, s.damaged_regions
        );
    }
    if salvaged == 0 {
        println!("{}: nothing to salvage", args.open.dir.display());
    }
    Ok(ExitCode::SUCCESS)
}
