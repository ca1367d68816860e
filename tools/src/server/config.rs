//! The server's settings: command-line flags, an optional TOML file (`--config`) with
//! the same names in snake_case, and defaults. A flag beats the file, the file beats
//! the default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};
use serde::Deserialize;

/// Default port, as Redis.
pub const PORT_DEFAULT: u16 = 6379;
/// Default listening address: this machine only.
pub const BIND_DEFAULT: &str = "127.0.0.1";
/// Default most connections at once (all cores together), as Redis's `maxclients`.
pub const MAXCLIENTS_DEFAULT: usize = 10_000;
/// Default most arguments in one command (Redis: 1,048,576).
pub const ARGS_MAX_DEFAULT: usize = 1024 * 1024;
/// Default most bytes one connection may buffer for an incomplete request: 64 MiB,
/// four values of the largest size.
pub const INPUT_BUFFER_DEFAULT_BYTES: usize = 64 << 20;
/// Default largest reply, and most reply bytes one connection buffers: 64 MiB.
pub const OUTPUT_BUFFER_DEFAULT_BYTES: usize = 64 << 20;
/// Default executor cores, at most: each core locks `Options::io_memory_bytes` (1 MiB)
/// and the usual locked-memory limit is 8 MiB.
pub const CORES_DEFAULT_MAX: usize = 4;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DurabilityArg {
    /// A write is acknowledged once it is on stable storage (group commit).
    Sync,
    /// A write is acknowledged from memory and written within 50 ms.
    Buffered,
}

/// A yes-or-no setting, spelled as in Redis's configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum YesNo {
    Yes,
    No,
}

/// `ringkv serve`: the flags. Every one can also be set in the `--config` file.
#[derive(Clone, Debug, Default, Args)]
pub struct ServeArgs {
    /// TOML file with any of the settings below (snake_case names, e.g.
    /// `max_input_bytes = 1048576`); flags given on the command line win.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Data directory (created if missing). Must support O_DIRECT: ext4, XFS, not tmpfs.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1]. Use 0.0.0.0 to listen on every
    /// interface, and then set a password.
    #[arg(long, value_name = "ADDR")]
    pub bind: Option<String>,
    /// TCP port [default: 6379]; 0 picks a free one (printed on stdout).
    #[arg(long, value_name = "N")]
    pub port: Option<u16>,
    /// Executor cores, each with its own listener (SO_REUSEPORT) and keys
    /// [default: the CPUs available, at most 4].
    #[arg(long, value_name = "N")]
    pub cores: Option<usize>,
    /// When a write is acknowledged [default: sync].
    #[arg(long, value_enum)]
    pub durability: Option<DurabilityArg>,
    /// Read-cache budget in bytes, shared by the cores [default: a quarter of the
    /// memory the process may use (its cgroup limit, else the machine's), at least 64 MiB].
    #[arg(long, value_name = "BYTES")]
    pub cache_bytes: Option<u64>,
    /// Password of the default user: every command but AUTH, HELLO and QUIT fails with
    /// NOAUTH until the client authenticates. Prefer the config file: flags show in `ps`.
    #[arg(long, value_name = "PASSWORD")]
    pub requirepass: Option<String>,
    /// Most client connections at once [default: 10000].
    #[arg(long, value_name = "N")]
    pub maxclients: Option<usize>,
    /// Most arguments in one command [default: 1048576].
    #[arg(long, value_name = "N")]
    pub max_args: Option<usize>,
    /// Most bytes a connection buffers for one request [default: 64 MiB].
    #[arg(long, value_name = "BYTES")]
    pub max_input_bytes: Option<usize>,
    /// Largest reply, and most reply bytes a connection buffers [default: 64 MiB].
    #[arg(long, value_name = "BYTES")]
    pub max_output_bytes: Option<usize>,
    /// Serve Prometheus metrics over HTTP at this address (GET /metrics); off unless set.
    #[arg(long, value_name = "ADDR:PORT")]
    pub metrics_addr: Option<SocketAddr>,
    /// Close a connection that sends nothing for this many seconds; 0 never does (as
    /// Redis's `timeout`) [default: 0].
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<u64>,
    /// Without a password, answer clients from other machines with Redis's `-DENIED`
    /// and close (as Redis's `protected-mode`) [default: yes].
    #[arg(long, value_enum, value_name = "yes|no")]
    pub protected_mode: Option<YesNo>,
    /// Where SAVE and BGSAVE write checkpoints of the database (`checkpoint-<unix ms>`,
    /// openable as a database; sealed extents are hard links when on the data
    /// directory's file system) [default: DIR.checkpoints beside the data directory].
    #[arg(long, value_name = "DIR")]
    pub save_dir: Option<PathBuf>,
    /// Checkpoints kept in the save directory: after each save, older ones go, as Redis
    /// replaces its dump file [default: 1].
    #[arg(long, value_name = "N")]
    pub save_keep: Option<usize>,
    /// Another directory for the database's substores, one per device; repeat for
    /// more. The data directory keeps the list, so later starts need not repeat it
    /// [default: the data directory alone, or the directories it lists].
    #[arg(long = "data-dir", value_name = "DIR")]
    pub data_dirs: Vec<PathBuf>,
}

