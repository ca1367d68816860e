//! `ringkv`: tools over a data directory, and `ringkv serve`, a Redis-protocol server.
//!
//! Each subcommand lives in its own module; this file only parses the command line and
//! dispatches. The data-directory commands are in [`cli`].

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cli;
mod server;

#[derive(Debug, Parser)]
#[command(
    name = "ringkv",
    version,
    about = "ringkv: data-directory tools and a Redis-protocol server",
    after_help = cli::EXIT_CODES_HELP
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Prints this build's version and the on-disk format version it reads and writes.
    Version,
    #[command(flatten)]
    Data(cli::DataCommand),
    /// Serves the database over the Redis protocol (RESP2/RESP3), one listener per core.
    Serve(Box<server::ServeArgs>),
}

fn main() -> ExitCode {
    ringkv::tune_malloc();
    // Warnings and errors of ringkv and glommio (background failures, a core's death) on
    // stderr; RUST_LOG picks another level or filter.
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    match cli.command {
        Command::Version => {
            let format = ringkv_engine::format::FORMAT_VERSION;
            println!(
                "ringkv {} (on-disk format {format})",
                env!("CARGO_PKG_VERSION")
            );
            ExitCode::SUCCESS
        }
        Command::Data(command) => cli::run(command),
        Command::Serve(args) => server::run(*args),
    }
}
