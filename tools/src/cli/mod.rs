//! The data-directory commands of `ringkv`: stats, verify, salvage, compact, get, put,
//! del, dump, load, checkpoint and restore. Each opens the database in a directory for
//! the length of one command (`verify` does not open it: it reads the files), so none
//! of them can run while another process, a `ringkv serve` say, holds the directory:
//! the library's lock refuses it. Those that only read (stats, get, dump, checkpoint)
//! open it read-only: they change nothing and may run side by side.
//!
//! Exit codes are the same for every command: 0 done (or found), 1 a negative answer (a
//! missing key for `get`, problems found by `verify`), 2 an error.

mod checkpoint;
mod dump;
mod kv;
mod progress;
mod salvage;
mod stats;
mod text;
mod verify;

use std::fmt;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use ringkv::{Db, Durability, Options};

/// A negative answer: `get` found no value, `verify` found problems.
pub(crate) const EXIT_NEGATIVE: u8 = 1;
/// Something went wrong: bad arguments or input, a locked directory, an I/O error.
pub(crate) const EXIT_ERROR: u8 = 2;

/// The exit codes, for `--help`.
pub(crate) const EXIT_CODES_HELP: &str = "\
Exit codes: 0 done or found; 1 a negative answer (get: no such key; verify: problems \
found); 2 an error (bad arguments or input, a directory another process has open, I/O).";

/// The name of the directory of leaves inside a database (`shards/src/layout.rs`).
const SUBSTORES_DIR: &str = "substores";

/// The data-directory commands.
#[derive(Debug, Subcommand)]
pub(crate) enum DataCommand {
    Stats(stats::StatsArgs),
    Verify(verify::VerifyArgs),
    Salvage(salvage::SalvageArgs),
    Compact(kv::CompactArgs),
    Get(kv::GetArgs),
    Put(kv::PutArgs),
    Del(kv::DelArgs),
    Dump(dump::DumpArgs),
    Load(dump::LoadArgs),
    Checkpoint(checkpoint::CheckpointArgs),
    Restore(checkpoint::RestoreArgs),
}

/// Runs one command and maps its outcome to an exit code, printing errors on stderr.
pub(crate) fn run(command: DataCommand) -> ExitCode {
    let outcome = match command {
        DataCommand::Stats(args) => stats::run(&args),
        DataCommand::Verify(args) => verify::run(&args),
        DataCommand::Salvage(args) => salvage::run(&args),
        DataCommand::Compact(args) => kv::compact(&args),
        DataCommand::Get(args) => kv::get(&args),
        DataCommand::Put(args) => kv::put(&args),
        DataCommand::Del(args) => kv::del(&args),
        DataCommand::Dump(args) => dump::dump(&args),
        DataCommand::Load(args) => dump::load(&args),
        DataCommand::Checkpoint(args) => checkpoint::checkpoint(&args),
        DataCommand::Restore(args) => checkpoint::restore(&args),
    };
    match outcome {
        Ok(code) => code,
        Err(failure) => {
            eprintln!("ringkv: {failure}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

/// Why a command failed.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The library said no.
    Db(ringkv::Error),
    /// Bad arguments or input, said plainly.
    Input(String),
    /// Reading input or writing output failed.
    Io {
        what: String,
        source: std::io::Error,
    },
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Db(e @ ringkv::Error::Locked { .. }) => write!(
                f,
                "{e}. Stop the program that has it open (a running `ringkv serve`?) and try \
                 again."
            ),
            Failure::Db(e) => write!(f, "{e}"),
            Failure::Input(what) => write!(f, "{what}"),
            Failure::Io { what, source } => write!(f, "{what}: {source}"),
        }
    }
}

impl From<ringkv::Error> for Failure {
    fn from(e: ringkv::Error) -> Self {
        Failure::Db(e)
    }
}

pub(crate) type Outcome = Result<ExitCode, Failure>;

/// The database directory and how to open it; shared by the commands that open one.
#[derive(Debug, Args)]
pub(crate) struct OpenArgs {
    /// The database directory.
    #[arg(value_name = "DIR")]
    pub(crate) dir: PathBuf,
    /// Cores (executor threads) to open the database with. Each takes 1 MiB of locked
    /// memory; data never moves whatever the count.
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u16).range(1..=256))]
    pub(crate) cores: u16,
}

/// Whether `open` may create a database that does not exist yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Create {
    Yes,
    No,
}

/// Opens the database for one command: few cores, no background compaction (the
/// command is short; `compact` compacts on demand).
pub(crate) fn open(args: &OpenArgs, create: Create, durability: Durability) -> Result<Db, Failure> {
    open_with(args, create, durability, |o| o)
}

/// [`open`] with options of the command's own on top.
pub(crate) fn open_with(
    args: &OpenArgs,
    create: Create,
    durability: Durability,
    tweak: impl FnOnce(Options) -> Options,
) -> Result<Db, Failure> {
    if create == Create::No {
        check_is_database(args)?;
    }
    let options = Options::default()
        .cores(usize::from(args.cores))
        .background_compaction(false)
        .durability(durability);
    Ok(Db::open(&args.dir, tweak(options))?)
}

/// Opens the database read-only, for a command that only reads: it changes nothing on
/// disk. A directory a crash left with work for a writable open (writes to replay, a
/// torn tail to cut) is opened writable instead, as any other command would, with a
/// note on stderr.
pub(crate) fn open_to_read(args: &OpenArgs) -> Result<Db, Failure> {
    check_is_database(args)?;
    let options = Options::default()
        .cores(usize::from(args.cores))
        .read_only();
    match Db::open(&args.dir, options) {
        Err(e @ ringkv::Error::NeedsWritableOpen { .. }) => {
            eprintln!("ringkv: note: {e}: opening it writable");
            open(args, Create::No, Durability::Sync)
        }
        opened => Ok(opened?),
    }
}

fn check_is_database(args: &OpenArgs) -> Result<(), Failure> {
    match args.dir.join(SUBSTORES_DIR).is_dir() {
        true => Ok(()),
        false => Err(Failure::Input(format!(
            "{} is not a ringkv database (no {SUBSTORES_DIR}/ directory in it)",
            args.dir.display()
        ))),
    }
}