/// The `--config` file: the same settings, all optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    dir: Option<PathBuf>,
    bind: Option<String>,
    port: Option<u16>,
    cores: Option<usize>,
    durability: Option<DurabilityArg>,
    cache_bytes: Option<u64>,
    requirepass: Option<String>,
    maxclients: Option<usize>,
    max_args: Option<usize>,
    max_input_bytes: Option<usize>,
    max_output_bytes: Option<usize>,
    metrics_addr: Option<SocketAddr>,
    timeout: Option<u64>,
    protected_mode: Option<YesNo>,
    save_dir: Option<PathBuf>,
    save_keep: Option<usize>,
    data_dirs: Option<Vec<PathBuf>>,
}

/// The settings in force.
#[derive(Clone, Debug)]
pub struct Config {
    pub config_file: Option<PathBuf>,
    pub dir: PathBuf,
    pub bind: String,
    pub port: u16,
    pub cores: usize,
    pub durability: DurabilityArg,
    pub cache_bytes: u64,
    pub requirepass: Option<String>,
    pub maxclients: usize,
    pub max_args: usize,
    pub max_input_bytes: usize,
    pub max_output_bytes: usize,
    pub metrics_addr: Option<SocketAddr>,
    /// Seconds a connection may stay silent; 0: for ever.
    pub timeout: u64,
    pub protected_mode: bool,
    /// Where SAVE and BGSAVE write checkpoints, and how many are kept.
    pub save_dir: PathBuf,
    pub save_keep: usize,
    /// The database's other data directories (`Options::data_dirs`).
    pub data_dirs: Vec<PathBuf>,
}

impl Config {
    /// Merges the flags over the file (if any) over the defaults, and checks the result.
    pub fn resolve(args: ServeArgs) -> Result<Config, String> {
        let file = match &args.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let dir = args
            .dir
            .or(file.dir)
            .ok_or("no data directory: give --dir DIR or `dir` in the config file")?;
        let cores_default = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(CORES_DEFAULT_MAX);
        let save_dir = (args.save_dir.or(file.save_dir)).unwrap_or_else(|| {
            let mut name = dir.file_name().unwrap_or_default().to_os_string();
            name.push(".checkpoints");
            dir.with_file_name(name)
        });
        let data_dirs = match args.data_dirs.is_empty() {
            true => file.data_dirs.unwrap_or_default(),
            false => args.data_dirs,
        };
        let config = Config {
            config_file: args.config,
            data_dirs,
            save_dir,
            save_keep: args.save_keep.or(file.save_keep).unwrap_or(1),
            dir,
            bind: args.bind.or(file.bind).unwrap_or(BIND_DEFAULT.into()),
            port: args.port.or(file.port).unwrap_or(PORT_DEFAULT),
            cores: args.cores.or(file.cores).unwrap_or(cores_default),
            durability: args
                .durability
                .or(file.durability)
                .unwrap_or(DurabilityArg::Sync),
            cache_bytes: args
                .cache_bytes
                .or(file.cache_bytes)
                .unwrap_or_else(ringkv::cache_default_bytes),
            requirepass: args.requirepass.or(file.requirepass),
            maxclients: args
                .maxclients
                .or(file.maxclients)
                .unwrap_or(MAXCLIENTS_DEFAULT),
            max_args: args.max_args.or(file.max_args).unwrap_or(ARGS_MAX_DEFAULT),
            max_input_bytes: args
                .max_input_bytes
                .or(file.max_input_bytes)
                .unwrap_or(INPUT_BUFFER_DEFAULT_BYTES),
            max_output_bytes: args
                .max_output_bytes
                .or(file.max_output_bytes)
                .unwrap_or(OUTPUT_BUFFER_DEFAULT_BYTES),
            metrics_addr: args.metrics_addr.or(file.metrics_addr),
            timeout: args.timeout.or(file.timeout).unwrap_or(0),
            protected_mode: args.protected_mode.or(file.protected_mode) != Some(YesNo::No),
        };
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), String> {
        if self.cores == 0 || self.cores > ringkv::CORES_MAX {
            return Err(format!("cores must be 1..={}", ringkv::CORES_MAX));
        }
        if self.save_keep == 0 {
            return Err("save_keep must be at least 1".into());
        }
        if self.maxclients == 0 {
            return Err("maxclients must be at least 1".into());
        }
        if self.max_args < 3 {
            return Err("max_args must be at least 3 (SET key value)".into());
        }
        // Small limits are allowed (tests use them); below these nothing would work.
        if self.max_input_bytes < 1024 {
            return Err("max_input_bytes must be at least 1024".into());
        }
        if self.max_output_bytes < 1024 {
            return Err("max_output_bytes must be at least 1024".into());
        }
        if self.requirepass.as_deref() == Some("") {
            return Err("requirepass must not be empty".into());
        }
        Ok(())
    }

    /// The database options these settings ask for.
    pub fn db_options(&self) -> ringkv::Options {
        let durability = match self.durability {
            DurabilityArg::Sync => ringkv::Durability::Sync,
            DurabilityArg::Buffered => ringkv::Durability::Buffered,
        };
        ringkv::Options::default()
            .cores(self.cores)
            .durability(durability)
            .cache_bytes(self.cache_bytes)
            .data_dirs(&self.data_dirs)
    }

    pub fn durability_name(&self) -> &'static str {
        match self.durability {
            DurabilityArg::Sync => "sync",
            DurabilityArg::Buffered => "buffered",
        }
    }
}

fn read_file(path: &Path) -> Result<FileConfig, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("reading the config file {}: {e}", path.display()))?;
    toml::from_str(&text).map_err(|e| format!("config file {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_beat_the_file_and_the_file_beats_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ringkv.toml");
        std::fs::write(
            &file,
            "dir = \"/data\"\nport = 7000\ndurability = \"buffered\"\nmaxclients = 5\n",
        )
        .unwrap();
        let args = ServeArgs {
            config: Some(file.clone()),
            port: Some(7001),
            ..ServeArgs::default()
        };
        let config = Config::resolve(args).unwrap();
        assert_eq!(config.dir, PathBuf::from("/data"));
        assert_eq!(config.port, 7001);
        assert_eq!(config.durability, DurabilityArg::Buffered);
        assert_eq!(config.maxclients, 5);
        assert_eq!(config.bind, BIND_DEFAULT);
        assert_eq!(config.max_output_bytes, OUTPUT_BUFFER_DEFAULT_BYTES);
        assert_eq!(config.timeout, 0);
        assert!(config.protected_mode);
    }

    #[test]
    fn unknown_keys_and_missing_dir_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ringkv.toml");
        std::fs::write(&file, "dir = \"/data\"\nprot = 1\n").unwrap();
        let args = ServeArgs {
            config: Some(file),
            ..ServeArgs::default()
        };
        let err = Config::resolve(args).unwrap_err();
        assert!(err.contains("prot"), "{err}");
        assert!(Config::resolve(ServeArgs::default()).is_err());
    }
}
